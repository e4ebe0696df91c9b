//! The one error type of the relay's credentials and TLS setup, whose
//! messages name the file, config key or certificate at fault.

use std::path::PathBuf;

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

pub(super) fn invalid(what: impl Into<String>, message: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        what: what.into(),
        message: message.into(),
    }
}
