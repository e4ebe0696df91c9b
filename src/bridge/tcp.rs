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

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use tern_sfu::node::shard_of_datagram;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::msg::ShardMsg;

/// The write side of every ICE-TCP connection, by remote address: where a
/// shard sends what its core transmits over TCP.
///
/// What goes in is the datagram; the writer frames it.
pub type TcpWriters = Arc<DashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>;

/// The ICE-TCP listener, on the media port's number (TCP and UDP ports are
/// apart). When the media port was ephemeral, that number may already be
/// some TCP socket's (seen in CI: another process's client connection), so
/// the listener then goes wherever the system puts it; the candidate
/// carries the listener's port either way. A configured port stays an
/// error when taken: an operator opened that port in a firewall.
pub async fn bind_listener(
    media_addr: SocketAddr,
    ephemeral: bool,
) -> std::io::Result<TcpListener> {
    match TcpListener::bind(media_addr).await {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && ephemeral => {
            TcpListener::bind(SocketAddr::new(media_addr.ip(), 0)).await
        }
        other => other,
    }
}

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

/// Received frames are cut from one buffer this big (refilled when a
/// frame no longer fits): one allocation per many frames, not per frame.
const READ_CHUNK: usize = 64 * 1024;
/// Frames already buffered are handed to the shard together, up to this.
const MAX_BATCH: usize = 32;
/// What the writer gathers from its queue into one write.
const WRITE_CHUNK: usize = 64 * 1024;

/// One RFC 4571 frame: its length, then the frame; None at a clean end of
/// the stream. The frame is cut from `chunk`.
async fn read_frame<R: AsyncReadExt + Unpin>(
    r: &mut R,
    chunk: &mut BytesMut,
) -> std::io::Result<Option<Bytes>> {
    let len = match r.read_u16().await {
        Ok(n) => usize::from(n),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    if chunk.capacity() < len {
        // Reclaims the old block once every frame cut from it is dropped.
        chunk.reserve(READ_CHUNK.max(len));
    }
    chunk.resize(len, 0);
    r.read_exact(&mut chunk[..]).await?;
    Ok(Some(chunk.split().freeze()))
}

/// Whether `buffered` (what the reader already holds) starts with a whole
/// frame, so reading it will not wait on the network.
fn whole_frame_buffered(buffered: &[u8]) -> bool {
    match buffered {
        [hi, lo, rest @ ..] => rest.len() >= usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => false,
    }
}

/// Append `frame` with its RFC 4571 length in front; false (and nothing
/// appended) if it is too long to be one.
pub fn push_framed(out: &mut Vec<u8>, frame: &[u8]) -> bool {
    let Ok(len) = u16::try_from(frame.len()) else {
        return false;
    };
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(frame);
    true
}

/// Whether a datagram can go on an ICE-TCP connection at all.
pub fn fits_a_frame(datagram: &[u8]) -> bool {
    datagram.len() <= usize::from(u16::MAX)
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
    let mut chunk = BytesMut::new();
    // The first frame says which shard (and so which endpoint) this is.
    let first =
        match tokio::time::timeout(FIRST_FRAME_TIMEOUT, read_frame(&mut rd, &mut chunk)).await {
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
        // Whatever is queued goes out framed in one write.
        let mut out = Vec::with_capacity(WRITE_CHUNK);
        while let Some(datagram) = rx.recv().await {
            out.clear();
            push_framed(&mut out, &datagram);
            while out.len() < WRITE_CHUNK
                && let Ok(d) = rx.try_recv()
            {
                push_framed(&mut out, &d);
            }
            if wr.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    let to_shard = &shards[shard];
    let mut next = Some(first);
    'conn: loop {
        let frame = match next.take() {
            Some(f) => f,
            None => match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut rd, &mut chunk)).await
            {
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
        let mut batch = Vec::with_capacity(MAX_BATCH.min(1 + rd.buffer().len() / 64));
        batch.push((peer, frame));
        let mut ended = false;
        while batch.len() < MAX_BATCH && whole_frame_buffered(rd.buffer()) {
            match read_frame(&mut rd, &mut chunk).await {
                Ok(Some(f)) => batch.push((peer, f)),
                _ => {
                    ended = true;
                    break;
                }
            }
        }
        if to_shard
            .try_send(ShardMsg::TcpDatagrams { local, batch })
            .is_err()
        {
            dropped("shard_overloaded");
        }
        if ended {
            break 'conn;
        }
    }
    writers.remove(&peer);
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ephemeral_media_port_taken_over_tcp_gets_another_and_a_configured_one_fails() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("addr");
        let other = bind_listener(addr, true).await.expect("falls back");
        let got = other.local_addr().expect("addr");
        assert_eq!(got.ip(), addr.ip());
        assert_ne!(got.port(), addr.port());
        let err = bind_listener(addr, false)
            .await
            .expect_err("configured port taken");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        drop(taken);
        let same = bind_listener(addr, true).await.expect("free again");
        assert_eq!(same.local_addr().expect("addr"), addr);
    }

    #[tokio::test]
    async fn frames_round_trip_and_a_short_stream_is_an_error() {
        let mut wire = Vec::new();
        for f in [&b"hello"[..], &[], &[7u8; 1500]] {
            assert!(push_framed(&mut wire, f));
        }
        let mut chunk = BytesMut::new();
        let mut r = &wire[..];
        assert!(whole_frame_buffered(r));
        assert_eq!(
            read_frame(&mut r, &mut chunk).await.expect("ok").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            read_frame(&mut r, &mut chunk).await.expect("ok").as_deref(),
            Some(&[][..])
        );
        assert!(whole_frame_buffered(r));
        assert!(!whole_frame_buffered(&r[..1000]), "a frame cut short");
        let big = read_frame(&mut r, &mut chunk).await.expect("ok");
        assert_eq!(big.as_deref(), Some(&[7u8; 1500][..]));
        assert_eq!(
            read_frame(&mut r, &mut chunk).await.expect("clean end"),
            None
        );
        // A length promising more than arrives.
        let mut cut = &[0u8, 10, 1, 2][..];
        assert!(read_frame(&mut cut, &mut chunk).await.is_err());
        let before = wire.len();
        assert!(!push_framed(&mut wire, &vec![0u8; 70_000]));
        assert_eq!(wire.len(), before, "nothing appended");
        assert!(!fits_a_frame(&vec![0u8; 70_000]) && fits_a_frame(&[0u8; 1500]));
    }

    #[tokio::test]
    async fn frames_cut_from_one_chunk_stay_intact_after_the_chunk_is_refilled() {
        let mut wire = Vec::new();
        for i in 0..200u8 {
            assert!(push_framed(&mut wire, &[i; 1200]));
        }
        let mut chunk = BytesMut::new();
        let mut r = &wire[..];
        let mut frames = Vec::new();
        while let Some(f) = read_frame(&mut r, &mut chunk).await.expect("ok") {
            frames.push(f);
        }
        assert_eq!(frames.len(), 200);
        for (i, f) in frames.iter().enumerate() {
            assert!(f.iter().all(|&b| usize::from(b) == i), "frame {i} intact");
        }
    }
}
