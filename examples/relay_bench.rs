//! Relay transport benchmark: two relay endpoints on loopback in one process,
//! connected exactly as two bridges would be (mutual TLS from a cluster CA,
//! the relay transport config).
//!
//! 1. Throughput: media-sized datagrams (1,216 bytes: a 1,200-byte RTP packet
//!    plus the 16-byte relay header) sent as fast as the connection takes
//!    them for `--secs`; reports datagrams/s received, loss, and datagrams
//!    per CPU-second of the whole process (sender and receiver together).
//! 2. Latency: 64-byte datagrams at `--rate` per second for `--latency-secs`,
//!    timestamped; the receiver echoes each, so both one-way and round-trip
//!    latency are measured on one clock.
//!
//! ```sh
//! cargo run --release --example relay_bench -- --secs 10 --latency-secs 5 --rate 20000
//! cargo run --release --example relay_bench -- --max-rate 150000   # loss at a given rate
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use tern::relay_net::{BridgeId, ClusterCa, RelayConnection, RelayEndpoint};
use tokio::sync::Notify;

#[derive(Parser)]
struct Args {
    /// Seconds of the throughput phase.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Cap on the throughput phase's send rate, datagrams/s (0: as fast as
    /// the connection takes them). Finds the loss-free rate.
    #[arg(long, default_value_t = 0)]
    max_rate: u64,
    /// Payload size of the throughput phase.
    #[arg(long, default_value_t = 1216)]
    size: usize,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 5)]
    latency_secs: u64,
    /// Datagrams per second in the latency phase.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// CPU seconds (user + system) this process has used: fields 14 and 15 of
/// /proc/self/stat, in clock ticks of 1/100 s (USER_HZ, fixed at 100 in the
/// /proc ABI on Linux).
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) may contain spaces; fields after it are
    // counted from the closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so utime (14) is index 11.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn pair() -> anyhow::Result<(
    RelayEndpoint,
    RelayEndpoint,
    RelayConnection,
    RelayConnection,
)> {
    let ca = ClusterCa::generate()?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let rx_id = BridgeId::new("bench-rx")?;
    let rx = RelayEndpoint::bind(loopback, ca.issue(&rx_id)?, &ca.certificate())?;
    let tx = RelayEndpoint::bind(
        loopback,
        ca.issue(&BridgeId::new("bench-tx")?)?,
        &ca.certificate(),
    )?;
    let addr = rx.local_addr()?;
    let (out, inc) = tokio::join!(tx.connect(addr, &rx_id), rx.accept());
    let out = out?;
    let inc = inc.context("endpoint closed")??;
    Ok((rx, tx, out, inc))
}

struct Throughput {
    sent: u64,
    received: u64,
    elapsed: f64,
    cpu: f64,
}

async fn throughput(
    sender: &RelayConnection,
    receiver: &RelayConnection,
    size: usize,
    secs: u64,
    max_rate: u64,
) -> anyhow::Result<Throughput> {
    let max = sender.max_datagram_size().unwrap_or(0);
    if size > max {
        bail!("{size}-byte datagrams do not fit (max {max})");
    }
    let received = Arc::new(AtomicU64::new(0));
    // A stored permit (notify_one), so the stop is not missed while the
    // receiver is busy between reads; no per-read timer either.
    let stop = Arc::new(Notify::new());
    let rx_conn = receiver.connection().clone();
    let rx_task = {
        let (received, stop) = (received.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    r = rx_conn.read_datagram() => match r {
                        Ok(_) => {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => break,
                    },
                    () = stop.notified() => break,
                }
            }
        })
    };
    let template = vec![0xa5u8; size];
    let cpu0 = cpu_seconds()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut sent = 0u64;
    let conn = sender.connection();
    while Instant::now() < deadline {
        // Check the clock every 64 datagrams only: it is not free.
        let burst = if max_rate == 0 {
            64
        } else {
            let due = (start.elapsed().as_secs_f64() * max_rate as f64) as u64;
            if due <= sent {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            due - sent
        };
        for _ in 0..burst {
            let mut b = BytesMut::from(template.as_slice());
            b[..8].copy_from_slice(&sent.to_be_bytes());
            conn.send_datagram_wait(b.freeze()).await?;
            sent += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Let what is in flight arrive before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.notify_one();
    rx_task.await?;
    let cpu = cpu_seconds()? - cpu0;
    Ok(Throughput {
        sent,
        received: received.load(Ordering::Relaxed),
        elapsed,
        cpu,
    })
}

struct Latency {
    sent: u64,
    one_way: Vec<u64>,
    rtt: Vec<u64>,
    cpu: f64,
}

async fn latency(
    sender: &RelayConnection,
    receiver: &RelayConnection,
    rate: u64,
    secs: u64,
) -> anyhow::Result<Latency> {
    let epoch = Instant::now();
    let now_ns = move || epoch.elapsed().as_nanos() as u64;
    let stamp = |b: &[u8]| -> u64 {
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[8..16]);
        u64::from_be_bytes(t)
    };
    // Echo: record the one-way delay, send the datagram straight back.
    let echo_conn = receiver.connection().clone();
    let echo = tokio::spawn(async move {
        let mut one_way = Vec::new();
        while let Ok(d) = echo_conn.read_datagram().await {
            if d.len() < 16 {
                break;
            }
            one_way.push(now_ns().saturating_sub(stamp(&d)));
            let _ = echo_conn.send_datagram(d);
        }
        one_way
    });
    let back_conn = sender.connection().clone();
    let back = tokio::spawn(async move {
        let mut rtt = Vec::new();
        while let Ok(Ok(d)) =
            tokio::time::timeout(Duration::from_millis(500), back_conn.read_datagram()).await
        {
            rtt.push(now_ns().saturating_sub(stamp(&d)));
        }
        rtt
    });
    let conn = sender.connection();
    let cpu0 = cpu_seconds()?;
    let start = Instant::now();
    let total = rate * secs;
    let mut sent = 0u64;
    while sent < total {
        // Paced by the clock in 1 ms steps (tokio's timer resolution): each
        // step sends what the rate allows by now, ~rate/1000 datagrams.
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            let mut b = [0u8; 64];
            b[..8].copy_from_slice(&sent.to_be_bytes());
            b[8..16].copy_from_slice(&now_ns().to_be_bytes());
            conn.send_datagram(Bytes::copy_from_slice(&b))?;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rtt = back.await?;
    let cpu = cpu_seconds()? - cpu0;
    // The echo task ends when the connection closes; stop waiting for it
    // by closing the receiving side's view.
    receiver
        .connection()
        .close(quinn::VarInt::from_u32(0), b"bench done");
    let one_way = echo.await?;
    Ok(Latency {
        sent,
        one_way,
        rtt,
        cpu,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    println!(
        "relay_bench: {} worker threads, load average before: {}",
        args.threads,
        load_average()
    );
    let (_rx, _tx, out, inc) = pair().await?;
    println!(
        "connected: max datagram {:?} bytes, path MTU {}",
        out.max_datagram_size(),
        out.connection().stats().path.current_mtu
    );

    let t = throughput(&out, &inc, args.size, args.secs, args.max_rate).await?;
    let stats = out.connection().stats();
    let lost = t.sent.saturating_sub(t.received);
    println!(
        "\n## throughput: {}-byte datagrams for {} s",
        args.size, args.secs
    );
    println!(
        "sent {} ({:.0}/s), received {} ({:.0}/s, {:.2} Gbit/s payload), lost {} ({:.3} %)",
        t.sent,
        t.sent as f64 / t.elapsed,
        t.received,
        t.received as f64 / t.elapsed,
        t.received as f64 * args.size as f64 * 8.0 / t.elapsed / 1e9,
        lost,
        lost as f64 * 100.0 / t.sent.max(1) as f64
    );
    println!(
        "process CPU {:.2} s over {:.2} s wall ({:.2} cores) -> {:.0} datagrams received per CPU-second",
        t.cpu,
        t.elapsed,
        t.cpu / t.elapsed,
        t.received as f64 / t.cpu
    );
    println!(
        "sender: UDP datagrams {} in {} sendmsg calls, congestion events {}, lost packets {}, cwnd {} B, path MTU {}",
        stats.udp_tx.datagrams,
        stats.udp_tx.ios,
        stats.path.congestion_events,
        stats.path.lost_packets,
        stats.path.cwnd,
        stats.path.current_mtu
    );

    let l = latency(&out, &inc, args.rate, args.latency_secs).await?;
    let (mut one_way, mut rtt) = (l.one_way, l.rtt);
    one_way.sort_unstable();
    rtt.sort_unstable();
    println!(
        "\n## latency: 64-byte datagrams at {}/s for {} s",
        args.rate, args.latency_secs
    );
    println!(
        "sent {}, arrived {}, echoes back {}; process CPU {:.2} s",
        l.sent,
        one_way.len(),
        rtt.len(),
        l.cpu
    );
    for (name, v) in [("one-way", &one_way), ("round trip", &rtt)] {
        println!(
            "{name}: p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us",
            percentile(v, 0.5),
            percentile(v, 0.99),
            percentile(v, 0.999),
            percentile(v, 1.0)
        );
    }
    println!("load average after: {}", load_average());
    Ok(())
}
