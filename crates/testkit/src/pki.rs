//! A throwaway CA and server certificate per test server, generated with rcgen.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test certificate authority; several servers share one to federate.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "weft test CA");
        let cert = params.self_signed(&key).expect("CA cert");
        TestCa { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `domains` (DNS names only, serverAuth and clientAuth).
    pub fn issue(&self, domains: &[String]) -> TestPki {
        self.issue_inner(domains, false)
    }

    /// Like `issue`, but expired yesterday.
    pub fn issue_expired(&self, domains: &[String]) -> TestPki {
        self.issue_inner(domains, true)
    }

    fn issue_inner(&self, domains: &[String], expired: bool) -> TestPki {
        let (ca, ca_key) = (&self.cert, &self.key);
        let key = rcgen::KeyPair::generate().expect("server key");
        let mut params = rcgen::CertificateParams::new(domains.to_vec()).expect("server params");
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, ca, ca_key).expect("server cert");
        TestPki {
            ca_cert: ca.der().clone(),
            server_cert: cert.der().clone(),
            server_key_der: key.serialize_der(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

pub struct TestPki {
    pub ca_cert: CertificateDer<'static>,
    pub server_cert: CertificateDer<'static>,
    server_key_der: Vec<u8>,
}

impl TestPki {
    /// A fresh CA and a certificate for `domains`.
    pub fn new(domains: &[String]) -> TestPki {
        TestCa::new().issue(domains)
    }

    pub fn server_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()))
    }

    /// A client configuration that trusts the test CA and presents this certificate (an s2s
    /// peer authenticating with SASL EXTERNAL).
    pub fn client_config_with_identity(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_cert.clone()).expect("CA accepted");
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![self.server_cert.clone()], self.server_key())
            .expect("client identity"),
        )
    }

    /// A rustls client configuration trusting only the test CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_cert.clone()).expect("CA accepted");
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }
}
