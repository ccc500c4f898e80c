//! XEP-0215 External Service Discovery and XEP-0157 contact addresses on the wire: the
//! configured services listed (all, by type), TURN REST credentials for local accounts
//! (recomputed here), credentials requests for known and unknown services, nothing for
//! accounts of other servers, the extdisco feature and the serverinfo form in the server's
//! disco#info (and in its caps), and configuration mistakes reported with their key paths.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use minidom::Element;
use weft_testkit::clients::{error_condition, login, show};
use weft_testkit::{Client, Login, TestCa, TestServer, WsClient, PASSWORD};
use xmpp_parsers::data_forms::DataForm;

const EXTDISCO: &str = "urn:xmpp:extdisco:2";
const EXTDISCO_1: &str = "urn:xmpp:extdisco:1";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const SERVERINFO: &str = "http://jabber.org/network/serverinfo";
const SECRET: &str = "coturn static-auth-secret";

/// Four services: STUN, TURN over UDP and TCP on one port (restricted, REST credentials),
/// TURNS (restricted, static credentials); credentials live two hours.
const SERVICES: &str = r#"
secret = "coturn static-auth-secret"
credential_lifetime = "2h"

[[services]]
type = "stun"
host = "stun.example.org"
port = 3478
transport = "udp"

[[services]]
type = "turn"
host = "turn.example.org"
port = 3478
transport = "udp"
restricted = true
name = "Relay"

[[services]]
type = "turn"
host = "turn.example.org"
port = 3478
transport = "tcp"
restricted = true

[[services]]
type = "turns"
host = "turn.example.org"
port = 5349
transport = "tcp"
restricted = true
username = "static-user"
password = "static-pass"
"#;

const CONTACTS: &str = r#"
enabled = true
abuse = ["mailto:abuse@example.org", "xmpp:abuse@example.org"]
security = ["mailto:security@example.org"]
status = ["https://status.example.org/"]
"#;

fn section(text: &str) -> toml::Value {
    toml::Value::Table(toml::from_str(text).expect("section"))
}

async fn start(services: Option<&str>, contacts: Option<&str>) -> TestServer {
    let services = services.map(|s| {
        let mut t: toml::Table = toml::from_str(s).expect("services");
        t.insert("enabled".into(), toml::Value::Boolean(true));
        toml::Value::Table(t)
    });
    let contacts = contacts.map(section);
    TestServer::start_with(move |c| {
        if let Some(s) = services {
            c.modules.insert("external_services".into(), s);
        }
        if let Some(s) = contacts {
            c.modules.insert("contact_info".into(), s);
        }
    })
    .await
}

async fn client(server: &TestServer, user: &str) -> WsClient {
    let mut c = server.ws().await;
    login(&mut c, user, PASSWORD, Login::ScramSha256, Some("r")).await;
    c
}

async fn iq<C: Client>(c: &mut C, id: &str, to: &str, payload: &str) -> Element {
    let xml = format!("<iq xmlns='jabber:client' type='get' id='{id}' to='{to}'>{payload}</iq>");
    weft_testkit::clients::iq(c, id, &xml).await
}

/// The `<service/>`s of a result's `name` payload in `ns`.
fn services_of(result: &Element, name: &str, ns: &str) -> Vec<Element> {
    assert_eq!(result.attr("type"), Some("result"), "{}", show(result));
    result
        .get_child(name, ns)
        .unwrap_or_else(|| panic!("no <{name}/> in {}", show(result)))
        .children()
        .map(|s| {
            assert!(s.is("service", ns), "{}", show(s));
            s.clone()
        })
        .collect()
}

/// (type, host, port, transport) of each service.
fn ids(services: &[Element]) -> Vec<(String, String, String, String)> {
    services
        .iter()
        .map(|s| {
            let a = |n: &str| s.attr(n).unwrap_or_default().to_string();
            (a("type"), a("host"), a("port"), a("transport"))
        })
        .collect()
}

fn id(kind: &str, host: &str, port: &str, transport: &str) -> (String, String, String, String) {
    (kind.into(), host.into(), port.into(), transport.into())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Checks a service's TURN REST credentials for `user`, made within the last minute with
/// a lifetime of two hours: the username is `expiry:user`, the password the base64 HMAC-SHA1
/// of it under the secret, `expires` the same instant in XEP-0082 UTC.
fn assert_rest_credentials(service: &Element, user: &str) {
    let username = service.attr("username").expect("username");
    let password = service.attr("password").expect("password");
    let expires = service.attr("expires").expect("expires");
    let (expiry, who) = username.split_once(':').expect("expiry:user");
    assert_eq!(who, user, "{}", show(service));
    let expiry: i64 = expiry.parse().expect("a Unix time");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(password, expected, "{}", show(service));
    assert!(expires.ends_with('Z'), "UTC: {expires}");
    let parsed: xmpp_parsers::date::DateTime = expires.parse().expect("XEP-0082 date-time");
    assert_eq!(
        parsed.0.timestamp(),
        expiry,
        "expires and the username agree"
    );
    let ahead = expiry - unix_now();
    assert!(
        (7200 - 60..=7200).contains(&ahead),
        "expires {ahead}s ahead, not the configured 2h"
    );
    assert_eq!(service.attr("restricted"), Some("true"));
}

#[tokio::test]
async fn services_are_listed_all_and_by_type() {
    let server = start(Some(SERVICES), None).await;
    let mut alice = client(&server, "alice").await;

    let all = iq(
        &mut alice,
        "all",
        "localhost",
        &format!("<services xmlns='{EXTDISCO}'/>"),
    )
    .await;
    let all = services_of(&all, "services", EXTDISCO);
    assert_eq!(
        ids(&all),
        [
            id("stun", "stun.example.org", "3478", "udp"),
            id("turn", "turn.example.org", "3478", "udp"),
            id("turn", "turn.example.org", "3478", "tcp"),
            id("turns", "turn.example.org", "5349", "tcp"),
        ]
    );
    // STUN: open, no credentials.
    for attr in ["restricted", "username", "password", "expires"] {
        assert_eq!(all[0].attr(attr), None, "{attr}: {}", show(&all[0]));
    }
    assert_eq!(all[1].attr("name"), Some("Relay"));
    // Static credentials as configured, without an expiry.
    assert_eq!(all[3].attr("username"), Some("static-user"));
    assert_eq!(all[3].attr("password"), Some("static-pass"));
    assert_eq!(all[3].attr("expires"), None);
    assert_eq!(all[3].attr("restricted"), Some("true"));

    let turn = iq(
        &mut alice,
        "turn",
        "localhost",
        &format!("<services xmlns='{EXTDISCO}' type='turn'/>"),
    )
    .await;
    assert_eq!(
        turn.get_child("services", EXTDISCO)
            .and_then(|s| s.attr("type")),
        Some("turn"),
        "the requested type is echoed"
    );
    assert_eq!(
        ids(&services_of(&turn, "services", EXTDISCO)),
        [
            id("turn", "turn.example.org", "3478", "udp"),
            id("turn", "turn.example.org", "3478", "tcp"),
        ]
    );
    let none = iq(
        &mut alice,
        "ftp",
        "localhost",
        &format!("<services xmlns='{EXTDISCO}' type='ftp'/>"),
    )
    .await;
    assert!(services_of(&none, "services", EXTDISCO).is_empty());

    // The older namespace gets the same answer in its own namespace.
    let old = iq(
        &mut alice,
        "old",
        "localhost",
        &format!("<services xmlns='{EXTDISCO_1}' type='stun'/>"),
    )
    .await;
    assert_eq!(
        ids(&services_of(&old, "services", EXTDISCO_1)),
        [id("stun", "stun.example.org", "3478", "udp")]
    );

    // A set is not a request; an account's JID is not the service.
    alice
        .send(&format!(
            "<iq xmlns='jabber:client' type='set' id='set' to='localhost'><services xmlns='{EXTDISCO}'/></iq>"
        ))
        .await;
    let set = loop {
        let el = alice.recv().await;
        if el.attr("id") == Some("set") {
            break el;
        }
    };
    assert_eq!(
        error_condition(&set).as_deref(),
        Some("bad-request"),
        "{}",
        show(&set)
    );
    let to_bob = iq(
        &mut alice,
        "bob",
        "bob@localhost",
        &format!("<services xmlns='{EXTDISCO}'/>"),
    )
    .await;
    assert_eq!(to_bob.attr("type"), Some("error"), "{}", show(&to_bob));
    server.stop().await;
}

#[tokio::test]
async fn restricted_turn_services_carry_fresh_rest_credentials() {
    let server = start(Some(SERVICES), None).await;
    let mut alice = client(&server, "alice").await;
    let all = iq(
        &mut alice,
        "all",
        "localhost",
        &format!("<services xmlns='{EXTDISCO}'/>"),
    )
    .await;
    let all = services_of(&all, "services", EXTDISCO);
    assert_rest_credentials(&all[1], "alice@localhost");
    assert_rest_credentials(&all[2], "alice@localhost");

    // A credentials request for host and type: both ports' transports.
    let creds = iq(
        &mut alice,
        "c1",
        "localhost",
        &format!(
            "<credentials xmlns='{EXTDISCO}'><service host='turn.example.org' type='turn'/></credentials>"
        ),
    )
    .await;
    let creds = services_of(&creds, "credentials", EXTDISCO);
    assert_eq!(
        ids(&creds),
        [
            id("turn", "turn.example.org", "3478", "udp"),
            id("turn", "turn.example.org", "3478", "tcp"),
        ]
    );
    for service in &creds {
        assert_rest_credentials(service, "alice@localhost");
    }

    // With a port: only that one; bob gets his own username.
    let mut bob = client(&server, "bob").await;
    let turns = iq(
        &mut bob,
        "c2",
        "localhost",
        &format!(
            "<credentials xmlns='{EXTDISCO}'><service host='turn.example.org' type='turns' port='5349'/></credentials>"
        ),
    )
    .await;
    let turns = services_of(&turns, "credentials", EXTDISCO);
    assert_eq!(
        ids(&turns),
        [id("turns", "turn.example.org", "5349", "tcp")]
    );
    assert_eq!(turns[0].attr("username"), Some("static-user"));
    let bobs = iq(
        &mut bob,
        "c3",
        "localhost",
        &format!(
            "<credentials xmlns='{EXTDISCO}'><service host='turn.example.org' type='turn' port='3478'/></credentials>"
        ),
    )
    .await;
    for service in services_of(&bobs, "credentials", EXTDISCO) {
        assert_rest_credentials(&service, "bob@localhost");
    }
    server.stop().await;
}

#[tokio::test]
async fn credentials_for_unknown_services_are_item_not_found() {
    let server = start(Some(SERVICES), None).await;
    let mut alice = client(&server, "alice").await;
    for (n, service) in [
        "host='relay.example.net' type='turn'",
        "host='turn.example.org' type='stun'",
        "host='turn.example.org' type='turn' port='3479'",
        "host='stun.example.org' type='turn'",
    ]
    .into_iter()
    .enumerate()
    {
        let answer = iq(
            &mut alice,
            &format!("u{n}"),
            "localhost",
            &format!("<credentials xmlns='{EXTDISCO}'><service {service}/></credentials>"),
        )
        .await;
        assert_eq!(
            error_condition(&answer).as_deref(),
            Some("item-not-found"),
            "{service}: {}",
            show(&answer)
        );
    }
    for (n, bad) in [
        "<service type='turn'/>",
        "<service host='turn.example.org'/>",
        "<service host='turn.example.org' type='turn' port='x'/>",
        "",
    ]
    .into_iter()
    .enumerate()
    {
        let answer = iq(
            &mut alice,
            &format!("b{n}"),
            "localhost",
            &format!("<credentials xmlns='{EXTDISCO}'>{bad}</credentials>"),
        )
        .await;
        assert_eq!(
            error_condition(&answer).as_deref(),
            Some("bad-request"),
            "{bad}: {}",
            show(&answer)
        );
    }
    server.stop().await;
}

/// bob@b.test asks a.test over federation: the list without credentials, and no credentials
/// for restricted services.
#[tokio::test]
async fn accounts_of_other_servers_get_no_credentials() {
    let ca = TestCa::new();
    let mut services: toml::Table = toml::from_str(SERVICES).unwrap();
    services.insert("enabled".into(), toml::Value::Boolean(true));
    let a = TestServer::start_federating("a.test", &ca, true, move |c| {
        c.modules
            .insert("external_services".into(), toml::Value::Table(services));
    })
    .await;
    let b = TestServer::start_federating("b.test", &ca, true, |_| {}).await;
    a.running
        .state
        .s2s
        .set_routes("b.test", vec![b.s2s_route("tcp")]);
    b.running
        .state
        .s2s
        .set_routes("a.test", vec![a.s2s_route("tcp")]);
    let (mut bob, _) = weft_testkit::federation::client(&b, "bob").await;

    let list = iq(
        &mut bob,
        "l",
        "a.test",
        &format!("<services xmlns='{EXTDISCO}'/>"),
    )
    .await;
    let list = services_of(&list, "services", EXTDISCO);
    assert_eq!(list.len(), 4, "the list itself is public");
    for service in &list {
        assert_eq!(service.attr("username"), None, "{}", show(service));
        assert_eq!(service.attr("password"), None, "{}", show(service));
    }
    assert_eq!(list[1].attr("restricted"), Some("true"));

    let creds = iq(
        &mut bob,
        "c",
        "a.test",
        &format!(
            "<credentials xmlns='{EXTDISCO}'><service host='turn.example.org' type='turn'/></credentials>"
        ),
    )
    .await;
    assert_eq!(
        error_condition(&creds).as_deref(),
        Some("forbidden"),
        "{}",
        show(&creds)
    );
    a.stop().await;
    b.stop().await;
}

/// The server's disco#info: its features and forms.
async fn disco_info<C: Client>(c: &mut C, id: &str) -> (Vec<String>, Vec<DataForm>) {
    let info = iq(
        c,
        id,
        "localhost",
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    )
    .await;
    let query = info
        .get_child("query", DISCO_INFO)
        .unwrap_or_else(|| panic!("{}", show(&info)));
    let features = query
        .children()
        .filter(|c| c.is("feature", DISCO_INFO))
        .filter_map(|f| f.attr("var").map(String::from))
        .collect();
    let forms = query
        .children()
        .filter(|c| c.is("x", "jabber:x:data"))
        .map(|x| DataForm::try_from(x.clone()).expect("a data form"))
        .collect();
    (features, forms)
}

#[tokio::test]
async fn disco_info_shows_extdisco_and_the_contact_addresses_also_in_caps() {
    let server = start(Some(SERVICES), Some(CONTACTS)).await;
    // The caps in the stream features, before binding.
    let mut probe = server.ws().await;
    let features =
        weft_testkit::clients::authenticate(&mut probe, "carol", PASSWORD, Login::ScramSha256)
            .await;
    let ver = features
        .get_child("c", "http://jabber.org/protocol/caps")
        .and_then(|c| c.attr("ver"))
        .expect("caps ver")
        .to_string();
    drop(probe);

    let mut alice = client(&server, "alice").await;
    let (features, forms) = disco_info(&mut alice, "info").await;
    for f in [EXTDISCO, EXTDISCO_1] {
        assert!(features.iter().any(|x| x == f), "{f} not in {features:?}");
    }
    assert_eq!(forms.len(), 1, "{forms:?}");
    let form = &forms[0];
    assert_eq!(form.form_type(), Some(SERVERINFO));
    let field = |var: &str| {
        form.fields
            .iter()
            .find(|f| f.var.as_deref() == Some(var))
            .map(|f| f.values.clone())
    };
    assert_eq!(
        field("abuse-addresses"),
        Some(vec![
            "mailto:abuse@example.org".to_string(),
            "xmpp:abuse@example.org".to_string()
        ])
    );
    assert_eq!(
        field("security-addresses"),
        Some(vec!["mailto:security@example.org".to_string()])
    );
    assert_eq!(
        field("status-addresses"),
        Some(vec!["https://status.example.org/".to_string()])
    );
    assert_eq!(
        field("admin-addresses"),
        None,
        "unconfigured roles are left out"
    );

    // XEP-0115: the advertised ver is that of this disco#info, form included.
    let features: Vec<&str> = features.iter().map(String::as_str).collect();
    assert_eq!(
        ver,
        weft_server::modules::disco::caps_ver(&features, &forms)
    );
    assert_ne!(ver, weft_server::modules::disco::caps_ver(&features, &[]));

    // An account's disco#info gets no server form.
    let account = iq(
        &mut alice,
        "acct",
        "alice@localhost",
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    )
    .await;
    let query = account.get_child("query", DISCO_INFO).expect("query");
    assert!(
        !query.children().any(|c| c.name() == "x"),
        "{}",
        show(&account)
    );
    server.stop().await;
}

#[tokio::test]
async fn both_modules_are_off_by_default() {
    let server = start(None, None).await;
    let mut alice = client(&server, "alice").await;
    let (features, forms) = disco_info(&mut alice, "info").await;
    assert!(
        !features.iter().any(|f| f.starts_with("urn:xmpp:extdisco")),
        "{features:?}"
    );
    assert!(forms.is_empty(), "{forms:?}");
    let answer = iq(
        &mut alice,
        "s",
        "localhost",
        &format!("<services xmlns='{EXTDISCO}'/>"),
    )
    .await;
    assert_eq!(
        error_condition(&answer).as_deref(),
        Some("service-unavailable"),
        "{}",
        show(&answer)
    );
    server.stop().await;
}

/// The key paths of every problem `modules` has, as `weft config check` would list them.
fn problems(modules: &[(&str, &str)]) -> Vec<String> {
    let mut config = weft_config::Config::default();
    for (name, text) in modules {
        let mut t: toml::Table = toml::from_str(text).expect("section");
        t.insert("enabled".into(), toml::Value::Boolean(true));
        config
            .modules
            .insert(name.to_string(), toml::Value::Table(t));
    }
    match weft_server::modules::load(&config) {
        Ok(_) => panic!("bad sections accepted: {modules:?}"),
        Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
    }
}

fn assert_keys(problems: &[String], keys: &[&str]) {
    for key in keys {
        assert!(
            problems.iter().any(|p| p.starts_with(&format!("{key}:"))),
            "{key} not in {problems:#?}"
        );
    }
}

#[test]
fn bad_settings_are_reported_with_their_key_paths() {
    // Values serde takes but weft does not.
    let found = problems(&[(
        "external_services",
        r#"
credential_lifetime = "10s"
[[services]]
type = "TURN"
host = "turn example.org"
port = 0
restricted = true
[[services]]
type = "stun"
host = "stun.example.org"
port = 70000
username = "only-a-user"
[[services]]
type = "stun"
host = "stun.example.org"
port = 3478
[[services]]
type = "stun"
host = "stun.example.org"
port = 3478
"#,
    )]);
    assert_keys(
        &found,
        &[
            "modules.external_services.credential_lifetime",
            "modules.external_services.services[0].type",
            "modules.external_services.services[0].host",
            "modules.external_services.services[0].port",
            // restricted, no static credentials and no secret
            "modules.external_services.services[0].restricted",
            "modules.external_services.services[1].port",
            "modules.external_services.services[1].password",
            "modules.external_services.services[3].host",
        ],
    );
    assert_eq!(found.len(), 8, "{found:#?}");

    // Keys and values serde refuses.
    let found = problems(&[
        (
            "external_services",
            r#"
secrett = "x"
[[services]]
type = "turn"
host = "turn.example.org"
port = 3478
transport = "sctp"
"#,
        ),
        (
            "contact_info",
            r#"
abuse = ["mailto:abuse@example.org", "abuse@example.org"]
support_addresses = ["https://example.org"]
"#,
        ),
    ]);
    assert_keys(
        &found,
        &[
            "modules.external_services.secrett",
            "modules.external_services.services[0].transport",
            "modules.contact_info.support_addresses",
        ],
    );

    // Addresses without a scheme; an empty services list; no addresses at all.
    let found = problems(&[
        ("external_services", ""),
        (
            "contact_info",
            r#"abuse = ["mailto:abuse@example.org", "abuse@example.org"]
status = ["https://status.example.org", "status page"]"#,
        ),
    ]);
    assert_keys(
        &found,
        &[
            "modules.external_services.services",
            "modules.contact_info.abuse[1]",
            "modules.contact_info.status[1]",
        ],
    );
    assert_eq!(found.len(), 3, "{found:#?}");
    assert_keys(
        &problems(&[("contact_info", "")]),
        &["modules.contact_info"],
    );
}

#[test]
fn the_example_configuration_loads_both_sections_once_enabled() {
    let text = include_str!("../../../weft.example.toml");
    let mut config = weft_config::Config::parse(text).expect("the example parses");
    for name in ["external_services", "contact_info"] {
        let section = config
            .modules
            .get_mut(name)
            .and_then(|s| s.as_table_mut())
            .unwrap_or_else(|| panic!("[modules.{name}] in the example"));
        assert_eq!(
            section.get("enabled"),
            Some(&toml::Value::Boolean(false)),
            "off in the example"
        );
        section.insert("enabled".into(), toml::Value::Boolean(true));
    }
    let modules = weft_server::modules::load(&config).expect("the example's modules load");
    assert!(modules.names().contains(&"external_services"));
    assert!(modules.names().contains(&"contact_info"));
    assert_eq!(modules.server_forms().len(), 1);
}
