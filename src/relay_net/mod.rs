//! Transport of the relay mesh: bridges joined pairwise by one QUIC
//! connection each, mutually authenticated with certificates from the
//! cluster CA. Media travels as QUIC DATAGRAMs, control on a bidirectional
//! stream; the relay protocol on top lives elsewhere. This module only
//! decides who may connect and how the connection is tuned.

pub mod endpoint;
pub mod tls;

use std::path::Path;

pub use endpoint::{
    Direction, HandshakeError, MAX_RELAY_DATAGRAM, RelayConnection, RelayEndpoint, RelayError,
};
pub use tls::{
    ALPN, BridgeId, BridgeIdentity, CaCertificate, ClusterCa, RefusalReason, TlsError,
    peer_bridge_id,
};

use crate::config::RelayConfig;

/// A bridge's relay credentials, loaded and checked against each other.
#[derive(Clone, Debug)]
pub struct RelayCredentials {
    pub identity: BridgeIdentity,
    pub ca: CaCertificate,
}

/// Loads `relay.ca_cert`, `relay.cert` and `relay.key` and checks that the
/// key belongs to the certificate and that the certificate is currently valid
/// for the CA. Errors name the config key and file at fault.
pub fn load_identity(cfg: &RelayConfig) -> Result<RelayCredentials, TlsError> {
    let path = |key: &str, value: &Option<std::path::PathBuf>| -> Result<_, TlsError> {
        value.clone().ok_or_else(|| TlsError::Invalid {
            what: format!("relay.{key}"),
            message: "is not set".into(),
        })
    };
    let ca_path = path("ca_cert", &cfg.ca_cert)?;
    let cert_path = path("cert", &cfg.cert)?;
    let key_path = path("key", &cfg.key)?;
    let name = |key: &str, p: &Path| format!("relay.{key} {}", p.display());
    let ca = CaCertificate::parse(&name("ca_cert", &ca_path), &tls::read(&ca_path)?)?;
    let identity = BridgeIdentity::parse(
        &name("cert", &cert_path),
        &tls::read(&cert_path)?,
        &name("key", &key_path),
        &tls::read(&key_path)?,
    )?;
    ca.check_identity(&identity)
        .map_err(|reason| TlsError::NotTrusted {
            what: name("cert", &cert_path),
            ca: name("ca_cert", &ca_path),
            reason,
        })?;
    Ok(RelayCredentials { identity, ca })
}
