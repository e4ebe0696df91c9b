//! ICE-TCP (RFC 6544) for clients that cannot reach the media port over
//! UDP: every endpoint also gets a passive TCP host candidate; a client's
//! connection carries its STUN, DTLS and SRTP as RFC 4571 frames (a 16-bit
//! length, then the datagram). The shell only unframes and frames: the
//! first frame must be a STUN binding request whose ufrag names a shard
//! (as for UDP), and every later frame goes to that shard as a datagram
//! from the connection's remote address. What the core sends to that
//! address with `tcp` set goes back on the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tern_sfu::node::shard_of_datagram;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::msg::ShardMsg;

/// The write side of every ICE-TCP connection, by remote address: where a
/// shard sends what its core transmits over TCP.
pub type TcpWriters = Arc<DashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>;

/// Connections beyond this are refused at accept (each costs a task pair
/// and buffers; TCP is the fallback, not the common path).
const MAX_CONNECTIONS: usize = 4096;
/// A connection must present its STUN check this soon.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// ICE consent checks come every few seconds; a connection silent this long
/// is dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames queued for one connection's writer; beyond it frames are dropped
/// (media, repaired like UDP loss) rather than stalling the shard.
const WRITE_QUEUE: usize = 512;

fn dropped(reason: &'static str) {
    metrics::counter!("tern_ice_tcp_dropped_total", "reason" => reason).increment(1);
}

/// Accept ICE-TCP connections until the listener fails.
pub async fn serve(
    listener: TcpListener,
    local: SocketAddr,
    shards: Vec<mpsc::Sender<ShardMsg>>,
    writers: TcpWriters,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                warn!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if writers.len() >= MAX_CONNECTIONS {
            dropped("too_many_connections");
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            local,
            shards.clone(),
            writers.clone(),
        ));
    }
}

/// One RFC 4571 frame: its length, then the frame; None at a clean end of
/// the stream.
async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Bytes>> {
    let len = match r.read_u16().await {
        Ok(n) => usize::from(n),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(Some(Bytes::from(buf)))
}

/// `frame` with its RFC 4571 length in front, or None if it cannot be one.
pub fn framed(frame: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(frame.len()).ok()?;
    let mut out = Vec::with_capacity(frame.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(frame);
    Some(out)
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shards: Vec<mpsc::Sender<ShardMsg>>,
    writers: TcpWriters,
) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    // The first frame says which shard (and so which endpoint) this is.
    let first = match tokio::time::timeout(FIRST_FRAME_TIMEOUT, read_frame(&mut rd)).await {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) | Ok(Err(_)) => return,
        Err(_) => {
            dropped("no_stun");
            return;
        }
    };
    let Some(shard) = shard_of_datagram(None, &first, shards.len()) else {
        // Not a STUN check for one of our endpoints.
        dropped("unknown_ufrag");
        return;
    };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    writers.insert(peer, tx);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let to_shard = &shards[shard];
    let mut next = Some(first);
    loop {
        let frame = match next.take() {
            Some(f) => f,
            None => match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut rd)).await {
                Ok(Ok(Some(f))) => f,
                Ok(Ok(None)) => break,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "ICE-TCP read failed");
                    break;
                }
                Err(_) => {
                    dropped("idle");
                    break;
                }
            },
        };
        if to_shard
            .try_send(ShardMsg::TcpDatagrams {
                local,
                batch: vec![(peer, frame)],
            })
            .is_err()
        {
            dropped("shard_overloaded");
        }
    }
    writers.remove(&peer);
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_a_short_stream_is_an_error() {
        let mut wire = Vec::new();
        for f in [&b"hello"[..], &[], &[7u8; 1500]] {
            wire.extend(framed(f).expect("fits"));
        }
        let mut r = &wire[..];
        assert_eq!(
            read_frame(&mut r).await.expect("ok").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            read_frame(&mut r).await.expect("ok").as_deref(),
            Some(&[][..])
        );
        assert_eq!(
            read_frame(&mut r).await.expect("ok").map(|f| f.len()),
            Some(1500)
        );
        assert_eq!(read_frame(&mut r).await.expect("clean end"), None);
        // A length promising more than arrives.
        let mut cut = &[0u8, 10, 1, 2][..];
        assert!(read_frame(&mut cut).await.is_err());
        assert!(framed(&vec![0u8; 70_000]).is_none());
    }
}
