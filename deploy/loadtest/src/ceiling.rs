//! The per-core ceiling (`tern loadtest --ceiling SECS`): what one thread can
//! do at best here for the bridge's egress work — SRTP AES-256-GCM protection
//! of a 1,200-byte packet (str0m's own cipher from its crypto provider) plus a
//! UDP send on loopback. Run in the same session as the bridge benchmark so
//! the ratio holds on a noisy machine.
//!
//! Two ceilings: one `send_to` per packet, and `sendmmsg` with 32 packets per
//! call — what the bridge shell does (`bridge/shard.rs`), so the batched one
//! is the like-for-like ceiling for the bridge's egress.
//!
//! Both send to a sink nobody reads, so past its full queue the kernel drops
//! early. With a reader core, a third figure sends the same batches round
//! robin into sockets that a reader on that core drains, as the load tool
//! drains the bridge's: on loopback the sender pays the delivery into them
//! and the reader's wakeups, which is what the bridge pays in the benchmark.
//! A fourth sends the same into the read sockets as UDP GSO messages of
//! `GSO_RUN` datagrams each (what the bridge does when a receiver gets
//! several packets in one flush), where the kernel offers GSO.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};

const PACKET: usize = 1200;
const TAG: usize = 16;

#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub seal_only_pps: f64,
    pub send_only_pps: f64,
    pub seal_and_send_pps: f64,
    /// Seal plus `sendmmsg`, 32 datagrams per call.
    pub seal_and_sendmmsg_pps: f64,
    /// The same into `READ_SINKS` sockets a reader drains (with a reader core).
    pub seal_and_sendmmsg_read_pps: Option<f64>,
    /// The same again, each socket's `GSO_RUN` datagrams in a row as one GSO
    /// message (with a reader core, where the kernel offers GSO).
    pub seal_and_gso_read_pps: Option<f64>,
}

/// Datagrams per GSO message in the GSO ceiling: a receiver's share of a
/// paced 720p burst.
const GSO_RUN: usize = 4;

/// Sockets the reader drains (the load tool reads hundreds; one per
/// destination is what makes each datagram a separate wakeup candidate).
const READ_SINKS: usize = 64;

fn run_for(d: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        for _ in 0..256 {
            f();
        }
        n += 256;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

pub fn measure(secs: f64, reader_core: Option<usize>) -> Result<Ceiling> {
    let d = Duration::from_secs_f64((secs / 4.0).max(0.2));
    let provider = str0m::crypto::from_feature_flags();
    let mut cipher = provider
        .srtp_provider
        .aead_aes_256_gcm()
        .create_cipher([7u8; 32], true);
    // A sink that never reads: the kernel does the full loopback delivery and
    // drops at the full receive queue, as a slow receiver would.
    let sink = bind_loopback("the ceiling's sink")?;
    let to = local_addr(&sink, "the ceiling's sink")?;
    let tx = bind_loopback("the ceiling's sender")?;
    let header = [0x80u8, 96, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    let plain = vec![0x5au8; PACKET - header.len() - TAG];
    let mut out = vec![0u8; PACKET];
    out[..header.len()].copy_from_slice(&header);
    let mut iv = [0u8; 12];
    let mut i = 0u32;
    let mut seal = |out: &mut [u8]| {
        i = i.wrapping_add(1);
        iv[8..].copy_from_slice(&i.to_be_bytes());
        let _ = cipher.encrypt(&iv, &header, &plain, &mut out[header.len()..]);
    };
    let seal_only_pps = run_for(d, || seal(&mut out));
    let send_only_pps = run_for(d, || {
        let _ = tx.send_to(&out, to);
    });
    let seal_and_send_pps = run_for(d, || {
        seal(&mut out);
        let _ = tx.send_to(&out, to);
    });
    // 32 buffers sealed then sent with one call, as the bridge flushes.
    let mut batch = vec![out.clone(); BATCH];
    let mut left = 0usize;
    let to_one = [to; BATCH];
    let seal_and_sendmmsg_pps = run_for(d, || {
        seal(&mut batch[left]);
        left += 1;
        if left == BATCH {
            sendmmsg_all(&tx, &to_one, &batch);
            left = 0;
        }
    });
    let (seal_and_sendmmsg_read_pps, seal_and_gso_read_pps) = match reader_core {
        None => (None, None),
        Some(core) => {
            let reader = Reader::start(core)?;
            let sinks = reader.addrs.clone();
            let mut next = 0usize;
            let mut dests = [to; BATCH];
            let pps = run_for(d, || {
                seal(&mut batch[left]);
                dests[left] = sinks[next % sinks.len()];
                next = next.wrapping_add(1);
                left += 1;
                if left == BATCH {
                    sendmmsg_all(&tx, &dests, &batch);
                    left = 0;
                }
            });
            // Each sink's GSO_RUN datagrams in a row: one message each.
            (left, next) = (0, 0);
            let gso_pps = gso_works(&tx, to).then(|| {
                run_for(d, || {
                    seal(&mut batch[left]);
                    dests[left] = sinks[(next / GSO_RUN) % sinks.len()];
                    next = next.wrapping_add(1);
                    left += 1;
                    if left == BATCH {
                        sendmmsg_gso(&tx, &dests, &batch);
                        left = 0;
                    }
                })
            });
            reader.stop(&tx)?;
            (Some(pps), gso_pps)
        }
    };
    Ok(Ceiling {
        seal_only_pps,
        send_only_pps,
        seal_and_send_pps,
        seal_and_sendmmsg_pps,
        seal_and_sendmmsg_read_pps,
        seal_and_gso_read_pps,
    })
}

/// A thread on another core draining `READ_SINKS` sockets, one task each,
/// on a current-thread runtime (as the load tool's receivers do).
struct Reader {
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Reader {
    fn start(core: usize) -> Result<Self> {
        let mut socks = Vec::with_capacity(READ_SINKS);
        for _ in 0..READ_SINKS {
            let s = bind_loopback("a socket of the ceiling's reader")?;
            s.set_nonblocking(true).map_err(|source| {
                io(
                    "making a socket of the ceiling's reader non-blocking",
                    source,
                )
            })?;
            socks.push(s);
        }
        let addrs = socks
            .iter()
            .map(|s| local_addr(s, "a socket of the ceiling's reader"))
            .collect::<Result<Vec<_>>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ceiling-reader".into())
            .spawn(move || -> Result<()> {
                let mut set = nix::sched::CpuSet::new();
                set.set(core)
                    .and_then(|()| {
                        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                    })
                    .map_err(|source| Error::CpuAffinity { core, source })?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map_err(|source| io("starting the ceiling reader's runtime", source))?;
                rt.block_on(async move {
                    let mut tasks = Vec::with_capacity(socks.len());
                    for s in socks {
                        let s = tokio::net::UdpSocket::from_std(s).map_err(|source| {
                            io("registering a socket of the ceiling's reader", source)
                        })?;
                        let flag = flag.clone();
                        tasks.push(tokio::spawn(async move {
                            let mut buf = vec![0u8; 2048];
                            while !flag.load(Ordering::Relaxed) {
                                if s.recv(&mut buf).await.is_err() {
                                    break;
                                }
                            }
                        }));
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                    Ok(())
                })
            })
            .map_err(|source| io("starting the ceiling's reader thread", source))?;
        Ok(Self {
            addrs,
            stop,
            thread,
        })
    }

    /// Raise the flag, then wake every task with one more datagram.
    fn stop(self, tx: &UdpSocket) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for a in &self.addrs {
            tx.send_to(&[0], a)
                .map_err(|source| io(&format!("waking the ceiling's reader at {a}"), source))?;
        }
        match self.thread.join() {
            Ok(r) => r,
            Err(_) => Err(Error::ReaderPanicked),
        }
    }
}

/// A UDP socket on a free loopback port, for `what`.
fn bind_loopback(what: &str) -> Result<UdpSocket> {
    UdpSocket::bind("127.0.0.1:0")
        .map_err(|source| io(&format!("binding {what} on 127.0.0.1"), source))
}

fn local_addr(s: &UdpSocket, what: &str) -> Result<SocketAddr> {
    s.local_addr()
        .map_err(|source| io(&format!("reading the address of {what}"), source))
}

fn io(what: &str, source: std::io::Error) -> Error {
    Error::Io {
        what: what.to_string(),
        source,
    }
}

/// Datagrams per `sendmmsg` call (the bridge's `SEND_BATCH`).
const BATCH: usize = 32;

fn sendmmsg_all(tx: &UdpSocket, to: &[SocketAddr], batch: &[Vec<u8>]) {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

    let slices: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|d| [IoSlice::new(d)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = to
        .iter()
        .take(batch.len())
        .map(|a| Some(SockaddrStorage::from(*a)))
        .collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(batch.len(), None);
    let _ = sendmmsg(
        tx.as_raw_fd(),
        &mut headers,
        &slices,
        &addrs,
        [],
        MsgFlags::empty(),
    );
}

/// `batch` as GSO messages of `GSO_RUN` datagrams (all `PACKET` bytes),
/// each to the first of its run's destinations; how many messages left.
fn sendmmsg_gso(tx: &UdpSocket, to: &[SocketAddr], batch: &[Vec<u8>]) -> usize {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

    let slices: Vec<IoSlice<'_>> = batch.iter().map(|d| IoSlice::new(d)).collect();
    let groups: Vec<&[IoSlice<'_>]> = slices.chunks(GSO_RUN).collect();
    let addrs: Vec<Option<SockaddrStorage>> = to
        .iter()
        .step_by(GSO_RUN)
        .take(groups.len())
        .map(|a| Some(SockaddrStorage::from(*a)))
        .collect();
    let mut headers =
        MultiHeaders::<SockaddrStorage>::preallocate(groups.len(), Some(nix::cmsg_space!(u16)));
    let segment = PACKET as u16;
    sendmmsg(
        tx.as_raw_fd(),
        &mut headers,
        &groups,
        &addrs,
        [ControlMessage::UdpGsoSegments(&segment)],
        MsgFlags::empty(),
    )
    .map_or(0, |r| r.count())
}

/// Whether the kernel takes a GSO message from `tx` (Linux 4.18+ and a
/// device that does it): one sent to `to`.
fn gso_works(tx: &UdpSocket, to: SocketAddr) -> bool {
    let batch = vec![vec![0u8; PACKET]; GSO_RUN];
    sendmmsg_gso(tx, &[to; GSO_RUN], &batch) == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every figure is measured, the reader variant included, and its
    /// reader thread stops (the call returns).
    #[test]
    fn measures_every_ceiling_and_stops_its_reader() -> Result<()> {
        let c = measure(0.8, Some(0))?;
        assert!(c.seal_only_pps > 0.0 && c.send_only_pps > 0.0);
        assert!(c.seal_and_send_pps > 0.0 && c.seal_and_sendmmsg_pps > 0.0);
        assert!(
            c.seal_and_sendmmsg_read_pps.is_some_and(|r| r > 0.0),
            "{c:?}"
        );
        // Loopback offers GSO on the kernels this runs on (4.18+).
        assert!(c.seal_and_gso_read_pps.is_some_and(|r| r > 0.0), "{c:?}");
        assert!(measure(0.8, None)?.seal_and_sendmmsg_read_pps.is_none());
        Ok(())
    }
}
