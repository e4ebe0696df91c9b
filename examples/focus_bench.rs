//! Allocations per second and latency over gRPC with 1,000 registered bridges.
//!
//! `cargo run --release --example focus_bench [-- --bridges 1000 --seconds 10 --concurrency 8 --connections 1]`
//!
//! Runs a real focus (gRPC on 127.0.0.1) in this process, attaches N bridge
//! control streams that report every second (10 regions), then issues
//! allocations from C concurrent clients for S seconds and reports the rate
//! and the latency distribution.

use std::time::{Duration, Instant};

use anyhow::Context;
use tern::config::Config;
use tern_proto::bridge::v1 as bpb;
use tern_proto::focus::v1 as fpb;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bridges = arg("--bridges", 1000) as usize;
    let seconds = arg("--seconds", 10);
    let concurrency = arg("--concurrency", 8) as usize;
    // API clients share this many HTTP/2 connections (an application
    // with several front-end processes opens several).
    let connections = arg("--connections", 1).max(1) as usize;

    let mut cfg = Config::default();
    cfg.auth.secret = "bench-auth".into();
    cfg.focus.api_secret = "bench-api".into();
    cfg.focus.bridge_secret = "bench-bridge".into();
    cfg.focus.grpc_listen = "127.0.0.1:0".parse()?;
    cfg.focus.http_listen = "127.0.0.1:0".parse()?;
    cfg.focus.region = "r0".into();
    // One address makes every call here: the per-address abuse limit would
    // measure itself, not the focus.
    cfg.focus.grpc_rate_limit = 0;
    let (ready_tx, ready_rx) = oneshot::channel();
    let (_stop_tx, stop_rx) = oneshot::channel::<()>();
    // A recorder nobody installs: the bench measures the focus, not metrics.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    tokio::spawn(tern::focus::run(
        cfg,
        metrics,
        move |b| {
            let _ = ready_tx.send(b.grpc);
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    let grpc = ready_rx.await.context("focus did not start")?;
    let url = format!("http://{grpc}");

    // Bridges: 100 streams per connection (HTTP/2 stream limits).
    let t = Instant::now();
    let mut keep = Vec::new();
    for chunk in 0..bridges.div_ceil(100) {
        let channel = tonic::transport::Endpoint::from_shared(url.clone())?
            .connect()
            .await?;
        for i in chunk * 100..((chunk + 1) * 100).min(bridges) {
            let mut c = bpb::bridge_control_client::BridgeControlClient::with_interceptor(
                channel.clone(),
                |mut r: tonic::Request<()>| {
                    r.metadata_mut().insert(
                        "x-tern-bridge-secret",
                        "bench-bridge".parse().expect("value"),
                    );
                    Ok(r)
                },
            );
            let (tx, rx) = mpsc::channel(4);
            tx.send(bpb::BridgeMessage {
                msg: Some(bpb::bridge_message::Msg::Register(bpb::Register {
                    bridge_id: format!("b{i}"),
                    region: format!("r{}", i % 10),
                    version: "bench".into(),
                    api_version: 1,
                    signal_url: format!("ws://10.0.{}.{}/signal", i / 250, i % 250),
                    max_packet_rate: 50_000,
                    ..Default::default()
                })),
            })
            .await?;
            let mut inbound = c.attach(ReceiverStream::new(rx)).await?.into_inner();
            // Report every second (load varies per bridge), drain commands.
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let stats = bpb::Stats {
                                rtp_packets_in_per_s: (i as u64 * 37) % 20_000,
                                rtp_packets_out_per_s: (i as u64 * 91) % 20_000,
                                healthy: true,
                                ..Default::default()
                            };
                            if tx.send(bpb::BridgeMessage { msg: Some(bpb::bridge_message::Msg::Stats(stats)) }).await.is_err() {
                                return;
                            }
                        }
                        m = inbound.message() => if !matches!(m, Ok(Some(_))) { return },
                    }
                }
            });
        }
        keep.push(channel);
    }
    let register_time = t.elapsed();

    // Allocations from C clients for S seconds.
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(
            tonic::transport::Endpoint::from_shared(url.clone())?
                .connect()
                .await?,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let channel = channels[w % connections].clone();
        tasks.push(tokio::spawn(async move {
            let mut api = fpb::focus_client::FocusClient::with_interceptor(
                channel,
                |mut r: tonic::Request<()>| {
                    r.metadata_mut()
                        .insert("authorization", "Bearer bench-api".parse().expect("value"));
                    Ok(r)
                },
            );
            let mut lat = Vec::new();
            let mut failed = 0u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = api
                    .allocate(fpb::AllocateRequest {
                        conference: format!("c{w}-{}", n / 8),
                        participant: format!("p{w}-{n}"),
                        region: format!("r{}", n % 10),
                        ..Default::default()
                    })
                    .await;
                if r.is_ok() {
                    lat.push(t.elapsed());
                } else {
                    failed += 1;
                }
                n += 1;
            }
            (lat, failed)
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await?;
        lat.extend(l);
        failed += f;
    }
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "bridges {bridges} (registered in {:.2} s), concurrency {concurrency}, connections {connections}, {seconds} s: {} allocations ({failed} failed), {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        register_time.as_secs_f64(),
        lat.len(),
        lat.len() as f64 / seconds as f64,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    Ok(())
}
