//! XEP-0215 External Service Discovery (v1.0.0, `urn:xmpp:extdisco:2`, and the same payloads
//! in the older `urn:xmpp:extdisco:1`): the server lists the STUN and TURN servers (or other
//! services) its operator configured, and hands its own accounts credentials for them: static
//! ones from the configuration, or time-limited TURN credentials per the TURN REST API that
//! coturn implements (`use-auth-secret`; draft-uberti-behave-turn-rest-00 §2.2): the username
//! is `<expiry unix time>:<bare JID>`, the password base64(HMAC-SHA1(secret, username)), and
//! the `expires` attribute says when they end (XEP-0082, UTC).
//!
//! Off by default: it only makes sense once an operator lists services. No pushes (§3.2):
//! credentials are made fresh for every request, so there is nothing to update.

use crate::compliance::Claim;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use rxml::xml_ncname;
use serde::Deserialize;
use weft_config::{ConfigError, HumanDuration};

use super::{IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec, Section};
use crate::error::StanzaErrorCondition;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "external_services",
    default_enabled: false,
    spec: &SPEC,
    build,
};

pub const NS: &str = "urn:xmpp:extdisco:2";
/// XEP-0215 before 0.7 (2021): the same `<services/>` and `<credentials/>`.
pub const NS_1: &str = "urn:xmpp:extdisco:1";

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[NS, NS_1],
    server_features: &[NS, NS_1],
    specs: &[
        Claim::xep(215, "1.0.0", "modules::external_services: STUN/TURN from the configuration, coturn REST credentials per request; no push updates"),
    ],
    ..ModuleSpec::named("external_services")
};

/// `[modules.external_services]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[[modules.external_services.services]]`, in the order they are listed to clients.
    pub services: Vec<ServiceSettings>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret`): restricted
    /// services without a static username and password get credentials made with it.
    pub secret: Option<String>,
    /// How long credentials made with `secret` stay valid.
    pub credential_lifetime: HumanDuration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            services: Vec::new(),
            secret: None,
            credential_lifetime: HumanDuration(Duration::from_secs(86400)),
        }
    }
}

/// One `[[modules.external_services.services]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// The registered service type: stun, turn, stuns, turns, …
    #[serde(rename = "type")]
    pub kind: String,
    /// A domain name or an IP address.
    pub host: String,
    /// 1-65535. An integer wider than u16 so that 0 and 70000 get our message.
    pub port: i64,
    pub transport: Option<Transport>,
    /// Clients need credentials for it (handed to this server's accounts only).
    #[serde(default)]
    pub restricted: bool,
    /// Static credentials; else, for a restricted service, made with `secret`.
    pub username: Option<String>,
    pub password: Option<String>,
    /// A human-readable name.
    pub name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

fn build(section: &Section) -> Result<Arc<dyn Module>, Vec<ConfigError>> {
    let settings: Settings = section.parse()?;
    let problems = validate(section, &settings);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(ExternalServices { settings }))
}

fn validate(section: &Section, settings: &Settings) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    if settings.services.is_empty() {
        problems.push(section.error(
            "services",
            "list at least one service ([[modules.external_services.services]]) or turn the \
             module off",
        ));
    }
    if settings
        .secret
        .as_ref()
        .is_some_and(|s| s.trim().is_empty())
    {
        problems.push(section.error("secret", "must not be empty"));
    }
    let lifetime = settings.credential_lifetime.0;
    if lifetime < Duration::from_secs(60) || lifetime > Duration::from_secs(30 * 86400) {
        problems.push(section.error("credential_lifetime", "must be between 1m and 30d"));
    }
    for (i, s) in settings.services.iter().enumerate() {
        let key = |field: &str| format!("services[{i}].{field}");
        if !is_service_type(&s.kind) {
            problems.push(section.error(
                &key("type"),
                format!(
                    "'{}' is not a service type (lowercase letters, digits and '-', such as \
                     stun, turn, turns)",
                    s.kind
                ),
            ));
        }
        if !is_host(&s.host) {
            problems.push(section.error(
                &key("host"),
                format!("'{}' is neither a domain name nor an IP address", s.host),
            ));
        }
        if !(1..=65535).contains(&s.port) {
            problems.push(section.error(&key("port"), "must be between 1 and 65535"));
        }
        match (&s.username, &s.password) {
            (Some(_), None) => problems.push(section.error(
                &key("password"),
                "is missing: username and password go together",
            )),
            (None, Some(_)) => problems.push(section.error(
                &key("username"),
                "is missing: username and password go together",
            )),
            (None, None) if s.restricted && settings.secret.is_none() => {
                problems.push(section.error(
                    &key("restricted"),
                    "a restricted service needs a username and password, or \
                     modules.external_services.secret to make TURN REST credentials",
                ))
            }
            _ => {}
        }
        if s.name.as_ref().is_some_and(|n| n.trim().is_empty()) {
            problems.push(section.error(&key("name"), "must not be empty"));
        }
        let same = |o: &ServiceSettings| {
            o.kind == s.kind && o.host == s.host && o.port == s.port && o.transport == s.transport
        };
        if settings.services[..i].iter().any(same) {
            problems.push(section.error(
                &key("host"),
                "the same type, host, port and transport are listed twice",
            ));
        }
    }
    problems
}

/// IANA service names (RFC 6335 §5.1): letters, digits and '-', lowercase here as XEP-0215
/// compares types exactly.
fn is_service_type(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 63
        && !kind.starts_with('-')
        && !kind.ends_with('-')
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub struct ExternalServices {
    settings: Settings,
}

/// Credentials as they go out: (username, password, expires).
type Credentials = (String, String, Option<String>);

impl ExternalServices {
    /// The credentials of `service` for the local account `user` (a bare JID), if it has any.
    fn credentials(&self, service: &ServiceSettings, user: &str, now: i64) -> Option<Credentials> {
        if let (Some(username), Some(password)) = (&service.username, &service.password) {
            return Some((username.clone(), password.clone(), None));
        }
        if !service.restricted {
            return None;
        }
        let secret = self.settings.secret.as_deref()?;
        let lifetime =
            i64::try_from(self.settings.credential_lifetime.0.as_secs()).unwrap_or(i64::MAX);
        let expiry = now.saturating_add(lifetime);
        let (username, password) = turn_rest_credentials(secret, expiry, user);
        Some((username, password, Some(super::time::xep0082(expiry, 0))))
    }

    /// `<service/>` in `ns`, with credentials when `user` (a local account) may have them.
    fn service_element(
        &self,
        ns: &str,
        service: &ServiceSettings,
        user: Option<&str>,
        now: i64,
    ) -> Element {
        let mut b = Element::builder("service", ns)
            .attr(xml_ncname!("type").into(), service.kind.as_str())
            .attr(xml_ncname!("host").into(), service.host.as_str())
            .attr(xml_ncname!("port").into(), service.port.to_string());
        if let Some(transport) = service.transport {
            b = b.attr(xml_ncname!("transport").into(), transport.as_str());
        }
        if let Some(name) = &service.name {
            b = b.attr(xml_ncname!("name").into(), name.as_str());
        }
        if service.restricted {
            b = b.attr(xml_ncname!("restricted").into(), "true");
        }
        if let Some((username, password, expires)) =
            user.and_then(|u| self.credentials(service, u, now))
        {
            b = b
                .attr(xml_ncname!("username").into(), username)
                .attr(xml_ncname!("password").into(), password);
            if let Some(expires) = expires {
                b = b.attr(xml_ncname!("expires").into(), expires);
            }
        }
        b.build()
    }

    /// §3.1, §3.2: every service, or those of the requested type.
    fn services(&self, ns: &str, payload: &Element, user: Option<&str>) -> IqOutcome {
        let kind = payload.attr("type");
        let now = super::upload::unix_now();
        let mut result = Element::builder("services", ns);
        if let Some(kind) = kind {
            result = result.attr(xml_ncname!("type").into(), kind);
        }
        let services = self
            .settings
            .services
            .iter()
            .filter(|s| kind.is_none_or(|k| k == s.kind))
            .map(|s| self.service_element(ns, s, user, now));
        IqOutcome::Result(Some(result.append_all(services).build()))
    }

    /// §3.3: credentials for the services of a host and type (and port).
    fn credentials_request(&self, ns: &str, payload: &Element, user: Option<&str>) -> IqOutcome {
        let Some(wanted) = payload.get_child("service", ns) else {
            return IqOutcome::error(
                StanzaErrorCondition::BadRequest,
                "a credentials request names a <service/>",
            );
        };
        let (Some(host), Some(kind)) = (wanted.attr("host"), wanted.attr("type")) else {
            return IqOutcome::error(
                StanzaErrorCondition::BadRequest,
                "the <service/> needs 'host' and 'type'",
            );
        };
        let port = match wanted.attr("port").map(str::parse::<i64>) {
            None => None,
            Some(Ok(port)) => Some(port),
            Some(Err(_)) => {
                return IqOutcome::error(StanzaErrorCondition::BadRequest, "'port' is not a number")
            }
        };
        let matching: Vec<&ServiceSettings> = self
            .settings
            .services
            .iter()
            .filter(|s| s.host == host && s.kind == kind && port.is_none_or(|p| p == s.port))
            .collect();
        if matching.is_empty() {
            return IqOutcome::error(StanzaErrorCondition::ItemNotFound, "no such service");
        }
        if user.is_none() && matching.iter().any(|s| s.restricted) {
            return IqOutcome::error(
                StanzaErrorCondition::Forbidden,
                "credentials are for accounts of this server",
            );
        }
        let now = super::upload::unix_now();
        let services = matching
            .into_iter()
            .map(|s| self.service_element(ns, s, user, now));
        IqOutcome::Result(Some(
            Element::builder("credentials", ns)
                .append_all(services)
                .build(),
        ))
    }
}

/// The TURN REST API's credentials for `user` until `expiry` (a Unix time): the username
/// `expiry:user` and the password base64(HMAC-SHA1(secret, username)), as coturn checks them
/// with `use-auth-secret`.
pub fn turn_rest_credentials(secret: &str, expiry: i64, user: &str) -> (String, String) {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let username = format!("{expiry}:{user}");
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[async_trait::async_trait]
impl Module for ExternalServices {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        // The server's own JID answers; an account's bare JID does not.
        if req.to.node().is_some() {
            return IqOutcome::NotMine;
        }
        let ns = req.payload.ns();
        let name = req.payload.name();
        if name != "services" && name != "credentials" {
            return IqOutcome::NotMine;
        }
        if req.is_set {
            // Sets are the server's pushes to clients (§3.2), never requests to it.
            return IqOutcome::error(StanzaErrorCondition::BadRequest, "requests are gets");
        }
        // Credentials go to this server's own accounts only, never over federation.
        let user = req
            .local_sender(state)
            .map(|full| full.to_bare().to_string());
        if name == "services" {
            self.services(&ns, req.payload, user.as_deref())
        } else {
            self.credentials_request(&ns, req.payload, user.as_deref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A known answer worked out outside Rust:
    /// `printf '1700000000:alice@example.org' | openssl dgst -sha1 -hmac s3cret -binary | base64`
    #[test]
    fn turn_rest_credentials_known_answer() {
        let (username, password) =
            turn_rest_credentials("s3cret", 1_700_000_000, "alice@example.org");
        assert_eq!(username, "1700000000:alice@example.org");
        assert_eq!(password, "DTKvmY+vZ0UPwC3r7FrA5q50qEI=");
    }

    #[test]
    fn hosts_and_types() {
        for good in [
            "turn.example.org",
            "turn.example.org.",
            "192.0.2.1",
            "2001:db8::1",
            "a",
        ] {
            assert!(is_host(good), "{good}");
        }
        for bad in [
            "",
            "turn example.org",
            "-x.org",
            "x..org",
            "[2001:db8::1]",
            "a/b",
        ] {
            assert!(!is_host(bad), "{bad}");
        }
        for good in ["stun", "turns", "x-y2"] {
            assert!(is_service_type(good), "{good}");
        }
        for bad in ["", "TURN", "-stun", "stun ", "st_un"] {
            assert!(!is_service_type(bad), "{bad}");
        }
    }
}
