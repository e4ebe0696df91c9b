//! Real `tern` processes for cluster tests (focus, bridges) and a focus API
//! client with bearer auth.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use tern_proto::focus::v1 as fpb;

/// A running `tern` child and the first line it printed (its ready line).
pub struct Proc {
    pub child: Child,
    pub line: String,
}

impl Proc {
    /// Start `tern ARGS` with `TERN_AUTH_SECRET=auth` plus `env`; returns once
    /// it printed its ready line.
    pub fn start(args: &[&str], auth: &str, env: &[(&str, String)]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tern"));
        cmd.args(args)
            .env("TERN_AUTH_SECRET", auth)
            .env(
                "TERN_LOG",
                "info,str0m=warn,dimpl=warn,h2=warn,tower=warn,quinn=warn",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tern");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().expect("printed a line").expect("read");
        std::thread::spawn(move || for _ in lines {});
        Proc { child, line }
    }

    pub fn addr_after(&self, marker: &str) -> SocketAddr {
        self.line
            .split(marker)
            .nth(1)
            .and_then(|r| r.split(['/', ' ', ')']).next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address after {marker:?} in {:?}", self.line))
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A SIGSTOPped process must run again to die cleanly.
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TOML string value for a `TERN_*` override.
pub fn quoted(a: impl std::fmt::Display) -> String {
    format!("\"{a}\"")
}

pub type AuthFn =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;
pub type Api = fpb::focus_client::FocusClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AuthFn>,
>;

/// A focus API client sending `Bearer secret`.
pub async fn api(grpc: SocketAddr, secret: &str) -> Api {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to focus");
    let bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {secret}").parse().expect("header");
    let f: AuthFn = Box::new(move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", bearer.clone());
        Ok(r)
    });
    fpb::focus_client::FocusClient::with_interceptor(channel, f)
}
