//! Transport of the relay mesh: bridges joined pairwise by one QUIC
//! connection each, mutually authenticated with certificates from the
//! cluster CA. Media travels as QUIC DATAGRAMs, control on a bidirectional
//! stream; the relay protocol on top lives elsewhere. This module only
//! decides who may connect and how the connection is tuned.
//!
//! Who may connect: a cluster CA ([`ca`]) issues one certificate per bridge
//! ([`identity`]), and both ends of every relay connection must present
//! one; the verifiers (`verify`) check it and name any refusal
//! ([`refusal`]); [`tls`] turns credentials into per-connection rustls
//! configs, and [`endpoint`] runs the QUIC connections.

pub mod ca;
pub mod endpoint;
pub mod error;
pub mod identity;
mod pem_files;
pub mod refusal;
pub mod tls;
mod verify;

use std::collections::HashSet;
use std::path::Path;

pub use ca::{CaCertificate, ClusterCa};
pub use endpoint::{
    Direction, HandshakeError, MAX_RELAY_DATAGRAM, RelayConnection, RelayEndpoint, RelayError,
};
pub use error::TlsError;
pub use identity::{BridgeId, BridgeIdentity, peer_bridge_id};
pub use refusal::RefusalReason;
pub use tls::ALPN;

use crate::config::RelayConfig;

/// A bridge's relay credentials, loaded and checked against each other.
#[derive(Clone, Debug)]
pub struct RelayCredentials {
    pub identity: BridgeIdentity,
    pub ca: CaCertificate,
}

/// The bridge ids a revoked list names: one per line, blank lines and `#`
/// comments skipped. An invalid id is an error naming its line, so a typo
/// does not silently leave a bridge admitted.
pub fn parse_revoked(what: &str, text: &str) -> Result<HashSet<String>, TlsError> {
    let mut ids = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let id = BridgeId::new(line).map_err(|e| TlsError::Invalid {
            what: format!("{what} line {}", n + 1),
            message: e.to_string(),
        })?;
        ids.insert(id.as_str().to_string());
    }
    Ok(ids)
}

/// Loads `relay.revoked_file` (none set: nobody is revoked).
pub fn load_revoked(cfg: &RelayConfig) -> Result<HashSet<String>, TlsError> {
    let Some(path) = &cfg.revoked_file else {
        return Ok(HashSet::new());
    };
    let bytes = pem_files::read(path)?;
    let what = format!("relay.revoked_file {}", path.display());
    let text = String::from_utf8(bytes).map_err(|_| TlsError::Invalid {
        what: what.clone(),
        message: "is not UTF-8".into(),
    })?;
    parse_revoked(&what, &text)
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
    let ca = CaCertificate::parse(&name("ca_cert", &ca_path), &pem_files::read(&ca_path)?)?;
    let identity = BridgeIdentity::parse(
        &name("cert", &cert_path),
        &pem_files::read(&cert_path)?,
        &name("key", &key_path),
        &pem_files::read(&key_path)?,
    )?;
    ca.check_identity(&identity)
        .map_err(|reason| TlsError::NotTrusted {
            what: name("cert", &cert_path),
            ca: name("ca_cert", &ca_path),
            reason,
        })?;
    Ok(RelayCredentials { identity, ca })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_list_names_bridge_ids_one_per_line_with_comments() {
        let ids = parse_revoked("list", "# lost laptop\neu-1\n\n  us-2  # stolen key\n")
            .expect("valid list");
        assert_eq!(ids.len(), 2);
        assert!(ids.contains("eu-1") && ids.contains("us-2"));
        let e = parse_revoked("list", "eu-1\nEU_2\n").expect_err("invalid id");
        assert!(e.to_string().contains("list line 2"), "{e}");
    }
}
