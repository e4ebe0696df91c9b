//! Credentials in and out of PEM files: parsing certificates and keys,
//! encoding them, and writing a certificate with its key so that an
//! existing file is never replaced and a key is never readable by others.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{TlsError, invalid};

pub(super) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) fn parse_certs(
    what: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(what, "contains no CERTIFICATE block"));
    }
    Ok(certs)
}

pub(super) fn parse_key(what: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => invalid(what, "contains no private key"),
        e => invalid(what, format!("bad PEM: {e}")),
    })
}

pub(super) fn key_to_pem(key: &PrivateKeyDer<'_>) -> String {
    let tag = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    pem::encode(&pem::Pem::new(tag, key.secret_der().to_vec()))
}

pub(super) fn cert_to_pem(cert: &CertificateDer<'_>) -> String {
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
pub(super) fn write_pair(cert: (&Path, &str), key: (&Path, &str)) -> Result<(), TlsError> {
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

pub(super) fn create_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })
}
