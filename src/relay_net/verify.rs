//! The rustls certificate verifiers of relay connections: WebPKI against
//! the cluster CA (and, dialling out, the expected bridge's name), plus the
//! rule that a certificate names exactly one bridge; each records why it
//! refused in the handshake's [`Verdict`]. Checking only: building the
//! configs that use them is `tls`'s job.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName as TlsDn, RootCertStore,
    SignatureScheme,
};

use super::error::{TlsError, invalid};
use super::identity::peer_bridge_id;
use super::refusal::{RefusalReason, Verdict, describe, record};

/// Bridge ids refused whatever their certificates say, shared by every
/// verifier of an endpoint and replaced as a whole when the list changes.
pub(crate) type Revoked = Arc<RwLock<Arc<HashSet<String>>>>;

/// Refuses `end_entity` if it names a revoked bridge.
fn check_revoked(
    revoked: &Revoked,
    end_entity: &CertificateDer<'_>,
    verdict: Option<&Verdict>,
) -> Result<(), rustls::Error> {
    let Ok(id) = peer_bridge_id(end_entity) else {
        return Ok(());
    };
    let list = revoked.read().unwrap_or_else(|p| p.into_inner()).clone();
    if !list.contains(id.as_str()) {
        return Ok(());
    }
    record(
        verdict,
        RefusalReason::Revoked,
        format!("bridge {id} is revoked (relay.revoked_file)"),
    );
    Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
}

pub(super) struct Verifiers {
    pub(super) client: Arc<dyn ClientCertVerifier>,
    pub(super) server: Arc<WebPkiServerVerifier>,
}

impl Verifiers {
    pub(super) fn new(
        ca: &CertificateDer<'static>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone())
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
pub(super) struct InboundVerifier {
    pub(super) inner: Arc<dyn ClientCertVerifier>,
    pub(super) verdict: Option<Verdict>,
    pub(super) revoked: Revoked,
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
        check_revoked(&self.revoked, end_entity, self.verdict.as_ref())?;
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
pub(super) struct OutboundVerifier {
    pub(super) inner: Arc<WebPkiServerVerifier>,
    pub(super) verdict: Option<Verdict>,
    pub(super) revoked: Revoked,
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
        let verified = self
            .inner
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
            })?;
        check_revoked(&self.revoked, end_entity, self.verdict.as_ref())?;
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
