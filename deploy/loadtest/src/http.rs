//! A minimal HTTP/1.1 client (plain TCP, `Connection: close`) for the few
//! requests the load tool makes: dev tokens, `/metrics` scrapes and the Janus
//! HTTP API. Pulling in a full HTTP client crate for this is not worth the
//! build time; every request has a timeout so an unreachable server is an
//! error, never a hang.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// Largest response body accepted (a `/metrics` page is a few tens of KiB).
const MAX_RESPONSE: usize = 8 << 20;

/// `method path` on `addr`, optional JSON body; returns status and body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json_body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String)> {
    tokio::time::timeout(timeout, request_inner(addr, method, path, json_body))
        .await
        .map_err(|_| Error::Timeout {
            what: format!("{}: no response", describe(addr, method, path)),
            limit: timeout,
        })?
}

/// A request as errors name it: `GET http://127.0.0.1:8080/health`.
pub(crate) fn describe(addr: SocketAddr, method: &str, path: &str) -> String {
    format!("{method} http://{addr}{path}")
}

async fn request_inner(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json_body: Option<&str>,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.map_err(|source| Error::Io {
        what: format!("connecting to http://{addr}"),
        source,
    })?;
    let body = json_body.unwrap_or("");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n");
    if json_body.is_some() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())
        .await
        .map_err(|source| Error::Io {
            what: format!("sending {}", describe(addr, method, path)),
            source,
        })?;
    let mut raw = Vec::new();
    (&mut s)
        .take(MAX_RESPONSE as u64)
        .read_to_end(&mut raw)
        .await
        .map_err(|source| Error::Io {
            what: format!("reading the answer to {}", describe(addr, method, path)),
            source,
        })?;
    parse_response(&raw).map_err(|why| Error::MalformedHttp {
        request: describe(addr, method, path),
        why,
    })
}

/// Status and body of a raw response; `Err` says what is malformed.
fn parse_response(raw: &[u8]) -> std::result::Result<(u16, String), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "non-UTF-8 header")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("malformed status line")?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut b: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let line = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {line:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size {
            return Err(format!(
                "truncated chunk: {size} bytes announced, {} sent",
                b.len()
            ));
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..).unwrap_or(&[]);
    }
}

/// Sum of a Prometheus metric over all its label sets.
pub fn metric_sum(page: &str, name: &str) -> f64 {
    metric_sum_where(page, name, None)
}

/// Sum of a Prometheus metric over the label sets that have `label` (a
/// name and a value), or over all of them.
pub fn metric_sum_where(page: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
    let want = label.map(|(k, v)| format!("{k}=\"{v}\""));
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| {
            want.as_ref().is_none_or(|w| {
                // The label set is between the braces; a value cannot hold an
                // unescaped quote, so `k="v"` followed by `,` or `}` is exact.
                l.split_once('{')
                    .and_then(|(_, r)| r.split_once('}'))
                    .is_some_and(|(set, _)| set.split(',').any(|kv| kv == w))
            })
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").expect("ok");
        assert_eq!((s, b.as_str()), (200, "hi"));
        let (s, b) = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("ok");
        assert_eq!((s, b.as_str()), (404, "abcde"));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn sums_a_metric_over_label_sets() {
        let page = "# TYPE x counter\nx{shard=\"0\"} 3\nx{shard=\"1\"} 4\nxy 100\n";
        assert_eq!(metric_sum(page, "x"), 7.0);
        let page = "x{shard=\"0\",direction=\"out\"} 3\nx{shard=\"0\",direction=\"in\"} 4\nx{shard=\"1\",direction=\"out\"} 5\n";
        assert_eq!(metric_sum_where(page, "x", Some(("direction", "out"))), 8.0);
        assert_eq!(
            metric_sum_where(page, "x", Some(("direction", "none"))),
            0.0
        );
    }
}
