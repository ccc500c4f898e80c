//! XEP-0363 HTTP File Upload on the wire: the service found through disco, slots asked for
//! over XMPP, files PUT and fetched over HTTPS on the test server's own listener (hyper's
//! client, the test CA), what is refused on either side, quota and expiry.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use minidom::Element;
use weft_testkit::clients::{error_condition, iq, login, show};
use weft_testkit::{Client, Login, TestCa, TestServer, WsClient, PASSWORD};

const UPLOAD: &str = "urn:xmpp:http:upload:0";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const DATA: &str = "jabber:x:data";

/// A server whose data directory (and so its upload store) is a fresh temporary directory,
/// with `[modules.upload]` set to `settings`.
async fn start(settings: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_path_buf();
    let table: toml::Table = toml::from_str(settings).expect("settings");
    let server = TestServer::start_with(move |c| {
        c.server.data_dir = data_dir;
        c.modules.insert("upload".into(), toml::Value::Table(table));
    })
    .await;
    (server, dir)
}

async fn client(server: &TestServer, user: &str) -> WsClient {
    let mut c = server.ws().await;
    login(&mut c, user, PASSWORD, Login::ScramSha256, Some("r")).await;
    c
}

/// The answer to a slot request.
async fn request_slot<C: Client>(
    c: &mut C,
    filename: &str,
    size: u64,
    ct: Option<&str>,
) -> Element {
    let ct = ct.map_or(String::new(), |ct| format!(" content-type='{ct}'"));
    iq(
        c,
        "slot",
        &format!(
            "<iq xmlns='jabber:client' type='get' id='slot' to='upload.localhost'>\
             <request xmlns='{UPLOAD}' filename='{filename}' size='{size}'{ct}/></iq>"
        ),
    )
    .await
}

/// (PUT URL, GET URL) of a granted slot.
async fn slot<C: Client>(
    c: &mut C,
    filename: &str,
    size: u64,
    ct: Option<&str>,
) -> (String, String) {
    let r = request_slot(c, filename, size, ct).await;
    assert_eq!(r.attr("type"), Some("result"), "{}", show(&r));
    assert_eq!(r.attr("from"), Some("upload.localhost"));
    let slot = r.get_child("slot", UPLOAD).expect("slot");
    let put = slot.get_child("put", UPLOAD).and_then(|p| p.attr("url"));
    let get = slot.get_child("get", UPLOAD).and_then(|g| g.attr("url"));
    (put.expect("put").to_string(), get.expect("get").to_string())
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One HTTPS request to the server's listener, for `url` (https://localhost:PORT/…).
async fn http(
    server: &TestServer,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let origin = format!("https://localhost:{}", server.running.https[0].port());
    let target = url
        .strip_prefix(&origin)
        .unwrap_or_else(|| panic!("{url} is not on {origin}"));
    let tcp = tokio::net::TcpStream::connect(server.running.https[0])
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(server.pki.client_config())
        .connect(name, tcp)
        .await
        .expect("TLS");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut request = http::Request::builder().method(method).uri(target).header(
        "host",
        format!("localhost:{}", server.running.https[0].port()),
    );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("answer in time")
        .expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

async fn put(server: &TestServer, url: &str, ct: &str, body: &[u8]) -> Answer {
    http(server, "PUT", url, &[("content-type", ct)], body).await
}

fn error_text(el: &Element) -> String {
    el.get_child("error", "jabber:client")
        .and_then(|e| e.get_child("text", "urn:ietf:params:xml:ns:xmpp-stanzas"))
        .map(|t| t.text())
        .unwrap_or_default()
}

#[tokio::test]
async fn disco_finds_the_service_and_its_max_file_size() {
    let (server, _dir) = start("max_file_size = '5 MiB'").await;
    let mut c = client(&server, "alice").await;
    let items = iq(
        &mut c,
        "items",
        &format!("<iq xmlns='jabber:client' type='get' id='items' to='localhost'><query xmlns='{DISCO_ITEMS}'/></iq>"),
    )
    .await;
    let jids: Vec<&str> = items
        .get_child("query", DISCO_ITEMS)
        .expect("items")
        .children()
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert_eq!(
        jids,
        ["upload.localhost", "conference.localhost"],
        "{}",
        show(&items)
    );

    let info = iq(
        &mut c,
        "info",
        &format!("<iq xmlns='jabber:client' type='get' id='info' to='upload.localhost'><query xmlns='{DISCO_INFO}'/></iq>"),
    )
    .await;
    assert_eq!(info.attr("type"), Some("result"), "{}", show(&info));
    assert_eq!(info.attr("from"), Some("upload.localhost"));
    let query = info.get_child("query", DISCO_INFO).expect("query");
    let identity = query.get_child("identity", DISCO_INFO).expect("identity");
    assert_eq!(
        (identity.attr("category"), identity.attr("type")),
        (Some("store"), Some("file"))
    );
    assert!(
        query
            .children()
            .any(|f| f.name() == "feature" && f.attr("var") == Some(UPLOAD)),
        "{}",
        show(&info)
    );
    let form = query.get_child("x", DATA).expect("XEP-0128 form");
    let value = |var: &str| {
        form.children()
            .find(|f| f.attr("var") == Some(var))
            .and_then(|f| f.get_child("value", DATA))
            .map(|v| v.text())
    };
    assert_eq!(value("FORM_TYPE").as_deref(), Some(UPLOAD));
    assert_eq!(value("max-file-size").as_deref(), Some("5242880"));

    // The server's own JID does not take slot requests; the service takes nothing else.
    let r = iq(
        &mut c,
        "s1",
        &format!("<iq xmlns='jabber:client' type='get' id='s1' to='localhost'><request xmlns='{UPLOAD}' filename='a' size='1'/></iq>"),
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
    let r = iq(
        &mut c,
        "s2",
        "<iq xmlns='jabber:client' type='get' id='s2' to='upload.localhost'><query xmlns='jabber:iq:version'/></iq>",
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
    server.stop().await;
}

#[tokio::test]
async fn a_file_is_put_then_served_with_its_headers() {
    let (server, _dir) = start("").await;
    let mut c = client(&server, "alice").await;
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (put_url, get_url) = slot(
        &mut c,
        "très cool.jpg",
        bytes.len() as u64,
        Some("image/jpeg"),
    )
    .await;
    let port = server.running.https[0].port();
    assert!(
        get_url.starts_with(&format!("https://localhost:{port}/upload/"))
            && get_url.ends_with("/tr%C3%A8s%20cool.jpg"),
        "{get_url}"
    );
    assert!(
        put_url.starts_with(&format!("{get_url}?token=")),
        "{put_url}"
    );

    // Not there before the PUT.
    assert_eq!(http(&server, "GET", &get_url, &[], b"").await.status, 404);

    let stored = put(&server, &put_url, "image/jpeg", &bytes).await;
    assert_eq!(
        stored.status,
        201,
        "{}",
        String::from_utf8_lossy(&stored.body)
    );
    assert_eq!(stored.header("access-control-allow-origin"), Some("*"));

    let got = http(&server, "GET", &get_url, &[], b"").await;
    assert_eq!(got.status, 200);
    assert!(got.body == bytes, "the same bytes back");
    assert_eq!(got.header("content-type"), Some("image/jpeg"));
    assert_eq!(got.header("content-length"), Some("100000"));
    assert_eq!(
        got.header("content-disposition"),
        Some("inline; filename=\"tr_s cool.jpg\"; filename*=UTF-8''tr%C3%A8s%20cool.jpg")
    );
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    assert!(got
        .header("content-security-policy")
        .is_some_and(|csp| csp.contains("default-src 'none'")));
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));

    let head = http(&server, "HEAD", &get_url, &[], b"").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("100000"));
    assert_eq!(head.header("content-type"), Some("image/jpeg"));
    assert!(head.body.is_empty());

    // The slot is used: a second PUT is refused and the file stays as it was.
    let again = put(&server, &put_url, "image/jpeg", &bytes).await;
    assert_eq!(again.status, 409);
    // The URL names the file: the same id with another name is nothing.
    let other_name = get_url.replace("tr%C3%A8s%20cool.jpg", "other.jpg");
    assert_eq!(
        http(&server, "GET", &other_name, &[], b"").await.status,
        404
    );

    // Anything else than plain media is an attachment.
    let (put_url, get_url) = slot(&mut c, "page.html", 5, Some("text/html")).await;
    assert_eq!(
        put(&server, &put_url, "text/html", b"<b>hi").await.status,
        201
    );
    let got = http(&server, "GET", &get_url, &[], b"").await;
    assert!(got
        .header("content-disposition")
        .is_some_and(|d| d.starts_with("attachment;")));
    server.stop().await;
}

#[tokio::test]
async fn cors_preflight_allows_uploads_from_any_origin() {
    let (server, _dir) = start("").await;
    let mut c = client(&server, "alice").await;
    let (put_url, _) = slot(&mut c, "a.txt", 3, None).await;
    let pre = http(
        &server,
        "OPTIONS",
        &put_url,
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "content-type"),
        ],
        b"",
    )
    .await;
    assert!(pre.status == 200 || pre.status == 204, "{}", pre.status);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    let methods = pre.header("access-control-allow-methods").unwrap_or("");
    for m in ["GET", "HEAD", "PUT", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = pre
        .header("access-control-allow-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    server.stop().await;
}

#[tokio::test]
async fn a_file_over_the_limit_gets_file_too_large_with_the_max() {
    let (server, _dir) = start("max_file_size = '1 KiB'").await;
    let mut c = client(&server, "alice").await;
    let r = request_slot(&mut c, "big.bin", 1025, None).await;
    assert_eq!(r.attr("type"), Some("error"), "{}", show(&r));
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
    let error = r.get_child("error", "jabber:client").unwrap();
    assert_eq!(error.attr("type"), Some("modify"));
    let max = error
        .get_child("file-too-large", UPLOAD)
        .and_then(|f| f.get_child("max-file-size", UPLOAD))
        .map(|m| m.text());
    assert_eq!(max.as_deref(), Some("1024"), "{}", show(&r));
    // At the limit it is fine.
    slot(&mut c, "big.bin", 1024, None).await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_slot_requests_are_bad_requests() {
    let (server, _dir) = start("").await;
    let mut c = client(&server, "alice").await;
    for (id, attrs) in [
        ("b1", "size='10'"),
        ("b2", "filename='a.txt'"),
        ("b3", "filename='a.txt' size='ten'"),
        ("b4", "filename='' size='10'"),
        ("b5", "filename='../../etc/passwd' size='10'"),
        ("b6", "filename='a.txt' size='10' content-type='nonsense'"),
    ] {
        let r = iq(
            &mut c,
            id,
            &format!("<iq xmlns='jabber:client' type='get' id='{id}' to='upload.localhost'><request xmlns='{UPLOAD}' {attrs}/></iq>"),
        )
        .await;
        assert_eq!(
            error_condition(&r).as_deref(),
            Some("bad-request"),
            "{attrs}: {}",
            show(&r)
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn quota_exceeded_is_a_resource_constraint() {
    let (server, _dir) = start("max_file_size = '1 KiB'\nquota_per_account = '2 KiB'").await;
    let mut alice = client(&server, "alice").await;
    // Three slots are granted while nothing is stored; the third upload is over the quota.
    let a = slot(&mut alice, "a.bin", 1000, None).await;
    let b = slot(&mut alice, "b.bin", 1000, None).await;
    let c = slot(&mut alice, "c.bin", 1000, None).await;
    for (put_url, _) in [&a, &b] {
        assert_eq!(
            put(&server, put_url, "application/octet-stream", &[7; 1000])
                .await
                .status,
            201
        );
    }
    let over = put(&server, &c.0, "application/octet-stream", &[7; 1000]).await;
    assert_eq!(over.status, 413, "{}", String::from_utf8_lossy(&over.body));
    assert_eq!(http(&server, "GET", &c.1, &[], b"").await.status, 404);

    let r = request_slot(&mut alice, "d.bin", 100, None).await;
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("resource-constraint"),
        "{}",
        show(&r)
    );
    assert_eq!(
        r.get_child("error", "jabber:client")
            .and_then(|e| e.attr("type")),
        Some("wait")
    );
    assert!(
        error_text(&r).contains("2000 of 2048 bytes"),
        "{}",
        show(&r)
    );
    // What fits still fits, and others have quotas of their own.
    slot(&mut alice, "e.bin", 48, None).await;
    let mut bob = client(&server, "bob").await;
    slot(&mut bob, "f.bin", 1000, None).await;
    server.stop().await;
}

#[tokio::test]
async fn puts_that_do_not_match_their_slot_are_refused() {
    let (server, _dir) = start("").await;
    let mut c = client(&server, "alice").await;
    let (put_url, get_url) = slot(&mut c, "a.txt", 10, Some("text/plain")).await;
    let text = "text/plain";
    // Too short, too long, another type.
    assert_eq!(put(&server, &put_url, text, b"short").await.status, 400);
    assert_eq!(
        put(&server, &put_url, text, b"much too long").await.status,
        413
    );
    assert_eq!(
        put(&server, &put_url, "image/png", b"0123456789")
            .await
            .status,
        415
    );
    // No token, a forged one, the token on another file name, another id.
    let bare = put_url.split_once('?').unwrap().0;
    assert_eq!(put(&server, bare, text, b"0123456789").await.status, 403);
    let mut forged = put_url.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(put(&server, &forged, text, b"0123456789").await.status, 403);
    let renamed = put_url.replace("/a.txt?", "/b.txt?");
    assert_eq!(
        put(&server, &renamed, text, b"0123456789").await.status,
        403
    );
    let id = get_url.rsplit('/').nth(1).unwrap();
    let other_id = put_url.replace(id, "0123456789abcdef0123456789abcdef");
    assert_eq!(
        put(&server, &other_id, text, b"0123456789").await.status,
        403
    );
    // Nothing was stored by any of these; the right PUT still works once.
    assert_eq!(http(&server, "GET", &get_url, &[], b"").await.status, 404);
    assert_eq!(
        put(&server, &put_url, text, b"0123456789").await.status,
        201
    );
    assert_eq!(
        put(&server, &put_url, text, b"0123456789").await.status,
        409
    );
    assert_eq!(
        http(&server, "GET", &get_url, &[], b"").await.body,
        b"0123456789"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_expired_slot_is_refused() {
    let (server, _dir) = start("slot_lifetime = '1s'").await;
    let mut c = client(&server, "alice").await;
    let (put_url, _) = slot(&mut c, "late.txt", 4, None).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let late = put(&server, &put_url, "text/plain", b"late").await;
    assert_eq!(late.status, 403);
    assert!(String::from_utf8_lossy(&late.body).contains("expired"));
    server.stop().await;
}

#[tokio::test]
async fn expired_files_are_deleted_and_their_quota_freed() {
    let (server, dir) =
        start("max_file_size = '1 KiB'\nquota_per_account = '2 KiB'\nexpire_after = '1s'").await;
    let mut c = client(&server, "alice").await;
    let mut gets = Vec::new();
    for name in ["a.bin", "b.bin"] {
        let (put_url, get_url) = slot(&mut c, name, 1024, None).await;
        assert_eq!(
            put(&server, &put_url, "application/octet-stream", &[1; 1024])
                .await
                .status,
            201
        );
        gets.push(get_url);
    }
    let r = request_slot(&mut c, "c.bin", 1, None).await;
    assert_eq!(error_condition(&r).as_deref(), Some("resource-constraint"));
    let stored = |dir: &std::path::Path| {
        walk(&dir.join("upload"))
            .into_iter()
            .filter(|p| p.ends_with(".data"))
            .count()
    };
    assert_eq!(stored(dir.path()), 2);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Past expire_after a file is not served, even before the sweep.
    assert_eq!(http(&server, "GET", &gets[0], &[], b"").await.status, 404);
    let upload = server
        .running
        .state
        .modules
        .find::<weft_server::modules::upload::Upload>()
        .expect("upload module");
    assert_eq!(upload.expire_now().await, 2);
    assert_eq!(stored(dir.path()), 0);
    assert_eq!(http(&server, "GET", &gets[1], &[], b"").await.status, 404);
    // The quota is free again.
    slot(&mut c, "c.bin", 1024, None).await;
    server.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn files_and_usage_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = "max_file_size = '1 KiB'\nquota_per_account = '1 KiB'\nsecret = '0123456789abcdef0123456789abcdef'";
    let boot = |data_dir: std::path::PathBuf| async move {
        let table: toml::Table = toml::from_str(settings).unwrap();
        TestServer::start_with(move |c| {
            c.server.data_dir = data_dir;
            c.modules.insert("upload".into(), toml::Value::Table(table));
        })
        .await
    };
    let server = boot(dir.path().to_path_buf()).await;
    let mut c = client(&server, "alice").await;
    let (put_url, get_url) = slot(&mut c, "keep.txt", 1000, None).await;
    assert_eq!(
        put(&server, &put_url, "text/plain", &[b'k'; 1000])
            .await
            .status,
        201
    );
    server.stop().await;

    let server = boot(dir.path().to_path_buf()).await;
    let port = server.running.https[0].port();
    let get_url = format!(
        "https://localhost:{port}/{}",
        get_url.splitn(4, '/').nth(3).unwrap()
    );
    let got = http(&server, "GET", &get_url, &[], b"").await;
    assert_eq!((got.status, got.body.len()), (200, 1000));
    let mut c = client(&server, "alice").await;
    let r = request_slot(&mut c, "more.txt", 100, None).await;
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("resource-constraint"),
        "{}",
        show(&r)
    );
    server.stop().await;
}

#[tokio::test]
async fn accounts_of_other_servers_get_no_slot() {
    let ca = TestCa::new();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data_dir = |dir: &tempfile::TempDir| {
        let path = dir.path().to_path_buf();
        move |c: &mut weft_config::Config| c.server.data_dir = path
    };
    let a = TestServer::start_federating("a.test", &ca, true, data_dir(&dir_a)).await;
    let b = TestServer::start_federating("b.test", &ca, true, data_dir(&dir_b)).await;
    for domain in ["a.test", "upload.a.test"] {
        b.running
            .state
            .s2s
            .set_routes(domain, vec![a.s2s_route("tcp")]);
    }
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route("tcp")]);
    let (mut bob, _) = weft_testkit::federation::client(&b, "bob").await;
    let r = iq(
        &mut bob,
        "remote",
        &format!("<iq xmlns='jabber:client' type='get' id='remote' to='upload.a.test'><request xmlns='{UPLOAD}' filename='a.txt' size='1'/></iq>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("error"), "{}", show(&r));
    assert!(r.get_child("slot", UPLOAD).is_none());
    // a.test's own accounts do get one.
    let (mut alice, _) = weft_testkit::federation::client(&a, "alice").await;
    let r = iq(
        &mut alice,
        "local",
        &format!("<iq xmlns='jabber:client' type='get' id='local' to='upload.a.test'><request xmlns='{UPLOAD}' filename='a.txt' size='1'/></iq>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", show(&r));
    a.stop().await;
    b.stop().await;
}

#[test]
fn bad_upload_settings_are_rejected_with_their_key_path() {
    let config = weft_config::Config::parse(
        "[modules.upload]\nmax_file_sise = '1 MiB'\nexpire_after = 'soon'\n",
    )
    .expect("the TOML itself is fine");
    let problems = match weft_server::modules::load(&config) {
        Err(p) => p,
        Ok(_) => panic!("bad upload settings accepted"),
    };
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    for key in [
        "modules.upload.max_file_sise",
        "modules.upload.expire_after",
    ] {
        assert!(
            text.iter().any(|t| t.starts_with(&format!("{key}:"))),
            "{key} not in {text:?}"
        );
    }
    // Values only the module can judge.
    let config = weft_config::Config::parse(
        "[modules.upload]\nbase_url = 'http://files.example.org'\nmax_file_size = '2 MiB'\nquota_per_account = '1 MiB'\n",
    )
    .unwrap();
    let text: Vec<String> = match weft_server::modules::load(&config) {
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
        Ok(_) => panic!("bad upload settings accepted"),
    };
    for key in [
        "modules.upload.base_url",
        "modules.upload.quota_per_account",
    ] {
        assert!(
            text.iter().any(|t| t.starts_with(&format!("{key}:"))),
            "{key} not in {text:?}"
        );
    }
}

#[test]
fn the_example_configuration_loads_the_upload_module() {
    let text = include_str!("../../../weft.example.toml");
    let config = weft_config::Config::parse(text).expect("the example parses");
    assert!(text.contains("[modules.upload]"));
    let modules = weft_server::modules::load(&config).expect("the example's modules load");
    assert!(modules.names().contains(&"upload"));
}
