//! Why a relay handshake was refused ([`RefusalReason`], the label of
//! `tern_relay_handshakes_refused_total`), how a rustls error maps to one,
//! and the per-handshake `Verdict` slot our verifiers record their
//! conclusion in. Naming refusals only: deciding them is the verifiers' job.

use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::CertificateError;

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
    /// The peer's certificate is valid but its bridge id is on the revoked
    /// list (`relay.revoked_file`).
    Revoked,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 11] = [
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
        Self::Revoked,
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
            Self::Revoked => "revoked",
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
            CertificateError::Revoked => Self::Revoked,
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
pub(super) fn describe(e: &rustls::Error) -> String {
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

pub(super) fn record(verdict: Option<&Verdict>, reason: RefusalReason, detail: String) {
    if let Some(v) = verdict {
        *v.lock().unwrap_or_else(|p| p.into_inner()) = Some((reason, detail));
    }
}
