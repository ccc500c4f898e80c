//! Test support for XEP-0156 host-meta fetching: an rcgen test CA and a scripted HTTPS/1.1 server on 127.0.0.1:0 whose answers each test chooses (bodies, redirects, silence).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use weft_discovery::{DiscoveryConfig, DnsMode, HttpLimits, Overrides};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A throwaway certificate authority.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "weft-discovery test CA");
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    /// A server configuration with a certificate for `names`.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], key)
                .unwrap(),
        )
    }

    /// A client configuration trusting only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.cert.der().to_vec()))
            .unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

/// What the server answers to one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status with a body and `Content-Length`.
    Status(u16, Vec<u8>),
    /// A redirect to `Location`.
    Redirect(u16, String),
    /// 200 with a chunked body of this many bytes (no `Content-Length`).
    Chunked(usize),
    /// 200 announcing this `Content-Length`, sending nothing of the body.
    Announce(u64),
    /// Read the request, never answer.
    Hang,
}

impl Reply {
    pub fn ok(body: &str) -> Reply {
        Reply::Status(200, body.as_bytes().to_vec())
    }

    pub fn not_found() -> Reply {
        Reply::Status(404, b"not found".to_vec())
    }
}

type Routes = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// A scripted HTTPS server; stops (with all its connections) when dropped.
pub struct HttpsServer {
    pub addr: SocketAddr,
    /// `host path` of every request received, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    _tasks: JoinSet<()>,
}

impl HttpsServer {
    pub async fn start(
        tls: Arc<rustls::ServerConfig>,
        routes: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> HttpsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let routes: Routes = Arc::new(routes);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let log = requests.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, routes, log) = (acceptor.clone(), routes.clone(), log.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    serve(tls, routes, log).await;
                });
            }
        });
        HttpsServer {
            addr,
            requests,
            _tasks: tasks,
        }
    }

    /// `https://127.0.0.1:PORT`, for `Overrides::host_meta_base`.
    pub fn base(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    routes: Routes,
    log: Arc<Mutex<Vec<String>>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let host = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("host: ")
                .or_else(|| l.strip_prefix("Host: "))
        })
        .unwrap_or("")
        .to_owned();
    log.lock().unwrap().push(format!("{host} {path}"));
    let reply = routes(&path);
    let out: Vec<u8> = match reply {
        Reply::Status(code, body) => {
            let mut out = format!(
                "HTTP/1.1 {code} X\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(&body);
            out
        }
        Reply::Redirect(code, location) => format!(
            "HTTP/1.1 {code} X\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
        Reply::Announce(len) => {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
                .into_bytes()
        }
        Reply::Chunked(total) => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                .await;
            let chunk = vec![b' '; 4096];
            let mut sent = 0;
            while sent < total {
                let n = chunk.len().min(total - sent);
                let mut piece = format!("{n:x}\r\n").into_bytes();
                piece.extend_from_slice(&chunk[..n]);
                piece.extend_from_slice(b"\r\n");
                if s.write_all(&piece).await.is_err() {
                    return;
                }
                sent += n;
            }
            b"0\r\n\r\n".to_vec()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
    };
    let _ = s.write_all(&out).await;
    let _ = s.shutdown().await;
}

/// A TCP listener that accepts and then says nothing (no TLS handshake); counts
/// connections. Stops when dropped.
pub struct SilentServer {
    pub addr: SocketAddr,
    pub connections: Arc<Mutex<usize>>,
    _tasks: JoinSet<()>,
}

impl SilentServer {
    pub async fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(0));
        let count = connections.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                *count.lock().unwrap() += 1;
                held.push(tcp);
            }
        });
        SilentServer {
            addr,
            connections,
            _tasks: tasks,
        }
    }
}

/// Test limits: short enough for the suite, long enough for a loaded 2-core machine.
pub fn limits() -> HttpLimits {
    HttpLimits {
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        max_body_bytes: 64 * 1024,
        max_redirects: 3,
    }
}

/// A configuration that never leaves the machine: static DNS only.
pub fn config(ca: &TestCa, overrides: Overrides) -> DiscoveryConfig {
    let mut config = DiscoveryConfig::new(ca.client_config());
    config.dns = DnsMode::StaticOnly;
    config.http = limits();
    config.overrides = overrides;
    config
}

pub const S2S_JRD: &str = r#"{"links":[{"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"wss://b.test/xmpp-s2s"}]}"#;

pub const S2S_XRD: &str = "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n  <Link rel='urn:xmpp:alt-connections:s2s-websocket' href='wss://b.test/xmpp-s2s-xml'/>\n</XRD>\n";
