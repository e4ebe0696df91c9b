//! The rustls configurations of relay connections: TLS 1.3 only, the
//! relay's one [`ALPN`], our own certificate whatever the peer hints, and
//! the verifiers that admit only bridges of the cluster CA.
//! `TlsContext` parses the key and loads the roots once, so a config per
//! connection (each with its own verdict slot) is cheap; it can take new
//! credentials (a rotated certificate, a new CA) and a new revoked list
//! while it runs, for the connections made after. Who may join the mesh is
//! decided by the CA (`ca`) and the verifiers (`verify`), not here.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::ca::CaCertificate;
use super::error::TlsError;
use super::identity::{BridgeIdentity, provider};
use super::refusal::Verdict;
use super::verify::{InboundVerifier, OutboundVerifier, Revoked, Verifiers};

/// The one application protocol relay connections speak. Bumped when the
/// framing changes incompatibly, so old and new bridges refuse each other in
/// the handshake instead of misparsing each other's frames.
pub const ALPN: &[u8] = b"tern-relay/1";

/// Our one certificate, whatever the peer hints.
#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl ResolvesClientCert for FixedCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The credentials connections are made with now.
struct Current {
    certified: Arc<CertifiedKey>,
    verifiers: Verifiers,
}

/// Everything needed to build per-connection rustls configs cheaply: the key
/// is parsed and the roots are loaded once (per set of credentials).
pub(crate) struct TlsContext {
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Current>>,
    revoked: Revoked,
}

impl TlsContext {
    pub(crate) fn new(identity: &BridgeIdentity, ca: &CaCertificate) -> Result<Self, TlsError> {
        let provider = provider();
        let current = Self::load(&provider, identity, ca)?;
        Ok(Self {
            provider,
            current: RwLock::new(Arc::new(current)),
            revoked: Arc::default(),
        })
    }

    fn load(
        provider: &Arc<CryptoProvider>,
        identity: &BridgeIdentity,
        ca: &CaCertificate,
    ) -> Result<Current, TlsError> {
        Ok(Current {
            certified: Arc::new(identity.certified_key(provider)?),
            verifiers: Verifiers::new(ca.der(), provider.clone())?,
        })
    }

    /// New connections present `identity` and trust `ca` (checked against
    /// each other by the caller); connections already made keep theirs.
    pub(crate) fn replace(
        &self,
        identity: &BridgeIdentity,
        ca: &CaCertificate,
    ) -> Result<(), TlsError> {
        let next = Arc::new(Self::load(&self.provider, identity, ca)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// Bridge ids refused from now on, in both directions.
    pub(crate) fn set_revoked(&self, ids: HashSet<String>) {
        *self.revoked.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ids);
    }

    pub(crate) fn is_revoked(&self, id: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn server_config(
        &self,
        verdict: Option<Verdict>,
    ) -> Result<rustls::ServerConfig, TlsError> {
        let current = self.current();
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(InboundVerifier {
                inner: current.verifiers.client.clone(),
                verdict,
                revoked: self.revoked.clone(),
            }))
            .with_cert_resolver(Arc::new(FixedCert(current.certified.clone())));
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    pub(crate) fn client_config(
        &self,
        verdict: Option<Verdict>,
    ) -> Result<rustls::ClientConfig, TlsError> {
        let current = self.current();
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            // Not a weakening: OutboundVerifier is WebPKI against the cluster
            // CA plus the name check, wrapped only to record its verdict.
            .with_custom_certificate_verifier(Arc::new(OutboundVerifier {
                inner: current.verifiers.server.clone(),
                verdict,
                revoked: self.revoked.clone(),
            }))
            .with_client_cert_resolver(Arc::new(FixedCert(current.certified.clone())));
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

/// The server side of a relay connection: presents `identity`, requires a
/// client certificate chaining to `ca`, speaks only [`ALPN`].
pub fn server_config(
    identity: &BridgeIdentity,
    ca: &CaCertificate,
) -> Result<rustls::ServerConfig, TlsError> {
    TlsContext::new(identity, ca)?.server_config(None)
}

/// The client side: trusts only `ca`, presents `identity`, speaks only
/// [`ALPN`]. The server name given to the connection (the expected bridge's
/// [`BridgeId::dns_name`](super::BridgeId::dns_name)) is what the peer's
/// certificate must name.
pub fn client_config(
    identity: &BridgeIdentity,
    ca: &CaCertificate,
) -> Result<rustls::ClientConfig, TlsError> {
    TlsContext::new(identity, ca)?.client_config(None)
}
