//! XEP-0468's HTTPS-only hosting: b.test sits behind Debian's nginx, which terminates TLS with
//! b's certificate and proxies the WebSocket upgrade to b's plain HTTP listener. a.test reaches
//! b over `wss://` through nginx; b reaches a directly over TCP. With nginx forwarding the client
//! certificate (`$ssl_client_escaped_cert`) b authenticates a with SASL EXTERNAL; without it,
//! with dialback.
//!
//! These tests need nginx (Debian package `nginx`; `WEFT_NGINX` may name another binary), so
//! they are `#[ignore]`d in the quick `cargo test --workspace`. `./test-all.sh` installs nginx
//! and runs them with `--include-ignored`; by hand, with nginx installed:
//! `cargo test -p weft-server --test reverse_proxy -- --include-ignored`. Once run, a missing
//! nginx or one that does not start fails them: they do not skip.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use weft_testkit::clients::ws::Io;
use weft_testkit::clients::{mechanisms, show};
use weft_testkit::federation::{auth_counts, exchange};
use weft_testkit::{Client, Element, TestCa, TestServer, WsClient};

const CLIENT_CERT_HEADER: &str = "X-SSL-Client-Cert";
const FRAMING_SERVER: &str = "urn:ietf:params:xml:ns:xmpp-framing-server";

/// DER to PEM, 64 columns.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

/// The nginx binary: `WEFT_NGINX`, else `nginx` on PATH, else Debian's /usr/sbin/nginx.
fn nginx_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WEFT_NGINX") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

/// A running nginx (single process, `master_process off`), killed by pid when dropped, also
/// when a test panics.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx on 127.0.0.1 terminating TLS for `domain` with a certificate from `ca`, asking for
    /// a client certificate without verifying it, and proxying WebSocket upgrades to
    /// `upstream` (a weft plain HTTP listener); with `forward_cert`, the client certificate
    /// goes along in `X-SSL-Client-Cert`.
    async fn start(ca: &TestCa, domain: &str, upstream: SocketAddr, forward_cert: bool) -> Nginx {
        let bin = nginx_binary();
        let version = Command::new(&bin).arg("-V").output();
        let build = match version {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stderr).into_owned(),
            Ok(out) => panic!(
                "{} -V failed ({}): {}",
                bin.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!(
                "nginx is required for the reverse-proxy federation tests and could not be run \
                 as {}: {e}. Install it (Debian: apt-get install -y nginx) or set WEFT_NGINX.",
                bin.display()
            ),
        };

        let pki = ca.issue(&[domain.to_string()]);
        let crt = pem("CERTIFICATE", &pki.server_cert);
        let key = pem("PRIVATE KEY", pki.server_key().secret_der());

        // A free port can be taken by someone else between our probe and nginx's bind: retry.
        let mut failure = String::new();
        for _ in 0..3 {
            match Nginx::try_start(&bin, &build, &crt, &key, upstream, forward_cert).await {
                Ok(nginx) => return nginx,
                Err(why) => failure = why,
            }
            if !failure.contains("Address already in use") {
                break;
            }
        }
        panic!("nginx ({}) did not start: {failure}", bin.display());
    }

    async fn try_start(
        bin: &Path,
        build: &str,
        crt: &str,
        key: &str,
        upstream: SocketAddr,
        forward_cert: bool,
    ) -> Result<Nginx, String> {
        let dir = tempfile::Builder::new()
            .prefix("weft-nginx-")
            .tempdir()
            .expect("temp dir for nginx");
        let prefix = dir.path();
        std::fs::write(prefix.join("server.crt"), crt).expect("write certificate");
        std::fs::write(prefix.join("server.key"), key).expect("write key");
        std::fs::create_dir_all(prefix.join("tmp")).expect("nginx temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config(prefix, build, port, upstream, forward_cert))
            .expect("write nginx.conf");
        let stderr = std::fs::File::create(prefix.join("stderr.log")).expect("stderr log");
        let child = Command::new(bin)
            .arg("-p")
            .arg(format!("{}/", prefix.display()))
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            .arg("daemon off;")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        // From here the guard owns the process: an error or a panic kills it.
        let mut nginx = Nginx { child, port, dir };
        nginx.wait_listening().await?;
        Ok(nginx)
    }

    /// Waits until nginx accepts connections on its port, or says why not with its logs.
    async fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("nginx exited ({status}): {}", self.logs()));
            }
            if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
                .await
                .is_ok()
            {
                // Still ours, not something else that took the port?
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(format!("nginx exited ({status}): {}", self.logs()));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx is not listening on 127.0.0.1:{} after 15 s: {}",
                    self.port,
                    self.logs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!(
            "\n--- nginx stderr ---\n{}\n--- nginx error.log ---\n{}",
            self.read("stderr.log"),
            self.read("error.log")
        )
    }

    /// Where a peer reaches `server` through this proxy.
    fn route(&self, server: &TestServer) -> String {
        format!(
            "wss://127.0.0.1:{}{}",
            self.port, server.running.state.config.websocket.path
        )
    }

    /// Waits for the access log to show a completed WebSocket upgrade (101) on `path`: nginx
    /// logs a proxied WebSocket when it closes.
    async fn expect_upgrade_logged(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.read("access.log");
            if log
                .lines()
                .any(|l| l.contains(&format!("GET {path} HTTP/1.1\" 101")))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx logged no WebSocket upgrade on {path}:\n{log}{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // By pid: the one process we started (master_process off).
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("nginx on port {}:{}", self.port, self.logs());
        }
    }
}

/// nginx.conf: one TLS server on 127.0.0.1:`port`, everything under `prefix` (logs, pid, temp
/// files), Debian's compiled-in paths untouched.
fn config(
    prefix: &Path,
    build: &str,
    port: u16,
    upstream: SocketAddr,
    forward_cert: bool,
) -> String {
    let p = prefix.display();
    // Temp paths of the modules this build has, so nothing touches /var/lib/nginx.
    let mut temp_paths =
        format!("client_body_temp_path {p}/tmp/body;\n    proxy_temp_path {p}/tmp/proxy;\n");
    for module in ["fastcgi", "uwsgi", "scgi"] {
        if !build.contains(&format!("--without-http_{module}_module")) {
            let _ = writeln!(temp_paths, "    {module}_temp_path {p}/tmp/{module};");
        }
    }
    let forward = if forward_cert {
        format!("proxy_set_header {CLIENT_CERT_HEADER} $ssl_client_escaped_cert;")
    } else {
        String::new()
    };
    format!(
        r#"# Generated by weft's reverse_proxy test.
master_process off;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{
    worker_connections 64;
}}
http {{
    access_log {p}/access.log;
    {temp_paths}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {p}/server.crt;
        ssl_certificate_key {p}/server.key;
        # Ask for a client certificate, verify nothing: weft judges it per domain.
        ssl_verify_client optional_no_ca;

        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Sec-WebSocket-Protocol $http_sec_websocket_protocol;
            proxy_read_timeout 1h;
            {forward}
        }}
    }}
}}
"#
    )
}

/// a.test, and b.test behind nginx (trusting 127.0.0.1 as its proxy); a reaches b through
/// nginx over wss, b reaches a directly over TCP. Both trust the test CA. a does not ask for
/// XEP-0288, so that b's answers take their own link (tests/s2s_bidi.rs covers bidi).
async fn behind_proxy(forward_cert: bool) -> (TestServer, TestServer, Nginx) {
    let ca = TestCa::new();
    let a = TestServer::start_federating("a.test", &ca, true, |c| c.s2s.bidi = false).await;
    let b = TestServer::start_federating("b.test", &ca, true, |c| {
        c.s2s.trusted_proxies = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        assert_eq!(c.s2s.client_cert_header, CLIENT_CERT_HEADER);
    })
    .await;
    let nginx = Nginx::start(&ca, "b.test", b.http_addr(), forward_cert).await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![nginx.route(&b)]);
    b.running
        .state
        .s2s
        .set_routes("a.test", vec![a.s2s_route("tcp")]);
    (a, b, nginx)
}

#[tokio::test]
#[ignore = "needs nginx: run by ./test-all.sh (installs it), or -- --include-ignored"]
async fn behind_nginx_forwarding_the_client_certificate_uses_sasl_external() {
    let (a, b, nginx) = behind_proxy(true).await;
    exchange(&a, &b).await;
    assert_eq!(
        auth_counts(&b),
        (1, 0),
        "b authenticates a's link through nginx with EXTERNAL (forwarded certificate)"
    );
    assert_eq!(
        auth_counts(&a),
        (1, 0),
        "b's direct TCP link to a: EXTERNAL"
    );
    let path = b.running.state.config.websocket.path.clone();
    a.stop().await;
    b.stop().await;
    nginx.expect_upgrade_logged(&path).await;
}

#[tokio::test]
#[ignore = "needs nginx: run by ./test-all.sh (installs it), or -- --include-ignored"]
async fn behind_nginx_without_the_client_certificate_uses_dialback() {
    let (a, b, nginx) = behind_proxy(false).await;
    exchange(&a, &b).await;
    assert_eq!(
        auth_counts(&b),
        (0, 1),
        "b authenticates a's link through nginx with dialback (no certificate forwarded)"
    );
    assert_eq!(
        auth_counts(&a),
        (1, 0),
        "b's direct TCP link to a: EXTERNAL"
    );
    let path = b.running.state.config.websocket.path.clone();
    a.stop().await;
    b.stop().await;
    nginx.expect_upgrade_logged(&path).await;
}

/// A peer without a client certificate connects through nginx and forges the certificate
/// header itself (a.test's certificate is public; its key is not needed to copy it), then opens
/// an s2s stream from a.test. Returns the stream features b offers.
async fn forged_header_features(nginx: &Nginx, b: &TestServer, ca: &TestCa) -> Element {
    let a_pki = ca.issue(&["a.test".to_string()]);
    let forged = urlencoding::encode(&pem("CERTIFICATE", &a_pki.server_cert)).into_owned();
    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, nginx.port))
        .await
        .expect("connect to nginx");
    let name = rustls::pki_types::ServerName::try_from("b.test").expect("server name");
    // Trusts the test CA, presents no certificate.
    let tls = tokio_rustls::TlsConnector::from(a_pki.client_config())
        .connect(name, tcp)
        .await
        .expect("TLS with nginx");
    let mut request = nginx.route(b).into_client_request().expect("request");
    let headers = request.headers_mut();
    headers.insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    headers.insert(
        CLIENT_CERT_HEADER,
        HeaderValue::from_str(&forged).expect("header value"),
    );
    let io: Box<dyn Io> = Box::new(tls);
    let (ws, response) = tokio_tungstenite::client_async(request, io)
        .await
        .expect("WebSocket upgrade through nginx");
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(protocol.as_deref(), Some("xmpp"));
    let mut peer = WsClient { ws, protocol };
    peer.send(&format!(
        "<open xmlns='{FRAMING_SERVER}' from='a.test' to='{}' version='1.0'/>",
        b.domain()
    ))
    .await;
    let open = peer.recv().await;
    assert!(open.is("open", FRAMING_SERVER), "{}", show(&open));
    let features = peer.recv().await;
    assert!(
        features.is("features", "http://etherx.jabber.org/streams"),
        "{}",
        show(&features)
    );
    if mechanisms(&features).iter().any(|m| m == "EXTERNAL") {
        // Show what it would take: EXTERNAL succeeds without a.test's key.
        peer.send(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>YS50ZXN0</auth>",
        )
        .await;
        let answer = peer.recv().await;
        panic!(
            "a forged {CLIENT_CERT_HEADER} header was honoured: {} then {}",
            show(&features),
            show(&answer)
        );
    }
    features
}

/// With `proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;` nginx replaces a
/// header the peer sent (and sends none when there is no certificate), so a forged one never
/// reaches weft. A proxy that does not set the header passes a forged one through, and weft,
/// trusting the proxy, believes it: the proxy must always set it.
#[tokio::test]
#[ignore = "needs nginx: run by ./test-all.sh (installs it), or -- --include-ignored"]
async fn nginx_replaces_a_forged_client_certificate_header() {
    let ca = TestCa::new();
    let b = TestServer::start_federating("b.test", &ca, true, |c| {
        c.s2s.trusted_proxies = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    })
    .await;
    let nginx = Nginx::start(&ca, "b.test", b.http_addr(), true).await;
    let features = forged_header_features(&nginx, &b, &ca).await;
    // Without a certificate, a.test can only prove itself with dialback.
    assert!(
        features.has_child("dialback", "urn:xmpp:features:dialback"),
        "{}",
        show(&features)
    );
    assert_eq!(auth_counts(&b), (0, 0));
    b.stop().await;
}
