//! The cluster CA: [`ClusterCa`] (certificate and key, what `tern ca` and
//! `tern dev` issue bridge certificates with) and [`CaCertificate`] (the
//! trust anchor every bridge loads), and checking that a bridge's
//! credentials would be accepted by its peers. It issues and checks
//! credentials; it must not build connection configs (`tls`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, PublicKeyData as _,
};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::error::{TlsError, invalid};
use super::identity::{BRIDGE_DOMAIN, BridgeId, BridgeIdentity, provider};
use super::pem_files::{cert_to_pem, create_dir, parse_certs, read, write_pair};
use super::refusal::describe;
use super::verify::Verifiers;

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
        let verifiers = Verifiers::new(&self.der, provider()).map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay_net::identity::peer_bridge_id;

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
