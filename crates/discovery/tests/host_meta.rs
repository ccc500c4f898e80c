//! XEP-0156 §3 / XEP-0487 §2.2: fetching host-meta over verified HTTPS against a local test server — JSON first then XML, redirect rules, body cap, timeouts, certificate checks and the TTL cache.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use weft_discovery::{
    CacheLimits, Discovery, EndpointKind, HostMetaError, HostMetaFormat, Overrides,
};

async fn setup(
    routes: impl Fn(&str) -> Reply + Send + Sync + 'static,
) -> (TestCa, HttpsServer, Discovery) {
    let ca = TestCa::new();
    let server = HttpsServer::start(ca.server_config(&["b.test"]), routes).await;
    let overrides = Overrides::default().host_meta_base("b.test", &server.base());
    let discovery = Discovery::new(config(&ca, overrides));
    (ca, server, discovery)
}

#[tokio::test]
async fn json_is_fetched_first_and_is_enough() {
    let (_ca, server, d) = setup(|path| match path {
        "/.well-known/host-meta.json" => Reply::ok(S2S_JRD),
        _ => Reply::ok(S2S_XRD),
    })
    .await;
    let hm = d.host_meta("B.test").await.unwrap();
    assert_eq!(hm.doc.format, HostMetaFormat::Jrd);
    assert!(hm.verified_via_https);
    assert_eq!(hm.url, "https://b.test/.well-known/host-meta.json");
    let ws: Vec<_> = hm.doc.endpoints_of(EndpointKind::S2sWebSocket).collect();
    assert_eq!(ws[0].url.as_deref(), Some("wss://b.test/xmpp-s2s"));
    // The override connects to 127.0.0.1 but speaks to (and verifies) b.test.
    assert_eq!(server.requests(), ["b.test /.well-known/host-meta.json"]);
}

#[tokio::test]
async fn xml_is_the_fallback_when_json_is_missing_or_broken() {
    for json in [
        Reply::not_found(),
        Reply::ok("{not json"),
        Reply::Status(500, vec![]),
    ] {
        let (_ca, server, d) = setup(move |path| match path {
            "/.well-known/host-meta.json" => json.clone(),
            "/.well-known/host-meta" => Reply::ok(S2S_XRD),
            _ => Reply::not_found(),
        })
        .await;
        let hm = d.host_meta("b.test").await.unwrap();
        assert_eq!(hm.doc.format, HostMetaFormat::Xrd);
        assert_eq!(hm.url, "https://b.test/.well-known/host-meta");
        assert_eq!(
            hm.doc.endpoints[0].url.as_deref(),
            Some("wss://b.test/xmpp-s2s-xml")
        );
        assert_eq!(server.requests().len(), 2);
    }
}

#[tokio::test]
async fn both_missing_is_both_failed_and_negatively_cached() {
    let (_ca, server, d) = setup(|_| Reply::not_found()).await;
    let err = d.host_meta("b.test").await.unwrap_err();
    match &err {
        HostMetaError::BothFailed { json, xml } => {
            assert!(matches!(**json, HostMetaError::Status { status: 404, .. }));
            assert!(matches!(**xml, HostMetaError::Status { status: 404, .. }));
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_timeout());
    assert_eq!(d.host_meta("b.test").await.unwrap_err(), err);
    assert_eq!(server.requests().len(), 2, "the failure was cached");
}

#[tokio::test]
async fn redirects_within_the_limit_are_followed() {
    let (_ca, server, d) = setup(|path| match path {
        "/.well-known/host-meta.json" => Reply::Redirect(301, "/a".into()),
        "/a" => Reply::Redirect(302, "b".into()),
        "/b" => Reply::Redirect(307, "https://b.test/c".into()),
        "/c" => Reply::ok(S2S_JRD),
        _ => Reply::not_found(),
    })
    .await;
    let hm = d.host_meta("b.test").await.unwrap();
    assert_eq!(hm.url, "https://b.test/c");
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn redirect_limit_is_enforced() {
    let hops = Arc::new(AtomicUsize::new(0));
    let counter = hops.clone();
    let (_ca, server, d) = setup(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Reply::Redirect(302, format!("/hop{n}"))
    })
    .await;
    match d.host_meta("b.test").await.unwrap_err() {
        HostMetaError::BothFailed { json, xml } => {
            assert!(
                matches!(*json, HostMetaError::TooManyRedirects { limit: 3, .. }),
                "{json}"
            );
            assert!(
                matches!(*xml, HostMetaError::TooManyRedirects { limit: 3, .. }),
                "{xml}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The first request plus three redirects, for each document.
    assert_eq!(server.requests().len(), 8);
}

#[tokio::test]
async fn redirect_to_plain_http_is_refused_not_followed() {
    let plain = SilentServer::start().await;
    let target = format!("http://{}/.well-known/host-meta.json", plain.addr);
    let (_ca, _server, d) = setup(move |_| Reply::Redirect(301, target.clone())).await;
    match d.host_meta("b.test").await.unwrap_err() {
        HostMetaError::BothFailed { json, xml } => {
            assert!(
                matches!(*json, HostMetaError::InsecureRedirect { .. }),
                "{json}"
            );
            assert!(
                matches!(*xml, HostMetaError::InsecureRedirect { .. }),
                "{xml}"
            );
        }
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        *plain.connections.lock().unwrap(),
        0,
        "no plain HTTP connection was made"
    );
}

#[tokio::test]
async fn redirect_to_another_host_verifies_that_host() {
    let ca = TestCa::new();
    let other = HttpsServer::start(ca.server_config(&["c.test"]), |_| Reply::ok(S2S_JRD)).await;
    let location = format!("https://c.test:{}/hm.json", other.addr.port());
    let origin = HttpsServer::start(ca.server_config(&["b.test"]), move |_| {
        Reply::Redirect(301, location.clone())
    })
    .await;
    let overrides = Overrides::default()
        .host_meta_base("b.test", &origin.base())
        .addrs("c.test", vec!["127.0.0.1".parse().unwrap()]);
    let d = Discovery::new(config(&ca, overrides));
    let hm = d.host_meta("b.test").await.unwrap();
    assert_eq!(
        hm.url,
        format!("https://c.test:{}/hm.json", other.addr.port())
    );
    assert_eq!(
        other.requests(),
        [format!("c.test:{} /hm.json", other.addr.port())]
    );

    // The same redirect to a host whose certificate does not match is refused.
    let impostor = HttpsServer::start(ca.server_config(&["d.test"]), |_| Reply::ok(S2S_JRD)).await;
    let location = format!("https://c.test:{}/hm.json", impostor.addr.port());
    let origin = HttpsServer::start(ca.server_config(&["b.test"]), move |_| {
        Reply::Redirect(301, location.clone())
    })
    .await;
    let overrides = Overrides::default()
        .host_meta_base("b.test", &origin.base())
        .addrs("c.test", vec!["127.0.0.1".parse().unwrap()]);
    let d = Discovery::new(config(&ca, overrides));
    let err = d.host_meta("b.test").await.unwrap_err();
    assert!(
        matches!(err, HostMetaError::Tls { ref server_name, .. } if server_name == "c.test"),
        "{err}"
    );
    assert!(impostor.requests().is_empty());
}

#[tokio::test]
async fn body_cap_applies_to_announced_and_streamed_bodies() {
    let (_ca, _server, d) = setup(|path| match path {
        "/.well-known/host-meta.json" => Reply::Announce(10 * 1024 * 1024),
        _ => Reply::Chunked(200 * 1024),
    })
    .await;
    match d.host_meta("b.test").await.unwrap_err() {
        HostMetaError::BothFailed { json, xml } => {
            assert!(
                matches!(*json, HostMetaError::BodyTooLarge { limit: 65536, .. }),
                "{json}"
            );
            assert!(
                matches!(*xml, HostMetaError::BodyTooLarge { limit: 65536, .. }),
                "{xml}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A body just under the cap is fine.
    let padded = format!("{S2S_JRD}{}", " ".repeat(60 * 1024));
    let (_ca, _server, d) = setup(move |_| Reply::ok(&padded)).await;
    assert!(d.host_meta("b.test").await.is_ok());
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_bounds() {
    let (_ca, _server, d) = setup(|_| Reply::Hang).await;
    let started = Instant::now();
    let err = d.host_meta("b.test").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, HostMetaError::Timeout { .. }), "{err}");
    assert!(err.is_timeout());
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_does_tls_fails_after_the_connect_timeout() {
    let ca = TestCa::new();
    let silent = SilentServer::start().await;
    let overrides =
        Overrides::default().host_meta_base("b.test", &format!("https://{}", silent.addr));
    let d = Discovery::new(config(&ca, overrides));
    let started = Instant::now();
    let err = d.host_meta("b.test").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            HostMetaError::Connect {
                timed_out: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_timeout());
    // No XML attempt after a transport failure: one connect timeout, not two.
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(*silent.connections.lock().unwrap(), 1);
}

#[tokio::test]
async fn certificate_for_the_wrong_name_is_refused() {
    let ca = TestCa::new();
    let server =
        HttpsServer::start(ca.server_config(&["other.test"]), |_| Reply::ok(S2S_JRD)).await;
    let overrides = Overrides::default().host_meta_base("b.test", &server.base());
    let d = Discovery::new(config(&ca, overrides));
    let err = d.host_meta("b.test").await.unwrap_err();
    match &err {
        HostMetaError::Tls {
            server_name,
            reason,
        } => {
            assert_eq!(server_name, "b.test");
            assert!(reason.contains("certificate"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        server.requests().is_empty(),
        "nothing was requested over the bad connection"
    );
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_is_refused() {
    let trusted = TestCa::new();
    let rogue = TestCa::new();
    let server = HttpsServer::start(rogue.server_config(&["b.test"]), |_| Reply::ok(S2S_JRD)).await;
    let overrides = Overrides::default().host_meta_base("b.test", &server.base());
    let d = Discovery::new(config(&trusted, overrides));
    assert!(matches!(
        d.host_meta("b.test").await,
        Err(HostMetaError::Tls { .. })
    ));
}

#[tokio::test]
async fn plain_http_override_is_refused() {
    let ca = TestCa::new();
    let overrides = Overrides::default().host_meta_base("b.test", "http://127.0.0.1:1");
    assert!(Discovery::try_new(config(&ca, overrides.clone())).is_err());
    let d = Discovery::new(config(&ca, overrides));
    assert!(matches!(
        d.host_meta("b.test").await,
        Err(HostMetaError::BadOverride { .. })
    ));
}

#[tokio::test]
async fn override_base_path_is_a_prefix() {
    let (ca, server, _) = setup(|path| match path {
        "/hosted/b/.well-known/host-meta.json" => Reply::ok(S2S_JRD),
        _ => Reply::not_found(),
    })
    .await;
    let overrides =
        Overrides::default().host_meta_base("b.test", &format!("{}/hosted/b/", server.base()));
    let d = Discovery::new(config(&ca, overrides));
    let hm = d.host_meta("b.test").await.unwrap();
    assert_eq!(hm.url, "https://b.test/hosted/b/.well-known/host-meta.json");
}

#[tokio::test]
async fn concurrent_lookups_share_one_fetch_and_later_ones_hit_the_cache() {
    let (_ca, server, d) = setup(|_| Reply::ok(S2S_JRD)).await;
    let lookups: Vec<_> = (0..8)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move { d.host_meta("b.test").await })
        })
        .collect();
    for l in lookups {
        assert!(l.await.unwrap().is_ok());
    }
    assert!(d.host_meta("b.test").await.is_ok());
    assert_eq!(server.requests().len(), 1);
    d.clear_cache();
    assert!(d.host_meta("b.test").await.is_ok());
    assert_eq!(server.requests().len(), 2);
}

/// XEP-0487 `ttl` decides the lifetime; paused time moves past it without waiting.
#[tokio::test]
async fn xep_0487_ttl_expires_and_stale_document_covers_a_failed_refresh() {
    let failing = Arc::new(AtomicBool::new(false));
    let flag = failing.clone();
    let body = r#"{"xmpp":{"ttl":120},"links":[{"rel":"urn:xmpp:alt-connections:s2s-websocket","href":"wss://b.test/s2s","ips":["127.0.0.1"],"priority":1,"weight":1,"sni":"b.test"}]}"#;
    let ca = TestCa::new();
    let server = HttpsServer::start(ca.server_config(&["b.test"]), move |_| {
        if flag.load(Ordering::SeqCst) {
            Reply::Status(503, vec![])
        } else {
            Reply::ok(body)
        }
    })
    .await;
    let mut cfg = config(
        &ca,
        Overrides::default().host_meta_base("b.test", &server.base()),
    );
    cfg.cache = CacheLimits {
        min_ttl: Duration::from_secs(10),
        negative_ttl: Duration::from_secs(30),
        max_stale: Duration::from_secs(600),
        ..CacheLimits::default()
    };
    let d = Discovery::new(cfg);
    let first = d.host_meta("b.test").await.unwrap();
    assert_eq!(first.doc.ttl(), Some(Duration::from_secs(120)));

    // Within the ttl: cached.
    advance(Duration::from_secs(119)).await;
    assert!(d.host_meta("b.test").await.is_ok());
    assert_eq!(server.requests().len(), 1);

    // Past it: fetched again.
    advance(Duration::from_secs(2)).await;
    assert!(d.host_meta("b.test").await.is_ok());
    assert_eq!(server.requests().len(), 2);

    // Expired and the refresh fails: the expired document stands in (XEP-0487 §5.2).
    failing.store(true, Ordering::SeqCst);
    advance(Duration::from_secs(121)).await;
    let stale = d.host_meta("b.test").await.unwrap();
    assert_eq!(stale.doc, first.doc);
    assert_eq!(server.requests().len(), 4, "both documents were tried");
    // … but not beyond max_stale: then the failure shows.
    advance(Duration::from_secs(700)).await;
    assert!(d.host_meta("b.test").await.is_err());
}

/// Move tokio's clock forward while no I/O is pending (paused time would otherwise fire the
/// fetch timeouts while the local server is merely being scheduled).
async fn advance(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}
