//! How participants get into the server under load: checking before a run
//! that it answers (and, through a focus, has online bridges in the regions
//! asked for), and a Tern participant's token and signalling URL, from a
//! focus's `/join` (with the bridge it placed the participant on), a
//! bridge's `/dev/token`, or minted with `--secret`. It must not touch media.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::args::{Args, Target};
use crate::ctx::{Ctx, Spec, lock};
use crate::error::{Error, Result};
use crate::{http, janus};

pub(crate) async fn preflight(args: &Args, server: SocketAddr, base: &str) -> Result<()> {
    let path = match args.target {
        Target::Tern => "/health".to_string(),
        Target::Janus => format!("{base}/info"),
    };
    let (status, body) = http::request(server, "GET", &path, None, Duration::from_secs(5))
        .await
        .map_err(|e| Error::Unreachable {
            server: args.server.clone(),
            source: Box::new(e),
        })?;
    if status != 200 {
        let hint = match args.target {
            Target::Janus => " (Janus's API is usually at http://IP:8088/janus)",
            Target::Tern => "",
        };
        return Err(Error::HttpStatus {
            request: format!("server {} answered GET {path}", args.server),
            status,
            hint,
            // Whatever else answers there (an HTML page) says nothing more.
            body: String::new(),
        });
    }
    if args.target == Target::Janus {
        let version = janus::check_info(&body).map_err(|e| Error::NotJanus {
            server: args.server.clone(),
            source: Box::new(e),
        })?;
        eprintln!("Janus {version} at {}", args.server);
    }
    if args.publisher_region.is_some() || args.subscriber_region.is_some() {
        check_regions(args, server).await?;
    }
    Ok(())
}

/// How long to wait for bridges of the asked regions to register with a
/// focus that has just started (`tern dev` prints ready before its bridges'
/// first reports reach the focus).
const REGION_WAIT: Duration = Duration::from_secs(5);

/// The regions asked for must be ones the focus has an online bridge in:
/// otherwise it would quietly place everyone elsewhere.
async fn check_regions(args: &Args, server: SocketAddr) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct B {
        region: String,
        online: bool,
    }
    let asked = [
        ("--publisher-region", &args.publisher_region),
        ("--subscriber-region", &args.subscriber_region),
    ];
    let deadline = Instant::now() + REGION_WAIT;
    loop {
        // The request's errors name it (GET http://ADDR/api/bridges).
        let (status, body) =
            http::request(server, "GET", "/api/bridges", None, Duration::from_secs(5)).await?;
        if status != 200 {
            return Err(Error::BadArgument {
                flag: "--publisher-region/--subscriber-region",
                why: format!(
                    "need --server to be a focus (`tern dev`, `tern focus`), but {} answered /api/bridges with HTTP {status}",
                    args.server
                ),
            });
        }
        let list: Vec<B> = serde_json::from_str(&body).map_err(|source| Error::BadAnswer {
            from: format!("{}/api/bridges", args.server),
            expected: "a focus's bridge list",
            source,
        })?;
        let mut known: Vec<&str> = list
            .iter()
            .filter(|b| b.online)
            .map(|b| b.region.as_str())
            .collect();
        known.sort_unstable();
        known.dedup();
        let missing = asked.iter().find_map(|(flag, region)| {
            region
                .as_deref()
                .filter(|r| !known.contains(r))
                .map(|r| (*flag, r))
        });
        let Some((flag, r)) = missing else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(Error::BadArgument {
                flag,
                why: format!(
                    "{r:?}: the focus has no online bridge there (regions: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Where the focus placed a participant: bridge id and its region.
pub(crate) type Placement = Option<(String, String)>;

/// A token and the signalling URL to use it at: through a focus's `/join`
/// (`tern dev`, `tern focus`; with the placement it chose), else a
/// standalone bridge's `/dev/token`, or minted with `--secret`.
pub(crate) async fn tern_token(ctx: &Ctx, spec: &Spec) -> Result<(String, String, Placement)> {
    let own = format!("ws://{}/signal", ctx.bridge_for(&spec.room));
    if let Some(secret) = &ctx.args.secret {
        return Ok(((ctx.mint)(secret, &spec.room, &spec.name), own, None));
    }
    // Regions are validated non-empty; they go into a query string.
    let region = ctx
        .args
        .region_for(spec.publish)
        .map(|r| format!("&region={}", query_escape(r)))
        .unwrap_or_default();
    let join = format!(
        "/join?room={}&name={}&participant={}{region}",
        spec.room, spec.name, spec.name
    );
    let bridge = ctx.bridge_for(&spec.room);
    // The focus limits /join per client address (10 a second, burst 20),
    // and every participant of a run comes from one: a 429 means wait and
    // ask again, as a client should, for up to a minute.
    let give_up = Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        let (status, body) =
            http::request(bridge, "GET", &join, None, Duration::from_secs(5)).await?;
        if status != 429 || Instant::now() > give_up {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    if status == 200 {
        #[derive(serde::Deserialize)]
        struct J {
            token: String,
            signal_url: String,
            bridge: String,
            region: String,
        }
        let j: J = serde_json::from_str(&body).map_err(|source| Error::BadAnswer {
            from: http::describe(bridge, "GET", &join),
            expected: "a placement (token, signal_url, bridge, region)",
            source,
        })?;
        lock(&ctx.placements)
            .entry(j.bridge.clone())
            .or_insert_with(|| (j.region.clone(), bridge_http(&j.signal_url)));
        return Ok((j.token, j.signal_url, Some((j.bridge, j.region))));
    }
    if status != 404 {
        return Err(Error::HttpStatus {
            request: http::describe(bridge, "GET", &join),
            status,
            hint: "",
            body: body.trim().to_string(),
        });
    }
    let path = format!("/dev/token?room={}&name={}", spec.room, spec.name);
    let (status, body) = http::request(bridge, "GET", &path, None, Duration::from_secs(5)).await?;
    if status != 200 {
        return Err(Error::HttpStatus {
            request: http::describe(bridge, "GET", &path),
            status,
            hint: " (is it `tern dev`? for `tern bridge` pass --secret)",
            body: body.trim().to_string(),
        });
    }
    #[derive(serde::Deserialize)]
    struct T {
        token: String,
    }
    let t: T = serde_json::from_str(&body).map_err(|source| Error::BadAnswer {
        from: http::describe(bridge, "GET", &path),
        expected: "a token",
        source,
    })?;
    Ok((t.token, own, None))
}

/// A bridge's HTTP address from its signalling URL (`ws://IP:PORT/signal`);
/// `None` for a host name (not resolved here) or another shape.
fn bridge_http(signal_url: &str) -> Option<SocketAddr> {
    let rest = signal_url
        .strip_prefix("ws://")
        .or_else(|| signal_url.strip_prefix("http://"))?;
    rest.split('/').next()?.parse().ok()
}

/// Percent-encode what is not unreserved in a URL query value.
fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_addresses_come_from_signalling_urls_and_query_values_are_escaped() {
        assert_eq!(
            bridge_http("ws://127.0.0.1:8081/signal"),
            "127.0.0.1:8081".parse().ok()
        );
        assert_eq!(bridge_http("wss://bridge.example/signal"), None);
        assert_eq!(query_escape("eu west/1"), "eu%20west%2F1");
    }
}
