//! The per-core ceiling (`tern loadtest --ceiling SECS`): what one thread can
//! do at best here for the bridge's egress work — SRTP AES-256-GCM protection
//! of a 1,200-byte packet (str0m's own cipher from its crypto provider) plus a
//! UDP send on loopback. Run in the same session as the bridge benchmark so
//! the ratio holds on a noisy machine.
//!
//! Two ceilings: one `send_to` per packet, and `sendmmsg` with 32 packets per
//! call — what the bridge shell does (`bridge/shard.rs`), so the batched one
//! is the like-for-like ceiling for the bridge's egress.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use serde::Serialize;

const PACKET: usize = 1200;
const TAG: usize = 16;

#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub seal_only_pps: f64,
    pub send_only_pps: f64,
    pub seal_and_send_pps: f64,
    /// Seal plus `sendmmsg`, 32 datagrams per call.
    pub seal_and_sendmmsg_pps: f64,
}

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

pub fn measure(secs: f64) -> anyhow::Result<Ceiling> {
    let d = Duration::from_secs_f64((secs / 4.0).max(0.2));
    let provider = str0m::crypto::from_feature_flags();
    let mut cipher = provider
        .srtp_provider
        .aead_aes_256_gcm()
        .create_cipher([7u8; 32], true);
    // A sink that never reads: the kernel does the full loopback delivery and
    // drops at the full receive queue, as a slow receiver would.
    let sink = UdpSocket::bind("127.0.0.1:0")?;
    let to = sink.local_addr()?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
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
    let seal_and_sendmmsg_pps = run_for(d, || {
        seal(&mut batch[left]);
        left += 1;
        if left == BATCH {
            sendmmsg_all(&tx, to, &batch);
            left = 0;
        }
    });
    Ok(Ceiling {
        seal_only_pps,
        send_only_pps,
        seal_and_send_pps,
        seal_and_sendmmsg_pps,
    })
}

/// Datagrams per `sendmmsg` call (the bridge's `SEND_BATCH`).
const BATCH: usize = 32;

fn sendmmsg_all(tx: &UdpSocket, to: std::net::SocketAddr, batch: &[Vec<u8>]) {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

    let slices: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|d| [IoSlice::new(d)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = batch
        .iter()
        .map(|_| Some(SockaddrStorage::from(to)))
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
