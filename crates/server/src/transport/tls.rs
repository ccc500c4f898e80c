//! TLS for every listener: loading the operator's certificate or generating a self-signed one,
//! the rustls server configurations, and the channel-binding data of a connection (RFC 9266
//! tls-exporter, RFC 5929 tls-server-end-point).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use sha2::Digest;
use weft_sasl::ChannelBindings;
use weft_storage::private;

/// The certificate material and the rustls configurations built from it.
pub struct TlsSetup {
    /// HTTPS (ALPN http/1.1). Asks for (never requires) a client certificate, which XEP-0468
    /// peers use for SASL EXTERNAL; browsers without certificates are not affected.
    pub https: Arc<ServerConfig>,
    /// XEP-0368 Direct TLS for c2s (ALPN xmpp-client).
    pub direct_tls: Arc<ServerConfig>,
    /// STARTTLS on c2s.
    pub starttls: Arc<ServerConfig>,
    /// Incoming s2s, STARTTLS and Direct TLS (ALPN xmpp-server): asks for a client certificate.
    pub s2s_server: Arc<ServerConfig>,
    /// Outgoing s2s: presents our certificate as client certificate; the peer's certificate is
    /// judged after the handshake (see `s2s::certs`).
    pub s2s_client: Arc<rustls::ClientConfig>,
    /// The same without ALPN: STARTTLS (XEP-0368 defines `xmpp-server` for Direct TLS only)
    /// and wss:// links. COMPAT(xmpp-proxy): its TLS listener refuses ALPN `http/1.1` with a
    /// fatal alert, and any HTTPS server treats no ALPN as HTTP/1.1.
    pub s2s_client_plain: Arc<rustls::ClientConfig>,
    /// RFC 5929 tls-server-end-point: hash of our end-entity certificate.
    pub server_end_point: Vec<u8>,
}

impl TlsSetup {
    /// Uses the configured PEM files, or generates (once) a self-signed certificate for
    /// `domains` under `data_dir`.
    pub fn load_or_generate(
        cert: Option<&Path>,
        key: Option<&Path>,
        data_dir: &Path,
        domains: &[String],
    ) -> anyhow::Result<TlsSetup> {
        let (cert_path, key_path) = match (cert, key) {
            (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
            _ => {
                let c = data_dir.join("self-signed-cert.pem");
                let k = data_dir.join("self-signed-key.pem");
                // Also when the domains changed since it was made: a certificate for the old
                // ones would be refused for the new.
                if !k.exists() || !super::tls_check::covers(&c, domains) {
                    generate_self_signed(domains, &c, &k)?;
                    tracing::info!(cert = %c.display(), "generated a self-signed certificate");
                }
                (c, k)
            }
        };
        let certs = read_certs(&cert_path)?;
        let key = read_key(&key_path)?;
        TlsSetup::from_parts(certs, key)
    }

    pub fn from_parts(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> anyhow::Result<TlsSetup> {
        let server_end_point = server_end_point_hash(&certs[0]);
        let provider = crypto_provider();
        let build = |alpn: &[&[u8]], ask_client_cert: bool| -> anyhow::Result<Arc<ServerConfig>> {
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?;
            let builder = if ask_client_cert {
                builder.with_client_cert_verifier(crate::s2s::certs::RequestClientCert::new(
                    provider.clone(),
                ))
            } else {
                builder.with_no_client_auth()
            };
            let mut cfg = builder
                .with_single_cert(certs.clone(), key.clone_key())
                .context("certificate and key do not match")?;
            cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(cfg))
        };
        let client = |alpn: &[&[u8]]| -> anyhow::Result<Arc<rustls::ClientConfig>> {
            let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(crate::s2s::certs::AcceptAnyServerCert::new(
                    provider.clone(),
                ))
                .with_client_auth_cert(certs.clone(), key.clone_key())
                .context("certificate and key do not match")?;
            cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(cfg))
        };
        Ok(TlsSetup {
            https: build(&[b"http/1.1"], true)?,
            direct_tls: build(&[b"xmpp-client"], false)?,
            starttls: build(&[], false)?,
            s2s_server: build(&[b"xmpp-server"], true)?,
            s2s_client: client(&[b"xmpp-server"])?,
            s2s_client_plain: client(&[])?,
            server_end_point,
        })
    }
}

pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

pub(crate) fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("parsing the key in {}", path.display()))?
        .with_context(|| format!("no private key in {}", path.display()))
}

/// A self-signed certificate valid for the domains, with serverAuth and clientAuth usages (the
/// latter so it can also serve as a client certificate on s2s).
fn generate_self_signed(domains: &[String], cert: &Path, key: &Path) -> anyhow::Result<()> {
    let mut params = rcgen::CertificateParams::new(domains.to_vec())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, domains[0].clone());
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key_pair = rcgen::KeyPair::generate()?;
    let certificate = params.self_signed(&key_pair)?;
    // Both in the private data directory: the key is secret, and every file there is 0600.
    if let Some(dir) = cert.parent() {
        private::create_dir(dir)?;
    }
    private::write_file(cert, certificate.pem().as_bytes())?;
    private::write_file(key, key_pair.serialize_pem().as_bytes())?;
    Ok(())
}

/// RFC 5929 §4.1: the certificate hashed with its signature's hash function, SHA-256 when that is
/// MD5 or SHA-1.
fn server_end_point_hash(cert: &CertificateDer<'_>) -> Vec<u8> {
    use x509_parser::oid_registry as oids;
    let alg = x509_parser::parse_x509_certificate(cert.as_ref())
        .map(|(_, c)| c.signature_algorithm.algorithm.clone())
        .ok();
    let is = |oid: &x509_parser::der_parser::oid::Oid| alg.as_ref() == Some(oid);
    if is(&oids::OID_SIG_ECDSA_WITH_SHA384) || is(&oids::OID_PKCS1_SHA384WITHRSA) {
        sha2::Sha384::digest(cert.as_ref()).to_vec()
    } else if is(&oids::OID_SIG_ECDSA_WITH_SHA512) || is(&oids::OID_PKCS1_SHA512WITHRSA) {
        sha2::Sha512::digest(cert.as_ref()).to_vec()
    } else {
        sha2::Sha256::digest(cert.as_ref()).to_vec()
    }
}

/// The channel bindings of an established server-side TLS connection. tls-exporter is only
/// offered on TLS 1.3 (RFC 9266 §3 requires TLS 1.3 or the extended master secret).
pub fn channel_bindings(
    conn: &rustls::ServerConnection,
    server_end_point: &[u8],
) -> ChannelBindings {
    let mut exporter = None;
    if conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
        let mut out = vec![0u8; 32];
        if conn
            .export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None)
            .is_ok()
        {
            exporter = Some(out);
        }
    }
    ChannelBindings {
        tls_exporter: exporter,
        tls_server_end_point: Some(server_end_point.to_vec()),
    }
}
