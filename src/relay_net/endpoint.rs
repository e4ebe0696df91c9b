//! One QUIC endpoint per bridge for the relay mesh: it accepts connections
//! from peer bridges and dials them, on the same UDP socket, and hands out
//! only connections whose peer proved its bridge id with a certificate from
//! the cluster CA.
//!
//! Media rides QUIC DATAGRAMs, so the transport is tuned for them: a raised
//! initial MTU so a full RTP packet plus the relay header fits from the first
//! packet, datagram buffers deep enough for video bursts, and keep-alive /
//! idle timeout short enough to serve as dead-peer detection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};
use tokio::sync::{Mutex, mpsc};
use tracing::{info, warn};

use super::ca::CaCertificate;
use super::error::TlsError;
use super::identity::{BridgeId, BridgeIdentity, peer_bridge_id};
use super::refusal::{RefusalReason, Verdict};
use super::tls::TlsContext;

/// Largest relay datagram the protocol sends: an RTP packet of up to ~1,200
/// bytes (plus a little for extensions) and the 16-byte relay header.
pub const MAX_RELAY_DATAGRAM: usize = 1232;
/// UDP payload size assumed from the first packet. Right after the handshake
/// quinn's default (1200) leaves room for 1162-byte datagrams only, too
/// little for [`MAX_RELAY_DATAGRAM`]; 1452 (1500-byte Ethernet minus IPv6 and
/// UDP headers) leaves 1414. Paths with a smaller MTU lose the large packets
/// until black-hole detection falls back to 1200.
pub const INITIAL_MTU: u16 = 1452;
/// Queued datagrams per direction. A keyframe of a 720p simulcast layer is
/// ~100 packets, and one connection carries every shared conference.
pub const DATAGRAM_BUFFER: usize = 2 << 20;
/// Requested kernel socket buffers; the kernel caps them at
/// `net.core.{r,w}mem_max`.
const SOCKET_BUFFER: usize = 4 << 20;
/// Keep-alive and idle timeout are the dead-peer detection: a peer that has
/// been silent for [`IDLE_TIMEOUT`] despite our pings is gone.
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(IDLE_TIMEOUT_MS as u64);
const IDLE_TIMEOUT_MS: u32 = 5_000;
/// The control stream plus a few spare; media never uses streams.
const MAX_BIDI_STREAMS: u8 = 4;
/// Handshakes in progress beyond this are refused outright, so a flood of
/// connection attempts cannot pin unbounded tasks and memory.
const MAX_PENDING_HANDSHAKES: usize = 64;

/// Which side opened the connection: the `direction` label of the handshake
/// metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn label(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot bind the relay endpoint to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("relay identity {id} is not usable: {reason}")]
    Identity { id: BridgeId, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("relay QUIC configuration: {0}")]
    Quic(String),
}

/// A relay handshake that did not produce a connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The TLS handshake was refused, by us or by the peer.
    #[error("{direction} relay handshake with {remote} refused ({reason}): {detail}")]
    Refused {
        direction: Direction,
        remote: SocketAddr,
        reason: RefusalReason,
        detail: String,
    },
    /// The handshake did not complete: timeout, reset, endpoint closed.
    #[error("{direction} relay handshake with {remote} failed: {error}")]
    Failed {
        direction: Direction,
        remote: SocketAddr,
        error: ConnectionError,
    },
    /// The connection could not even be started (bad address, endpoint
    /// closed).
    #[error("cannot connect to relay peer at {remote}: {error}")]
    Connect {
        remote: SocketAddr,
        error: quinn::ConnectError,
    },
    #[error("relay TLS configuration: {0}")]
    Config(String),
}

impl HandshakeError {
    pub fn refusal_reason(&self) -> Option<RefusalReason> {
        match self {
            Self::Refused { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

/// An authenticated relay connection to one peer bridge.
#[derive(Clone, Debug)]
pub struct RelayConnection {
    peer: BridgeId,
    direction: Direction,
    conn: quinn::Connection,
}

impl RelayConnection {
    /// The peer's bridge id, as its certificate names it.
    pub fn peer_id(&self) -> &BridgeId {
        &self.peer
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    pub fn into_connection(self) -> quinn::Connection {
        self.conn
    }

    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Largest datagram that can be sent now (it changes with the path MTU);
    /// `None` if the peer does not accept datagrams.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.conn.max_datagram_size()
    }

    /// Whether a [`MAX_RELAY_DATAGRAM`]-byte datagram fits now. False after
    /// black-hole detection shrank the path MTU: the sender must then split
    /// or drop large packets.
    pub fn fits_relay_datagrams(&self) -> bool {
        self.max_datagram_size()
            .is_some_and(|m| m >= MAX_RELAY_DATAGRAM)
    }
}

type Accepted = Result<RelayConnection, HandshakeError>;

/// A bridge's relay endpoint: server and client on one UDP socket.
pub struct RelayEndpoint {
    endpoint: quinn::Endpoint,
    local_id: BridgeId,
    tls: Arc<TlsContext>,
    transport: Arc<TransportConfig>,
    accepted: Mutex<mpsc::Receiver<Accepted>>,
    acceptor: tokio::task::AbortHandle,
}

impl std::fmt::Debug for RelayEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayEndpoint")
            .field("local_id", &self.local_id)
            .field("local_addr", &self.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Drop for RelayEndpoint {
    fn drop(&mut self) {
        // The accept loop holds a handle on the socket; without this the
        // port would stay bound after the endpoint is gone.
        self.acceptor.abort();
    }
}

impl RelayEndpoint {
    /// Binds `listen` and starts accepting. Must run inside a tokio runtime.
    /// Fails if `identity` is not currently valid for `ca`: better to stop at
    /// startup than to be refused by every peer later.
    pub fn bind(
        listen: SocketAddr,
        identity: BridgeIdentity,
        ca: &CaCertificate,
    ) -> Result<RelayEndpoint, RelayError> {
        ca.check_identity(&identity)
            .map_err(|reason| RelayError::Identity {
                id: identity.id().clone(),
                reason,
            })?;
        let tls = Arc::new(TlsContext::new(&identity, ca)?);
        let transport = Arc::new(transport_config());
        let server = server_config(&tls, &transport, None).map_err(RelayError::Quic)?;
        let socket = bind_socket(listen).map_err(|source| RelayError::Bind {
            addr: listen,
            source,
        })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| RelayError::Bind {
            addr: listen,
            source,
        })?;
        let (tx, rx) = mpsc::channel(MAX_PENDING_HANDSHAKES);
        let acceptor = tokio::spawn(accept_loop(
            endpoint.clone(),
            tls.clone(),
            transport.clone(),
            tx,
        ))
        .abort_handle();
        info!(
            id = %identity.id(),
            addr = ?endpoint.local_addr().ok(),
            "relay endpoint listening"
        );
        Ok(RelayEndpoint {
            endpoint,
            local_id: identity.id().clone(),
            tls,
            transport,
            accepted: Mutex::new(rx),
            acceptor,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn local_id(&self) -> &BridgeId {
        &self.local_id
    }

    /// Rotates credentials without a restart: handshakes from now on present
    /// `identity` and trust `ca`; connections already up keep theirs (TLS
    /// authenticated them once; a revoked peer is closed by the caller).
    /// Refused, changing nothing, when `identity` names another bridge or is
    /// not currently valid for `ca`.
    pub fn reload(&self, identity: &BridgeIdentity, ca: &CaCertificate) -> Result<(), RelayError> {
        if identity.id() != &self.local_id {
            return Err(RelayError::Identity {
                id: identity.id().clone(),
                reason: format!("this endpoint is bridge {}", self.local_id),
            });
        }
        ca.check_identity(identity)
            .map_err(|reason| RelayError::Identity {
                id: identity.id().clone(),
                reason,
            })?;
        self.tls.replace(identity, ca)?;
        Ok(())
    }

    /// Bridge ids refused from now on, inbound and outbound, whatever their
    /// certificates (refusal reason `revoked`).
    pub fn set_revoked(&self, ids: std::collections::HashSet<String>) {
        self.tls.set_revoked(ids);
    }

    pub fn is_revoked(&self, id: &BridgeId) -> bool {
        self.tls.is_revoked(id.as_str())
    }

    /// The underlying endpoint, for statistics.
    pub fn quinn_endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Connects to the bridge `expected` at `addr`. The peer's certificate
    /// must name `expected`; a valid certificate of any other bridge is
    /// refused ([`RefusalReason::PeerIdMismatch`]). Returns once the peer has
    /// also accepted our certificate.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: &BridgeId,
    ) -> Result<RelayConnection, HandshakeError> {
        let verdict = Verdict::default();
        let result = self.connect_inner(addr, expected, &verdict).await;
        report(Direction::Outbound, &result);
        result
    }

    async fn connect_inner(
        &self,
        addr: SocketAddr,
        expected: &BridgeId,
        verdict: &Verdict,
    ) -> Accepted {
        let crypto = self
            .tls
            .client_config(Some(verdict.clone()))
            .map_err(|e| HandshakeError::Config(e.to_string()))?;
        let crypto = QuicClientConfig::try_from(crypto)
            .map_err(|e| HandshakeError::Config(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        let connecting = self
            .endpoint
            .connect_with(config, addr, &expected.dns_name())
            .map_err(|error| HandshakeError::Connect {
                remote: addr,
                error,
            })?;
        let classify = |e| classify(Direction::Outbound, addr, e, verdict);
        let conn = connecting.await.map_err(classify)?;
        // The client finishes its TLS handshake one flight before the server
        // has checked the client's certificate, so a connection that quinn
        // calls established may still be refused. The server's HANDSHAKE_DONE
        // is its acceptance.
        wait_confirmed(&conn).await.map_err(classify)?;
        Ok(RelayConnection {
            peer: expected.clone(),
            direction: Direction::Outbound,
            conn,
        })
    }

    /// The next inbound handshake's outcome: an authenticated connection, or
    /// why it was refused (already logged and counted). `None` once the
    /// endpoint is closed.
    pub async fn accept(&self) -> Option<Result<RelayConnection, HandshakeError>> {
        self.accepted.lock().await.recv().await
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.endpoint.close(VarInt::from_u32(0), b"shutdown");
    }

    /// Waits until the peers were told about [`Self::close`].
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

fn transport_config() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_uni_streams(VarInt::from_u32(0))
        .max_concurrent_bidi_streams(VarInt::from(MAX_BIDI_STREAMS))
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))))
        .initial_mtu(INITIAL_MTU)
        .mtu_discovery_config(Some(MtuDiscoveryConfig::default()))
        .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_BUFFER);
    t
}

fn server_config(
    tls: &TlsContext,
    transport: &Arc<TransportConfig>,
    verdict: Option<Verdict>,
) -> Result<quinn::ServerConfig, String> {
    let crypto = tls.server_config(verdict).map_err(|e| e.to_string())?;
    let crypto = QuicServerConfig::try_from(crypto).map_err(|e| e.to_string())?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport.clone());
    Ok(config)
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: one relay socket carries many conferences' video, whose
    // keyframe bursts overflow the kernel's default ~200 KiB buffer.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    // Linux reports twice the granted size (bookkeeping overhead included).
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    if granted < SOCKET_BUFFER {
        warn!(
            granted,
            requested = SOCKET_BUFFER,
            "relay socket receive buffer capped by net.core.rmem_max; bursts may be dropped \
             by the kernel (sysctl -w net.core.rmem_max={SOCKET_BUFFER})"
        );
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Decrements the pending-handshake count however the handshake task ends.
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    tls: Arc<TlsContext>,
    transport: Arc<TransportConfig>,
    tx: mpsc::Sender<Accepted>,
) {
    let pending = Arc::new(AtomicUsize::new(0));
    while let Some(incoming) = endpoint.accept().await {
        if pending.load(Ordering::Relaxed) >= MAX_PENDING_HANDSHAKES {
            let remote = incoming.remote_address();
            incoming.refuse();
            let result = Err(HandshakeError::Refused {
                direction: Direction::Inbound,
                remote,
                reason: RefusalReason::Overload,
                detail: format!("{MAX_PENDING_HANDSHAKES} handshakes already in progress"),
            });
            report(Direction::Inbound, &result);
            // Never wait here: under a flood the consumer may be behind.
            let _ = tx.try_send(result);
            continue;
        }
        pending.fetch_add(1, Ordering::Relaxed);
        let guard = Pending(pending.clone());
        let (tls, transport, tx) = (tls.clone(), transport.clone(), tx.clone());
        tokio::spawn(async move {
            let result = handshake_inbound(incoming, &tls, &transport).await;
            report(Direction::Inbound, &result);
            // Counted as pending until handed over, so a consumer that stops
            // calling accept() bounds the number of waiting tasks.
            let _ = tx.send(result).await;
            drop(guard);
        });
    }
}

async fn handshake_inbound(
    incoming: quinn::Incoming,
    tls: &TlsContext,
    transport: &Arc<TransportConfig>,
) -> Accepted {
    let remote = incoming.remote_address();
    let verdict = Verdict::default();
    // A config per handshake gives the verifier a slot of its own to record
    // exactly why it refused this peer.
    let config =
        server_config(tls, transport, Some(verdict.clone())).map_err(HandshakeError::Config)?;
    let conn = match incoming.accept_with(Arc::new(config)) {
        Ok(connecting) => connecting.await,
        Err(e) => Err(e),
    }
    .map_err(|e| classify(Direction::Inbound, remote, e, &verdict))?;
    // The verifier already insisted on exactly one bridge name.
    let peer = conn
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|chain| chain.first().map(peer_bridge_id))
        .transpose()
        .ok()
        .flatten();
    let Some(peer) = peer else {
        conn.close(VarInt::from_u32(1), b"no bridge identity");
        return Err(HandshakeError::Refused {
            direction: Direction::Inbound,
            remote,
            reason: RefusalReason::BadCertificate,
            detail: "no bridge id in the peer certificate".into(),
        });
    };
    Ok(RelayConnection {
        peer,
        direction: Direction::Inbound,
        conn,
    })
}

async fn wait_confirmed(conn: &quinn::Connection) -> Result<(), ConnectionError> {
    // quinn has no event for HANDSHAKE_DONE, only a frame counter; it comes
    // one round trip after the handshake, so polling it costs little.
    loop {
        if conn.stats().frame_rx.handshake_done > 0 {
            return Ok(());
        }
        tokio::select! {
            e = conn.closed() => return Err(e),
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
}

/// TLS alerts travel as QUIC CRYPTO_ERROR codes 0x100 + alert.
fn crypto_alert(code: quinn::TransportErrorCode) -> Option<u8> {
    u64::from(code)
        .checked_sub(0x100)
        .and_then(|a| u8::try_from(a).ok())
}

const ALERT_CERTIFICATE_REQUIRED: u8 = 116;
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

fn classify(
    direction: Direction,
    remote: SocketAddr,
    error: ConnectionError,
    verdict: &Verdict,
) -> HandshakeError {
    let recorded = verdict.lock().unwrap_or_else(|p| p.into_inner()).take();
    let refused = |reason, detail| HandshakeError::Refused {
        direction,
        remote,
        reason,
        detail,
    };
    if let Some((reason, detail)) = recorded {
        return refused(reason, detail);
    }
    match &error {
        // Our own TLS stack refused, for a reason our verifiers never saw.
        ConnectionError::TransportError(e) => {
            let reason = match crypto_alert(e.code) {
                Some(ALERT_CERTIFICATE_REQUIRED) => RefusalReason::NoClientCert,
                Some(ALERT_NO_APPLICATION_PROTOCOL) => RefusalReason::Alpn,
                _ => RefusalReason::Protocol,
            };
            let detail = match reason {
                RefusalReason::NoClientCert => "the peer presented no certificate".into(),
                RefusalReason::Alpn => format!(
                    "the peer does not speak {}",
                    String::from_utf8_lossy(super::tls::ALPN)
                ),
                _ => e.to_string(),
            };
            refused(reason, detail)
        }
        // The peer's TLS stack refused us.
        ConnectionError::ConnectionClosed(close) => match crypto_alert(close.error_code) {
            Some(ALERT_NO_APPLICATION_PROTOCOL) => refused(
                RefusalReason::Alpn,
                "the peer refused our application protocol".into(),
            ),
            Some(alert) => refused(
                RefusalReason::PeerRefused,
                format!(
                    "the peer sent TLS alert {:?}: {}",
                    rustls::AlertDescription::from(alert),
                    String::from_utf8_lossy(&close.reason)
                ),
            ),
            None => refused(RefusalReason::Protocol, close.to_string()),
        },
        _ => HandshakeError::Failed {
            direction,
            remote,
            error,
        },
    }
}

fn report(direction: Direction, result: &Accepted) {
    let dir = direction.label();
    match result {
        Ok(c) => {
            metrics::counter!("tern_relay_handshakes_total", "direction" => dir).increment(1);
            info!(
                direction = dir,
                peer = %c.peer,
                remote = %c.remote_address(),
                max_datagram = ?c.max_datagram_size(),
                "relay connection established"
            );
        }
        Err(e) => match e.refusal_reason() {
            Some(reason) => {
                metrics::counter!(
                    "tern_relay_handshakes_refused_total",
                    "direction" => dir,
                    "reason" => reason.label()
                )
                .increment(1);
                warn!(direction = dir, reason = reason.label(), "{e}");
            }
            None => {
                metrics::counter!("tern_relay_handshakes_failed_total", "direction" => dir)
                    .increment(1);
                warn!(direction = dir, "{e}");
            }
        },
    }
}
