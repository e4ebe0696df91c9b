//! A real Prometheus (Debian's package) as a child process with the
//! deploy/ configuration, and its HTTP API.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::deploy_exprs::{deploy, read};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";

// ---------------------------------------------------------------------------
// A real Prometheus with the deploy config

/// Prometheus as a child process on a copy of deploy/prometheus, killed on
/// drop (its log printed if the test failed).
pub struct Prometheus {
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub agent: ureq::Agent,
}

impl Prometheus {
    /// deploy/prometheus copied, its targets replaced by `targets` (file
    /// name, YAML), and only the global scrape and evaluation intervals
    /// shortened to 1 s.
    pub fn start(targets: &[(&str, String)]) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: run scripts/install-test-deps.sh"
        );
        let dir = tempfile::Builder::new()
            .prefix("tern-deploy-prometheus-")
            .tempdir()
            .expect("scratch dir");
        let conf = dir.path().join("prometheus");
        copy_dir(&deploy("prometheus"), &conf);
        for f in std::fs::read_dir(conf.join("targets")).expect("targets dir") {
            std::fs::remove_file(f.expect("entry").path()).expect("remove target file");
        }
        for (name, yaml) in targets {
            std::fs::write(conf.join("targets").join(name), yaml).expect("write targets");
        }
        let config = conf.join("prometheus.yml");
        let mut text = read(&config);
        for key in ["scrape_interval", "evaluation_interval"] {
            let from = format!("\n  {key}: 15s\n");
            assert_eq!(
                text.matches(&from).count(),
                1,
                "prometheus.yml: expected one global `{key}: 15s`"
            );
            text = text.replacen(&from, &format!("\n  {key}: 1s\n"), 1);
        }
        std::fs::write(&config, text).expect("write config");

        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Prometheus {
            child,
            url: format!("http://{addr}"),
            dir,
            agent,
        }
    }

    /// GET an API path: its `data`, or the error Prometheus gave.
    pub fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let mut req = self.agent.get(&format!("{}{path}", self.url));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let mut res = req.call().map_err(|e| format!("{path}: {e}"))?;
        let body = res
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{path}: {e}"))?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{path}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{path} {query:?}: {body}"));
        }
        Ok(v["data"].clone())
    }

    /// An instant query's result vector.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/query", &[("query", promql)])?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("==== prometheus log\n{}", self.log());
        }
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}
