//! Sending a flush's datagrams: `sendmmsg`, 32 per call, and the
//! forwarding delay of what left.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tracing::debug;

use super::latency::ForwardLatency;

/// A range of a flush's datagrams made from client datagrams the kernel
/// received at `received` (the oldest of them; since the Unix epoch).
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub start: usize,
    pub end: usize,
    pub received: Duration,
}

/// Datagrams per `sendmmsg` call.
pub const SEND_BATCH: usize = 32;

/// Send everything a flush produced with `sendmmsg`, 32 datagrams per system
/// call (one `sendto` each used to cost as much as str0m's own work per
/// packet). Waits for writability when the socket buffer is full; a datagram
/// the kernel refuses outright is dropped, as UDP would.
pub async fn send_batched(
    socket: &UdpSocket,
    transmits: &[(SocketAddr, Vec<u8>)],
    from: usize,
    marks: &[Mark],
    latency: &mut ForwardLatency,
) {
    let mut sent = from;
    loop {
        let (reached, blocked) = send_now(socket, transmits, sent, false, marks, latency);
        sent = reached;
        if !blocked || socket.writable().await.is_err() {
            return;
        }
    }
}

/// Send `transmits[from..]` with `sendmmsg`, `SEND_BATCH` per call, without
/// waiting: returns how far it got and whether the socket would block.
/// With `whole_chunks`, a last chunk shorter than `SEND_BATCH` is left for
/// later (mid-flush sends keep the syscall batching).
pub fn send_now(
    socket: &UdpSocket,
    transmits: &[(SocketAddr, Vec<u8>)],
    from: usize,
    whole_chunks: bool,
    marks: &[Mark],
    latency: &mut ForwardLatency,
) -> (usize, bool) {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

    let mut sent = from;
    while sent < transmits.len() {
        let end = (sent + SEND_BATCH).min(transmits.len());
        if whole_chunks && end - sent < SEND_BATCH {
            break;
        }
        let chunk = &transmits[sent..end];
        let result = socket.try_io(tokio::io::Interest::WRITABLE, || {
            let slices: Vec<[IoSlice<'_>; 1]> =
                chunk.iter().map(|(_, d)| [IoSlice::new(d)]).collect();
            let addrs: Vec<Option<SockaddrStorage>> = chunk
                .iter()
                .map(|(a, _)| Some(SockaddrStorage::from(*a)))
                .collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(chunk.len(), None);
            sendmmsg(
                socket.as_raw_fd(),
                &mut headers,
                &slices,
                &addrs,
                [],
                MsgFlags::MSG_DONTWAIT,
            )
            .map(|r| r.count())
            .map_err(std::io::Error::from)
        });
        match result {
            Ok(0) => sent += 1,
            Ok(n) => {
                record_sent(marks, sent, sent + n, latency);
                sent += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (sent, true),
            Err(e) => {
                // The first datagram of the chunk was refused (e.g. an
                // unreachable destination): skip it, send the rest.
                debug!(destination = %chunk[0].0, error = %e, "send failed");
                sent += 1;
            }
        }
    }
    (sent, false)
}

/// The forwarding delay of datagrams `from..to` of a flush, just handed to
/// the kernel: each counts from its mark's receive time (the batch's
/// oldest datagram, so an upper bound for the others).
fn record_sent(marks: &[Mark], from: usize, to: usize, latency: &mut ForwardLatency) {
    if marks.is_empty() {
        return;
    }
    let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return;
    };
    // Marks are in flush order and do not overlap.
    let first = marks.partition_point(|m| m.end <= from);
    for m in marks[first..].iter().take_while(|m| m.start < to) {
        let n = m.end.min(to) - m.start.max(from);
        // A wall clock stepped backwards reads as no delay, not a panic.
        latency.record(now.saturating_sub(m.received), n as u64);
    }
}
