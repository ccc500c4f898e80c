//! weft's test kit: an in-process server on ephemeral loopback ports with an in-memory store and
//! a test CA, and scripted clients that speak raw RFC 7395 WebSocket and RFC 6120 TCP, so tests
//! assert exactly what goes over the wire. Not part of release builds.
#![forbid(unsafe_code)]

pub mod clients;
pub mod federation;
mod pki;
pub mod web;

use std::net::SocketAddr;
use std::time::Duration;

pub use clients::{bosh::BoshClient, tcp::TcpClient, ws::WsClient, Client, Login};
pub use minidom::Element;
pub use pki::{TestCa, TestPki};
use weft_config::Config;
use weft_sasl::{Hash, ScramCredentials};
use weft_server::RunningServer;

/// How long a test waits for any single expected reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

pub const DOMAIN: &str = "localhost";
pub const PASSWORD: &str = "correct horse battery staple";

/// A weft server running inside the test process.
pub struct TestServer {
    pub running: RunningServer,
    pub pki: TestPki,
}

impl TestServer {
    /// Every listener on 127.0.0.1 with a free port; users alice, bob and carol exist.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// As `start`, with the configuration adjusted first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_inner(adjust, None).await
    }

    /// A server for `domain` whose certificate comes from `ca`, trusting `ca` for peers when
    /// `trust_ca` (so SASL EXTERNAL works between servers of the same CA; without it, dialback).
    pub async fn start_federating(
        domain: &str,
        ca: &TestCa,
        trust_ca: bool,
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        Self::federating(domain, ca, trust_ca, adjust, None).await
    }

    /// As `start_federating` (trusting `ca`), but its certificate (for TLS and as s2s client
    /// certificate) names `cert_names` instead of its domain: a service behind someone
    /// else's front, whose domain delegates to those names.
    pub async fn start_federating_with_cert(
        domain: &str,
        ca: &TestCa,
        cert_names: &[&str],
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        let names: Vec<String> = cert_names.iter().map(|n| n.to_string()).collect();
        Self::federating(domain, ca, true, adjust, Some(ca.issue(&names))).await
    }

    async fn federating(
        domain: &str,
        ca: &TestCa,
        trust_ca: bool,
        adjust: impl FnOnce(&mut Config),
        pki: Option<TestPki>,
    ) -> TestServer {
        // One directory per server: tests in one process run in parallel.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("weft-test-ca-{}-{n}-{domain}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("CA file");
        let domain = domain.to_string();
        Self::start_full(
            move |c| {
                c.server.domains = vec![domain];
                c.s2s.system_roots = false;
                c.s2s.ca_file = trust_ca.then_some(ca_file);
                adjust(c);
            },
            Some(ca),
            pki,
        )
        .await
    }

    /// As `start_federating`, but serving an expired certificate.
    pub async fn start_federating_expired(
        domain: &str,
        ca: &TestCa,
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        let d = domain.to_string();
        let mut pki = Some(ca.issue_expired(&[d]));
        Self::start_with_pki(domain, ca, adjust, pki.take()).await
    }

    async fn start_with_pki(
        domain: &str,
        ca: &TestCa,
        adjust: impl FnOnce(&mut Config),
        pki: Option<TestPki>,
    ) -> TestServer {
        let domain = domain.to_string();
        Self::start_full(
            move |c| {
                c.server.domains = vec![domain];
                adjust(c);
            },
            Some(ca),
            pki,
        )
        .await
    }

    async fn start_inner(adjust: impl FnOnce(&mut Config), ca: Option<&TestCa>) -> TestServer {
        Self::start_full(adjust, ca, None).await
    }

    async fn start_full(
        adjust: impl FnOnce(&mut Config),
        ca: Option<&TestCa>,
        pki: Option<TestPki>,
    ) -> TestServer {
        let mut config = Config::default();
        let any = |_: &SocketAddr| SocketAddr::from(([127, 0, 0, 1], 0));
        config.listen.http = config.listen.http.iter().map(any).collect();
        config.listen.https = config.listen.https.iter().map(any).collect();
        config.listen.c2s = config.listen.c2s.iter().map(any).collect();
        config.listen.c2s_direct_tls = config.listen.c2s_direct_tls.iter().map(any).collect();
        config.listen.s2s = config.listen.s2s.iter().map(any).collect();
        config.listen.s2s_direct_tls = config.listen.s2s_direct_tls.iter().map(any).collect();
        config.s2s.system_roots = false;
        // Short pings would make unrelated tests chatty; tests that need them set their own.
        config.c2s.scram_iterations = 4096;
        adjust(&mut config);
        let storage = weft_storage::Storage::in_memory()
            .await
            .expect("in-memory store");
        let pki = match (pki, ca) {
            (Some(pki), _) => pki,
            (None, Some(ca)) => ca.issue(&config.server.domains),
            (None, None) => TestPki::new(&config.server.domains),
        };
        let tls =
            weft_server::TlsSetup::from_parts(vec![pki.server_cert.clone()], pki.server_key())
                .expect("TLS setup");
        let running = weft_server::start(config, storage, tls)
            .await
            .expect("server starts");
        let server = TestServer { running, pki };
        for user in ["alice", "bob", "carol"] {
            server.add_user(user, PASSWORD).await;
        }
        server
    }

    pub async fn add_user(&self, user: &str, password: &str) {
        let i = self.running.state.config.c2s.scram_iterations;
        let creds = vec![
            ScramCredentials::generate(Hash::Sha1, password, i).expect("credentials"),
            ScramCredentials::generate(Hash::Sha256, password, i).expect("credentials"),
        ];
        self.running
            .state
            .storage
            .accounts
            .create_account(self.domain(), user, &creds)
            .await
            .expect("create account");
    }

    /// The (first) domain this server hosts.
    pub fn domain(&self) -> &str {
        self.running.state.config.default_domain()
    }

    /// Where a peer reaches this server over s2s: "tcp://…" (STARTTLS), "tls://…", "wss://…".
    pub fn s2s_route(&self, kind: &str) -> String {
        match kind {
            "tcp" => format!("tcp://{}", self.running.s2s[0]),
            "tls" => format!("tls://{}", self.running.s2s_direct_tls[0]),
            _ => self.wss_url(),
        }
    }

    pub fn ws_url(&self) -> String {
        format!(
            "ws://{}{}",
            self.running.http[0], self.running.state.config.websocket.path
        )
    }

    pub fn wss_url(&self) -> String {
        format!(
            "wss://{}{}",
            self.running.https[0], self.running.state.config.websocket.path
        )
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.running.http[0]
    }

    pub fn c2s_addr(&self) -> SocketAddr {
        self.running.c2s[0]
    }

    pub fn c2s_direct_tls_addr(&self) -> SocketAddr {
        self.running.c2s_direct_tls[0]
    }

    /// A BOSH client (XEP-0206) over http:// on the first HTTP listener; no request yet.
    pub fn bosh(&self) -> BoshClient {
        BoshClient::new(self.http_addr(), &self.running.state.config.bosh.path)
    }

    /// A WebSocket client over ws:// offering the `xmpp` subprotocol.
    pub async fn ws(&self) -> WsClient {
        WsClient::connect(&self.ws_url(), None)
            .await
            .expect("ws connect")
    }

    /// A WebSocket client over wss:// trusting the test CA.
    pub async fn wss(&self) -> WsClient {
        WsClient::connect(&self.wss_url(), Some(self.pki.client_config()))
            .await
            .expect("wss connect")
    }

    pub async fn tcp(&self) -> TcpClient {
        TcpClient::connect(self.c2s_addr())
            .await
            .expect("tcp connect")
    }

    pub async fn tcp_direct_tls(&self) -> TcpClient {
        TcpClient::connect_direct_tls(self.c2s_direct_tls_addr(), self.pki.client_config())
            .await
            .expect("direct TLS connect")
    }

    pub async fn stop(self) {
        self.running.shutdown(Duration::from_secs(5)).await;
    }

    /// Stops the server and starts it again on the same configuration, storage and
    /// certificate (listeners on new ports): what outlives a restart.
    pub async fn restart(self) -> TestServer {
        let config = self.running.state.config.clone();
        let storage = self.running.state.storage.clone();
        let pki = self.pki;
        self.running.shutdown(Duration::from_secs(5)).await;
        let tls =
            weft_server::TlsSetup::from_parts(vec![pki.server_cert.clone()], pki.server_key())
                .expect("TLS setup");
        let running = weft_server::start(config, storage, tls)
            .await
            .expect("server restarts");
        TestServer { running, pki }
    }
}
