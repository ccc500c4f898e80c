//! Peer certificates for federation (RFC 6120 §13.7.2, RFC 6125, XEP-0178): asking peers for a
//! client certificate without requiring one, and deciding later whether the certificate a peer
//! presented is valid for the domain it claims — which is what SASL EXTERNAL rests on.

use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// Verifies peers' certificates against our trust roots, for a domain chosen after the
/// handshake (a peer's claimed 'from', or the domain we dialled).
#[derive(Clone, Debug)]
pub struct PeerCertVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// The same roots, for verified HTTPS (host-meta discovery).
    pub roots: Arc<RootCertStore>,
}

impl PeerCertVerifier {
    /// Roots: the system store when `system_roots`, plus every certificate in `ca_pem`.
    pub fn new(
        provider: Arc<CryptoProvider>,
        system_roots: bool,
        ca_pem: Option<&[u8]>,
    ) -> anyhow::Result<Self> {
        let mut roots = RootCertStore::empty();
        if system_roots {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // Some system stores carry certificates webpki cannot use; skip them.
                let _ = roots.add(cert);
            }
        }
        if let Some(pem) = ca_pem {
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                roots
                    .add(cert.context("reading s2s.ca_file")?)
                    .context("adding s2s.ca_file")?;
            }
        }
        if roots.is_empty() {
            // webpki refuses an empty store; one certificate nobody chains to trusts nothing.
            roots = dummy_roots();
        }
        let roots = Arc::new(roots);
        Ok(PeerCertVerifier {
            webpki: WebPkiServerVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .context("building the certificate verifier")?,
            roots,
        })
    }

    /// Is `chain` (end entity first) a valid certificate for `domain` now? The peer's client
    /// certificate is checked as a server certificate for its domain, as XEP-0178 does.
    pub fn valid_for(&self, chain: &[CertificateDer<'_>], domain: &str) -> bool {
        self.check(chain, domain).is_ok()
    }

    /// [`PeerCertVerifier::valid_for`] with the reason when not, for the logs.
    pub fn check(&self, chain: &[CertificateDer<'_>], domain: &str) -> Result<(), String> {
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return Err("no certificate was presented".into());
        };
        let name = ServerName::try_from(domain.to_string())
            .map_err(|_| format!("{domain:?} is not a DNS name"))?;
        self.webpki
            .verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// An empty store is refused by webpki; a store holding one certificate nobody can chain to is
/// the same as trusting nothing.
fn dummy_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    if let Ok(cert) = rcgen::generate_simple_self_signed(vec!["untrusted.invalid".to_string()]) {
        let _ = roots.add(cert.cert.der().clone());
    }
    roots
}

/// Asks for a client certificate but accepts the handshake with or without one, and with any
/// issuer: whether the certificate authenticates the peer is decided per domain afterwards
/// (SASL EXTERNAL), and peers without a usable one may still use dialback. The peer must still
/// prove it holds the key (the handshake signature is verified).
#[derive(Debug)]
pub struct RequestClientCert {
    provider: Arc<CryptoProvider>,
}

impl RequestClientCert {
    pub fn new(provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(RequestClientCert { provider })
    }
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// For outgoing links: completes the handshake whatever the peer's certificate, keeping the
/// decision for later (a valid one allows EXTERNAL, an invalid one leaves dialback, or refusal
/// when `require_valid_certificates`).
#[derive(Debug)]
pub struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl AcceptAnyServerCert {
    pub fn new(provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(AcceptAnyServerCert { provider })
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Parses a PEM certificate chain forwarded by a trusted proxy (URL-encoded, as nginx's
/// `$ssl_client_escaped_cert` sends it).
pub fn chain_from_header(value: &str) -> Option<Vec<CertificateDer<'static>>> {
    let pem = urlencoding::decode(value).ok()?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .ok()?;
    (!certs.is_empty()).then_some(certs)
}
