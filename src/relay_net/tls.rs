//! Who may join the relay mesh: a cluster CA issues one certificate per
//! bridge, and both ends of every relay connection must present one.
//!
//! A bridge's identity is the single DNS name `<id>.bridge.tern` in its
//! certificate's SAN. Using a DNS name (rather than, say, the CN) lets the
//! standard WebPKI name check do the "is this the bridge I meant to reach"
//! test on the connecting side, and the CA's name constraint limits what it
//! can sign to that domain.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, PublicKeyData as _,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName as TlsDn, RootCertStore,
    SignatureScheme,
};

/// The one application protocol relay connections speak. Bumped when the
/// framing changes incompatibly, so old and new bridges refuse each other in
/// the handshake instead of misparsing each other's frames.
pub const ALPN: &[u8] = b"tern-relay/1";

/// Parent domain of every bridge name: bridge `eu-1` is `eu-1.bridge.tern`.
pub const BRIDGE_DOMAIN: &str = "bridge.tern";

/// File names inside the directory `tern ca init` writes.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Default lifetimes. The CA outlives many bridge certificates so bridges can
/// be re-issued without touching every bridge's trust anchor.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
pub const BRIDGE_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates start this long before they are issued, so a bridge whose
/// clock is a little behind the issuer's still accepts them.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid bridge id {id:?}: {reason}")]
    InvalidBridgeId { id: String, reason: &'static str },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{what} is not trusted by {ca}: {reason}")]
    NotTrusted {
        what: String,
        ca: String,
        reason: String,
    },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn invalid(what: impl Into<String>, message: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        what: what.into(),
        message: message.into(),
    }
}

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

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(what, "contains no CERTIFICATE block"));
    }
    Ok(certs)
}

fn parse_key(what: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => invalid(what, "contains no private key"),
        e => invalid(what, format!("bad PEM: {e}")),
    })
}

fn key_to_pem(key: &PrivateKeyDer<'_>) -> String {
    let tag = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    pem::encode(&pem::Pem::new(tag, key.secret_der().to_vec()))
}

fn cert_to_pem(cert: &CertificateDer<'_>) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec()))
}

/// Creates `path` with `contents`, never replacing an existing file. Keys get
/// mode 0600 from the start rather than being chmod-ed after the write.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => TlsError::Exists {
                path: path.to_path_buf(),
            },
            _ => TlsError::Write {
                path: path.to_path_buf(),
                source,
            },
        })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| TlsError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes a certificate and its key as a pair: neither if either exists, and
/// no half-written pair left behind on failure.
fn write_pair(cert: (&Path, &str), key: (&Path, &str)) -> Result<(), TlsError> {
    for path in [cert.0, key.0] {
        if path.exists() {
            return Err(TlsError::Exists {
                path: path.to_path_buf(),
            });
        }
    }
    write_new(key.0, key.1, 0o600)?;
    if let Err(e) = write_new(cert.0, cert.1, 0o644) {
        let _ = std::fs::remove_file(key.0);
        return Err(e);
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The cluster CA with its private key: what `tern ca` and `tern dev` use to
/// issue bridge certificates. Bridges themselves only need the
/// [`CaCertificate`].
pub struct ClusterCa {
    cert: CertificateDer<'static>,
    key: KeyPair,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A new self-signed CA, valid for [`CA_VALIDITY`].
    pub fn generate() -> Result<Self, TlsError> {
        Self::generate_valid_for(CA_VALIDITY)
    }

    pub fn generate_valid_for(validity: Duration) -> Result<Self, TlsError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        // A unique name per CA: verifiers find a certificate's issuer by
        // name, and two CAs sharing one would make a foreign certificate look
        // like a forgery (bad signature) instead of plainly foreign.
        dn.push(
            DnType::CommonName,
            format!("Tern cluster CA {:016x}", rand::random::<u64>()),
        );
        params.distinguished_name = dn;
        // Path length 0: the CA signs bridges directly; an intermediate it
        // signed by mistake could not issue anything.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        // Even a leaked or misused CA key cannot mint a certificate that
        // verifiers accept for a name outside the bridge domain.
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DnsName(BRIDGE_DOMAIN.into())],
            excluded_subtrees: Vec::new(),
        });
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + validity).into();
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert: cert.der().clone(),
            key,
        })
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        Self::parse("CA certificate", cert_pem.as_bytes(), "CA key", key_pem)
    }

    /// Reads `ca.pem` and `ca-key.pem` from `dir` (what `tern ca init` wrote).
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert = read(&cert_path)?;
        let key = String::from_utf8(read(&key_path)?)
            .map_err(|_| invalid(key_path.display().to_string(), "is not UTF-8 PEM"))?;
        Self::parse(
            &cert_path.display().to_string(),
            &cert,
            &key_path.display().to_string(),
            &key,
        )
    }

    fn parse(
        cert_what: &str,
        cert_pem: &[u8],
        key_what: &str,
        key_pem: &str,
    ) -> Result<Self, TlsError> {
        let ca = CaCertificate::parse(cert_what, cert_pem)?;
        let key =
            KeyPair::from_pem(key_pem).map_err(|e| invalid(key_what, format!("bad key: {e}")))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&ca.der)
            .map_err(|e| invalid(cert_what, format!("cannot parse: {e}")))?;
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(invalid(
                key_what,
                format!("is not the key of the CA certificate {cert_what}"),
            ));
        }
        Ok(Self { cert: ca.der, key })
    }

    /// Writes `ca.pem` and `ca-key.pem` (mode 0600) into `dir`, creating it;
    /// refuses if either file exists. Returns (certificate, key) paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
        create_dir(dir)?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        write_pair((&cert_path, &self.cert_pem()), (&key_path, &self.key_pem()))?;
        Ok((cert_path, key_path))
    }

    /// The public half, which every bridge trusts.
    pub fn certificate(&self) -> CaCertificate {
        CaCertificate {
            der: self.cert.clone(),
        }
    }

    pub fn cert_pem(&self) -> String {
        cert_to_pem(&self.cert)
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate for bridge `id`, valid from now for [`BRIDGE_VALIDITY`].
    pub fn issue(&self, id: &BridgeId) -> Result<BridgeIdentity, TlsError> {
        self.issue_valid_for(id, BRIDGE_VALIDITY)
    }

    /// A certificate for bridge `id`, valid from now for `validity`.
    pub fn issue_valid_for(
        &self,
        id: &BridgeId,
        validity: Duration,
    ) -> Result<BridgeIdentity, TlsError> {
        let now = SystemTime::now();
        self.issue_valid(id, now - BACKDATE, now + validity)
    }

    /// A certificate for bridge `id` with an explicit validity window (tests
    /// use it to make expired certificates).
    pub fn issue_valid(
        &self,
        id: &BridgeId,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<BridgeIdentity, TlsError> {
        let issuer = Issuer::from_ca_cert_der(&self.cert, &self.key)?;
        let mut params = CertificateParams::new(vec![id.dns_name()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Every bridge is both a server (peers dial it) and a client (it
        // dials peers) on the same certificate.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(BridgeIdentity {
            id: id.clone(),
            cert_chain: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(key.serialize_der())
                .map_err(|e| invalid("generated key", e))?,
        })
    }
}

/// The cluster CA's certificate: the trust anchor of the relay mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaCertificate {
    der: CertificateDer<'static>,
}

impl CaCertificate {
    pub fn from_pem(pem: &str) -> Result<Self, TlsError> {
        Self::parse("CA certificate", pem.as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, TlsError> {
        Self::parse(&path.display().to_string(), &read(path)?)
    }

    pub(crate) fn parse(what: &str, pem: &[u8]) -> Result<Self, TlsError> {
        let mut certs = parse_certs(what, pem)?;
        if certs.len() != 1 {
            return Err(invalid(
                what,
                "must contain exactly one certificate (the CA)",
            ));
        }
        let der = certs.remove(0);
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| invalid(what, format!("cannot parse: {e}")))?;
        let is_ca = parsed
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(invalid(
                what,
                "is not a CA certificate (no basicConstraints CA:true); is it a bridge certificate?",
            ));
        }
        Ok(Self { der })
    }

    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    pub fn to_pem(&self) -> String {
        cert_to_pem(&self.der)
    }

    /// Checks that `identity` would be accepted by peers trusting this CA, in
    /// both roles (as a connecting client and as a server for its own name),
    /// now. The error says why not.
    pub fn verify_identity(&self, identity: &BridgeIdentity) -> Result<(), TlsError> {
        self.check_identity(identity)
            .map_err(|reason| TlsError::NotTrusted {
                what: format!("the certificate of bridge {}", identity.id),
                ca: "the cluster CA".into(),
                reason,
            })
    }

    pub(crate) fn check_identity(&self, identity: &BridgeIdentity) -> Result<(), String> {
        let verifiers = Verifiers::new(self, provider()).map_err(|e| e.to_string())?;
        let (ee, intermediates) = identity
            .cert_chain
            .split_first()
            .ok_or_else(|| "the certificate chain is empty".to_string())?;
        let now = UnixTime::now();
        verifiers
            .client
            .verify_client_cert(ee, intermediates, now)
            .map_err(|e| describe(&e))?;
        let name = ServerName::try_from(identity.id.dns_name()).map_err(|e| e.to_string())?;
        verifiers
            .server
            .verify_server_cert(ee, intermediates, &name, &[], now)
            .map_err(|e| describe(&e))?;
        Ok(())
    }
}

/// A bridge's certificate chain (leaf first) and private key.
pub struct BridgeIdentity {
    id: BridgeId,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
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

    fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let key = provider
            .key_provider
            .load_private_key(self.key.clone_key())?;
        let certified = CertifiedKey::new(self.cert_chain.clone(), key);
        certified.keys_match()?;
        Ok(certified)
    }
}

/// Why a relay handshake was refused: the `reason` label of
/// `tern_relay_handshakes_refused_total`. A small fixed set so dashboards
/// and alerts can rely on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The peer's certificate does not chain to the cluster CA.
    UnknownCa,
    /// A connecting peer presented no certificate.
    NoClientCert,
    /// No common application protocol (not `tern-relay/1`).
    Alpn,
    /// The peer's certificate is valid but names another bridge than the one
    /// we dialled.
    PeerIdMismatch,
    Expired,
    NotYetValid,
    /// Any other certificate defect: bad signature, wrong key usage, no
    /// bridge name, undecodable.
    BadCertificate,
    /// The peer aborted the handshake with a TLS alert: it refused us.
    PeerRefused,
    /// Another TLS or QUIC protocol failure during the handshake.
    Protocol,
    /// Too many handshakes in progress; the connection was not attempted.
    Overload,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 10] = [
        Self::UnknownCa,
        Self::NoClientCert,
        Self::Alpn,
        Self::PeerIdMismatch,
        Self::Expired,
        Self::NotYetValid,
        Self::BadCertificate,
        Self::PeerRefused,
        Self::Protocol,
        Self::Overload,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::UnknownCa => "unknown_ca",
            Self::NoClientCert => "no_client_cert",
            Self::Alpn => "alpn",
            Self::PeerIdMismatch => "peer_id_mismatch",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadCertificate => "bad_certificate",
            Self::PeerRefused => "peer_refused",
            Self::Protocol => "protocol",
            Self::Overload => "overload",
        }
    }

    /// The reason a local TLS error stands for, when it is one rustls raised
    /// itself (our verifiers record their own verdicts before this is needed).
    pub(crate) fn of_tls_error(e: &rustls::Error) -> Self {
        match e {
            rustls::Error::NoCertificatesPresented => Self::NoClientCert,
            rustls::Error::NoApplicationProtocol => Self::Alpn,
            rustls::Error::InvalidCertificate(c) => Self::of_certificate_error(c),
            _ => Self::Protocol,
        }
    }

    fn of_certificate_error(e: &CertificateError) -> Self {
        match e {
            // In chain verification a bad signature means the issuer's name
            // matched our CA but its key did not: a certificate from another
            // CA of the same name (or a forgery), i.e. not from our CA.
            CertificateError::UnknownIssuer | CertificateError::BadSignature => Self::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Self::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Self::NotYetValid
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Self::PeerIdMismatch
            }
            _ => Self::BadCertificate,
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A human account of a certificate verification failure.
fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "issued by another CA (unknown issuer)".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
            "issued by another CA with the same name (signature does not verify with the CA key)"
                .into()
        }
        e => e.to_string(),
    }
}

/// What a verifier concluded about one handshake. Each handshake gets its own
/// slot (configs are built per connection), so the refusal reason is the one
/// the verifier saw rather than a guess from the alert on the wire.
pub(crate) type Verdict = Arc<Mutex<Option<(RefusalReason, String)>>>;

fn record(verdict: Option<&Verdict>, reason: RefusalReason, detail: String) {
    if let Some(v) = verdict {
        *v.lock().unwrap_or_else(|p| p.into_inner()) = Some((reason, detail));
    }
}

struct Verifiers {
    client: Arc<dyn ClientCertVerifier>,
    server: Arc<WebPkiServerVerifier>,
}

impl Verifiers {
    fn new(ca: &CaCertificate, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.der.clone())
            .map_err(|e| invalid("CA certificate", e.to_string()))?;
        let roots = Arc::new(roots);
        let client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| invalid("CA certificate", e.to_string()))?;
        let server = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| invalid("CA certificate", e.to_string()))?;
        Ok(Self { client, server })
    }
}

/// Checks a connecting bridge: WebPKI chain to the cluster CA, then that the
/// certificate names exactly one bridge (the id the connection will carry).
#[derive(Debug)]
struct InboundVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    verdict: Option<Verdict>,
}

impl ClientCertVerifier for InboundVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[TlsDn] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| {
                record(
                    self.verdict.as_ref(),
                    RefusalReason::of_tls_error(e),
                    describe(e),
                );
            })?;
        if let Err(e) = peer_bridge_id(end_entity) {
            record(
                self.verdict.as_ref(),
                RefusalReason::BadCertificate,
                e.to_string(),
            );
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Checks the bridge we dialled: WebPKI chain to the cluster CA and the
/// server name, which is the expected bridge's DNS name.
#[derive(Debug)]
struct OutboundVerifier {
    inner: Arc<WebPkiServerVerifier>,
    verdict: Option<Verdict>,
}

impl ServerCertVerifier for OutboundVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .inspect_err(|e| {
                let reason = RefusalReason::of_tls_error(e);
                let detail = match (reason, peer_bridge_id(end_entity)) {
                    (RefusalReason::PeerIdMismatch, Ok(presented)) => format!(
                        "expected {}, the peer presented a certificate for bridge {presented}",
                        server_name.to_str()
                    ),
                    _ => describe(e),
                };
                record(self.verdict.as_ref(), reason, detail);
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

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

/// Everything needed to build per-connection rustls configs cheaply: the key
/// is parsed and the roots are loaded once.
pub(crate) struct TlsContext {
    provider: Arc<CryptoProvider>,
    certified: Arc<CertifiedKey>,
    verifiers: Verifiers,
}

impl TlsContext {
    pub(crate) fn new(identity: &BridgeIdentity, ca: &CaCertificate) -> Result<Self, TlsError> {
        let provider = provider();
        let certified = Arc::new(identity.certified_key(&provider)?);
        let verifiers = Verifiers::new(ca, provider.clone())?;
        Ok(Self {
            provider,
            certified,
            verifiers,
        })
    }

    pub(crate) fn server_config(
        &self,
        verdict: Option<Verdict>,
    ) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(InboundVerifier {
                inner: self.verifiers.client.clone(),
                verdict,
            }))
            .with_cert_resolver(Arc::new(FixedCert(self.certified.clone())));
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    pub(crate) fn client_config(
        &self,
        verdict: Option<Verdict>,
    ) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            // Not a weakening: OutboundVerifier is WebPKI against the cluster
            // CA plus the name check, wrapped only to record its verdict.
            .with_custom_certificate_verifier(Arc::new(OutboundVerifier {
                inner: self.verifiers.server.clone(),
                verdict,
            }))
            .with_client_cert_resolver(Arc::new(FixedCert(self.certified.clone())));
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
/// [`BridgeId::dns_name`]) is what the peer's certificate must name.
pub fn client_config(
    identity: &BridgeIdentity,
    ca: &CaCertificate,
) -> Result<rustls::ClientConfig, TlsError> {
    TlsContext::new(identity, ca)?.client_config(None)
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

    #[test]
    fn issued_certificate_names_its_bridge_and_verifies() {
        let ca = ClusterCa::generate().expect("ca");
        let id = BridgeId::new("eu-1").expect("id");
        let identity = ca.issue(&id).expect("issue");
        assert_eq!(peer_bridge_id(&identity.cert_chain()[0]).expect("id"), id);
        ca.certificate()
            .verify_identity(&identity)
            .expect("trusted");
    }

    #[test]
    fn pem_round_trips() {
        let ca = ClusterCa::generate().expect("ca");
        let again = ClusterCa::from_pem(&ca.cert_pem(), &ca.key_pem()).expect("parse ca");
        let identity = again
            .issue(&BridgeId::new("b").expect("id"))
            .expect("issue");
        let back = BridgeIdentity::from_pem(&identity.cert_pem(), &identity.key_pem())
            .expect("parse identity");
        assert_eq!(back.id().as_str(), "b");
        ca.certificate().verify_identity(&back).expect("trusted");
        let ca_cert = CaCertificate::from_pem(&ca.cert_pem()).expect("ca cert");
        assert_eq!(ca_cert, ca.certificate());
    }

    #[test]
    fn foreign_and_expired_certificates_are_named_as_such() {
        let ca = ClusterCa::generate().expect("ca");
        let other = ClusterCa::generate().expect("other ca");
        let id = BridgeId::new("b").expect("id");
        let foreign = other.issue(&id).expect("issue");
        let e = ca
            .certificate()
            .check_identity(&foreign)
            .expect_err("foreign");
        assert!(e.contains("another CA"), "{e}");
        let now = SystemTime::now();
        let day = Duration::from_secs(86400);
        let expired = ca
            .issue_valid(&id, now - 3 * day, now - day)
            .expect("issue");
        let e = ca
            .certificate()
            .check_identity(&expired)
            .expect_err("expired");
        assert!(e.contains("expired"), "{e}");
    }

    #[test]
    fn a_bridge_certificate_is_not_a_ca() {
        let ca = ClusterCa::generate().expect("ca");
        let identity = ca.issue(&BridgeId::new("b").expect("id")).expect("issue");
        let e = CaCertificate::from_pem(&identity.cert_pem())
            .expect_err("leaf as CA")
            .to_string();
        assert!(e.contains("not a CA certificate"), "{e}");
    }

    #[test]
    fn mismatched_key_is_refused() {
        let ca = ClusterCa::generate().expect("ca");
        let a = ca.issue(&BridgeId::new("a").expect("id")).expect("issue");
        let b = ca.issue(&BridgeId::new("b").expect("id")).expect("issue");
        let e = BridgeIdentity::from_pem(&a.cert_pem(), &b.key_pem())
            .expect_err("wrong key")
            .to_string();
        assert!(e.contains("is not the key of"), "{e}");
        let e = ClusterCa::from_pem(&ca.cert_pem(), &b.key_pem())
            .expect_err("wrong CA key")
            .to_string();
        assert!(e.contains("is not the key of"), "{e}");
    }
}
