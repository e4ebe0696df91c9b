//! A bridge's identity in the relay mesh: its [`BridgeId`], which is the
//! single DNS name `<id>.bridge.tern` in its certificate's SAN, and its
//! credentials ([`BridgeIdentity`]: certificate chain and key). Using a DNS
//! name (rather than, say, the CN) lets the standard WebPKI name check do
//! the "is this the bridge I meant to reach" test on the connecting side,
//! and the CA's name constraint limits what it can sign to that domain.
//! Issuing certificates is the CA's job (`ca`), checking them the
//! verifiers' (`verify`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::error::{TlsError, invalid};
use super::pem_files::{
    cert_to_pem, create_dir, key_to_pem, parse_certs, parse_key, read, write_pair,
};

/// Parent domain of every bridge name: bridge `eu-1` is `eu-1.bridge.tern`.
pub const BRIDGE_DOMAIN: &str = "bridge.tern";

/// A bridge id as it appears in relay certificates: 1–63 of `[a-z0-9-]`, not
/// starting or ending with `-` (it is a DNS label).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BridgeId(String);

impl BridgeId {
    pub fn new(id: impl Into<String>) -> Result<Self, TlsError> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("must not be empty")
        } else if id.len() > 63 {
            Some("must be at most 63 characters")
        } else if !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Some("only lowercase letters a-z, digits and '-' are allowed")
        } else if id.starts_with('-') || id.ends_with('-') {
            Some("must not start or end with '-'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(TlsError::InvalidBridgeId { id, reason }),
            None => Ok(Self(id)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SAN DNS name a certificate for this bridge carries, and the TLS
    /// server name a connecting bridge asks for.
    pub fn dns_name(&self) -> String {
        format!("{}.{BRIDGE_DOMAIN}", self.0)
    }

    fn from_dns_name(name: &str) -> Option<Self> {
        let label = name.strip_suffix(BRIDGE_DOMAIN)?.strip_suffix('.')?;
        Self::new(label).ok()
    }
}

impl FromStr for BridgeId {
    type Err = TlsError;
    fn from_str(s: &str) -> Result<Self, TlsError> {
        Self::new(s)
    }
}

impl fmt::Display for BridgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for BridgeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The bridge id a certificate names: its one SAN DNS name under
/// `bridge.tern`. Anything else (no such name, several) is an error, so one
/// certificate can never speak for two bridges.
pub fn peer_bridge_id(cert: &CertificateDer<'_>) -> Result<BridgeId, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| invalid("certificate", format!("cannot parse: {e}")))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| invalid("certificate", format!("bad subjectAltName: {e}")))?
        .ok_or_else(|| invalid("certificate", "has no subjectAltName"))?;
    let dns_names = san.value.general_names.iter().filter_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(d) => Some(*d),
        _ => None,
    });
    let suffix = format!(".{BRIDGE_DOMAIN}");
    let mut found = None;
    for name in dns_names {
        if !name.ends_with(&suffix) {
            continue;
        }
        let id = BridgeId::from_dns_name(name).ok_or_else(|| {
            invalid(
                "certificate",
                format!("{name:?} is not a valid bridge name"),
            )
        })?;
        if found.replace(id).is_some() {
            return Err(invalid(
                "certificate",
                format!("names more than one bridge under {BRIDGE_DOMAIN}"),
            ));
        }
    }
    found.ok_or_else(|| {
        invalid(
            "certificate",
            format!("names no bridge under {BRIDGE_DOMAIN}"),
        )
    })
}

/// A bridge's certificate chain (leaf first) and private key.
pub struct BridgeIdentity {
    pub(super) id: BridgeId,
    pub(super) cert_chain: Vec<CertificateDer<'static>>,
    pub(super) key: PrivateKeyDer<'static>,
}

impl Clone for BridgeIdentity {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for BridgeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeIdentity")
            .field("id", &self.id)
            .field("certificates", &self.cert_chain.len())
            .finish_non_exhaustive()
    }
}

impl BridgeIdentity {
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        Self::parse(
            "bridge certificate",
            cert_pem.as_bytes(),
            "bridge key",
            key_pem.as_bytes(),
        )
    }

    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        Self::parse(
            &cert_path.display().to_string(),
            &read(cert_path)?,
            &key_path.display().to_string(),
            &read(key_path)?,
        )
    }

    pub(crate) fn parse(
        cert_what: &str,
        cert_pem: &[u8],
        key_what: &str,
        key_pem: &[u8],
    ) -> Result<Self, TlsError> {
        let cert_chain = parse_certs(cert_what, cert_pem)?;
        let key = parse_key(key_what, key_pem)?;
        let id = peer_bridge_id(&cert_chain[0]).map_err(|e| match e {
            TlsError::Invalid { message, .. } => invalid(cert_what, message),
            e => e,
        })?;
        let identity = Self {
            id,
            cert_chain,
            key,
        };
        identity.certified_key(&provider()).map_err(|e| match e {
            TlsError::Rustls(rustls::Error::InconsistentKeys(_)) => invalid(
                key_what,
                format!("is not the key of the certificate {cert_what}"),
            ),
            TlsError::Rustls(e) => invalid(key_what, e.to_string()),
            e => e,
        })?;
        Ok(identity)
    }

    /// Writes `<id>.pem` and `<id>-key.pem` (mode 0600) into `dir`, creating
    /// it; refuses if either exists. Returns (certificate, key) paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
        create_dir(dir)?;
        let cert_path = dir.join(format!("{}.pem", self.id));
        let key_path = dir.join(format!("{}-key.pem", self.id));
        write_pair((&cert_path, &self.cert_pem()), (&key_path, &self.key_pem()))?;
        Ok((cert_path, key_path))
    }

    pub fn id(&self) -> &BridgeId {
        &self.id
    }

    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.cert_chain
    }

    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    pub fn cert_pem(&self) -> String {
        self.cert_chain.iter().map(cert_to_pem).collect()
    }

    pub fn key_pem(&self) -> String {
        key_to_pem(&self.key)
    }

    pub(super) fn certified_key(
        &self,
        provider: &CryptoProvider,
    ) -> Result<CertifiedKey, TlsError> {
        let key = provider
            .key_provider
            .load_private_key(self.key.clone_key())?;
        let certified = CertifiedKey::new(self.cert_chain.clone(), key);
        certified.keys_match()?;
        Ok(certified)
    }
}

/// The crypto provider every relay key, verifier and config is built with.
pub(super) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_ids_are_dns_labels() {
        for ok in ["a", "eu-west-1", "0", &"x".repeat(63)] {
            assert!(BridgeId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Eu", "a_b", "a.b", "-a", "a-", "ü", &"x".repeat(64)] {
            let e = BridgeId::new(bad).expect_err(bad).to_string();
            assert!(e.contains("invalid bridge id"), "{e}");
        }
    }
}
