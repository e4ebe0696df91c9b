//! A real Prometheus (Debian's package; `scripts/install-test-deps.sh`
//! installs it) scrapes a real bridge carrying a call: the target is up,
//! the receivers' bandwidth histograms (issue 16) arrive with values that
//! PromQL can turn into quantiles, and no series is labelled per
//! participant (their cardinality stays per bridge and shard).

mod native;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use native::{Bridge, eventually, http_get};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Prometheus as a child process, killed (and its scratch directory
/// removed) on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    /// Scrape `target`'s /metrics every second.
    fn start(target: SocketAddr) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: run scripts/install-test-deps.sh"
        );
        let dir = std::env::temp_dir().join(format!("tern-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: tern-bridge\n    static_configs:\n\
                 \x20     - targets: ['{target}']\n"
            ),
        )
        .expect("write config");
        // A free port: bind, read it, release it for Prometheus.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, addr, dir }
    }

    /// The result vector of an instant query, or None while Prometheus is
    /// not answering yet.
    fn query(&self, promql: &str) -> Option<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let body = native::tern_process::http_get(self.addr, &path).ok()?.1;
        let v: Value = serde_json::from_str(&body).ok()?;
        if v["status"] != "success" {
            panic!("query {promql:?} failed: {body}");
        }
        v["data"]["result"].as_array().cloned()
    }

    /// The label names the series matching `selector` carry.
    fn label_names(&self, selector: &str) -> Option<Vec<String>> {
        let path = format!("/api/v1/labels?match[]={}", encode(selector));
        let body = native::tern_process::http_get(self.addr, &path).ok()?.1;
        let v: Value = serde_json::from_str(&body).ok()?;
        Some(
            v["data"]
                .as_array()?
                .iter()
                .filter_map(|l| l.as_str().map(String::from))
                .collect(),
        )
    }

    /// The first sample's value of an instant query, once there is one.
    fn value(&self, promql: &str) -> Option<f64> {
        let r = self.query(promql)?;
        r.first()?["value"][1].as_str()?.parse().ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("==== prometheus log\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encoding for a query parameter (PromQL has spaces, braces,
/// quotes and brackets).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_bridge_and_reads_its_bandwidth_histograms() {
    let bridge = Bridge::start(&[]);
    let _publisher = bridge.join_with("prom", "pub", |o| o.audio = true).await;
    let _receiver = bridge
        .join_with("prom", "sub", |o| {
            o.audio = false;
            o.video = vec![];
        })
        .await;
    // The bridge itself reports estimates before Prometheus is asked.
    eventually(
        "the bridge counts a receiver's bandwidth estimate",
        Duration::from_secs(15),
        || {
            (bridge.metric(
                "tern_receiver_bandwidth_estimate_bytes_per_second_count",
                "",
            ) > 0.0)
                .then_some(())
        },
    )
    .await;

    let prom = Prometheus::start(bridge.http);
    let up = eventually(
        "Prometheus scrapes the bridge (up == 1)",
        Duration::from_secs(30),
        || prom.value("up{job=\"tern-bridge\"}").filter(|v| *v == 1.0),
    )
    .await;
    assert_eq!(up, 1.0);

    // A median estimate over the last few scrapes: at least two samples of
    // the buckets, so rate() has something to work with.
    let median = eventually(
        "a median receiver estimate from the scraped histogram",
        Duration::from_secs(30),
        || {
            prom.value(
                "histogram_quantile(0.5, sum by (le) \
                 (rate(tern_receiver_bandwidth_estimate_bytes_per_second_bucket[10s])))",
            )
            .filter(|v| v.is_finite() && *v > 0.0)
        },
    )
    .await;
    println!("median receiver estimate, via Prometheus: {median:.0} B/s");
    // One 720p-capable receiver on loopback: between 10 kB/s and 100 MB/s is
    // a number from the histogram, not a unit mistake.
    assert!(
        (10_000.0..100_000_000.0).contains(&median),
        "median estimate {median} B/s"
    );
    let allocated = prom
        .value("sum(tern_receiver_bandwidth_allocated_bytes_per_second_count)")
        .expect("allocated histogram scraped");
    assert!(allocated > 0.0, "allocated samples: {allocated}");

    // Cardinality: the bandwidth series carry shard and bucket labels (and
    // Prometheus's job and instance), never a participant or endpoint.
    let labels = prom
        .label_names("{__name__=~\"tern_receiver_bandwidth_.*\"}")
        .expect("label names");
    assert!(labels.iter().any(|l| l == "le"), "{labels:?}");
    for l in &labels {
        assert!(
            ["__name__", "instance", "job", "shard", "le"].contains(&l.as_str()),
            "unexpected label {l} on the bandwidth series: {labels:?}"
        );
    }
    // What the scrape saw matches the bridge's own counter (same process,
    // counters only grow: the bridge's is at least Prometheus's).
    let scraped = prom
        .value("sum(tern_bandwidth_estimates_total)")
        .expect("estimates counter scraped");
    let direct: f64 = http_get(bridge.http, "/metrics")
        .lines()
        .filter(|l| l.starts_with("tern_bandwidth_estimates_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        scraped > 0.0 && scraped <= direct,
        "scraped {scraped}, bridge now {direct}"
    );
}
