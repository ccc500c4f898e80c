//! weft's configuration: TOML into typed, validated settings. Unknown keys are errors, and every
//! error names the exact key path that is wrong.
#![forbid(unsafe_code)]

mod bosh;
mod component;
mod s2s;
mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use bosh::BoshConfig;
pub use component::{ComponentConfig, ComponentConflict};
pub use s2s::{S2sConfig, S2sTransport};
pub use units::{parse_duration, parse_size, ByteSize, HumanDuration};

/// A configuration error, naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML is malformed or a value has the wrong type; `key` is the dotted path.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub tls: TlsConfig,
    pub listen: ListenConfig,
    pub c2s: C2sConfig,
    pub websocket: WebSocketConfig,
    /// `[bosh]`: XEP-0124 / XEP-0206 BOSH.
    pub bosh: BoshConfig,
    pub limits: LimitsConfig,
    pub host_meta: HostMetaConfig,
    pub s2s: S2sConfig,
    pub log: LogConfig,
    /// `[[components]]`: XEP-0114 external components, each with its domain and secret.
    pub components: Vec<ComponentConfig>,
    /// `[modules.NAME]`: each feature module's own section, read and validated by the module
    /// itself (weft-server's `modules`), which names the keys of its typed settings. Every
    /// section takes `enabled = false` to turn the module off.
    pub modules: std::collections::BTreeMap<String, toml::Value>,
}

/// `[server]`: which domains weft hosts and where it keeps its files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Domains served by this instance. The first one is the default for CLI commands.
    pub domains: Vec<String>,
    /// Directory for the database and the generated certificate.
    pub data_dir: PathBuf,
    /// How long in-flight streams get to close on SIGTERM/SIGINT.
    pub shutdown_grace: HumanDuration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            domains: vec!["localhost".into()],
            data_dir: PathBuf::from("weft-data"),
            shutdown_grace: HumanDuration(Duration::from_secs(5)),
        }
    }
}

/// `[storage]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// SQLite database file; defaults to `<data_dir>/weft.sqlite`.
    pub sqlite_path: Option<PathBuf>,
}

/// `[tls]`: a certificate chain and key in PEM. Without both, weft generates a self-signed
/// certificate for its domains under `data_dir` on first start.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// `[listen]`: socket addresses for each listener; an empty list turns that listener off.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Plain HTTP: host-meta and ws://.
    pub http: Vec<SocketAddr>,
    /// HTTPS: host-meta and wss://.
    pub https: Vec<SocketAddr>,
    /// Client-to-server TCP with STARTTLS (RFC 6120).
    pub c2s: Vec<SocketAddr>,
    /// Client-to-server Direct TLS (XEP-0368).
    pub c2s_direct_tls: Vec<SocketAddr>,
    /// Server-to-server TCP with STARTTLS (RFC 6120).
    pub s2s: Vec<SocketAddr>,
    /// Server-to-server Direct TLS (XEP-0368).
    pub s2s_direct_tls: Vec<SocketAddr>,
    /// XEP-0114 external components (plain TCP, `jabber:component:accept`); off by default.
    pub component: Vec<SocketAddr>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        let lo = |port: u16| vec![SocketAddr::from(([127, 0, 0, 1], port))];
        ListenConfig {
            http: lo(5280),
            https: lo(5443),
            c2s: lo(5222),
            c2s_direct_tls: lo(5223),
            s2s: lo(5269),
            s2s_direct_tls: lo(5270),
            component: Vec::new(),
        }
    }
}

/// What to do when a client binds a resource that is already bound (RFC 6120 §7.7.2.2).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResourceConflict {
    /// The new session wins; the old one gets `<conflict/>` and is closed.
    Replace,
    /// The new session is refused with `<conflict/>`.
    Reject,
}

/// `[c2s]`: client streams.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2sConfig {
    /// Refuse authentication on TCP before STARTTLS (RFC 6120 §5.3.1).
    pub require_encryption: bool,
    /// Development only: offer PLAIN without TLS to clients connecting from a loopback address.
    pub allow_plain_on_loopback: bool,
    /// Failed SASL attempts allowed on one stream before it is closed.
    pub max_auth_attempts: u32,
    /// Streams that have not authenticated within this time are closed: client streams, and
    /// XEP-0114 component streams that have not completed their handshake.
    pub unauthenticated_timeout: HumanDuration,
    /// PBKDF2 iterations for newly stored SCRAM credentials.
    pub scram_iterations: u32,
    pub resource_conflict: ResourceConflict,
    /// `[c2s.stream_management]`: XEP-0198.
    pub stream_management: StreamManagementConfig,
}

/// `[c2s.stream_management]`: XEP-0198 acknowledgements and resumption.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamManagementConfig {
    /// Offer stream management to clients.
    pub enabled: bool,
    /// How long a session whose connection dropped waits to be resumed (a client may ask for
    /// less with `max`); then its unacknowledged stanzas go where stanzas for a resource that
    /// went away go (offline storage, other resources, errors to their senders).
    pub resume_timeout: HumanDuration,
    /// Stanzas sent to a client and not yet acknowledged (or held for a dropped connection)
    /// beyond which the session ends with `<policy-violation/>`; they are then handled as on
    /// a timeout, none dropped.
    pub max_unacked: usize,
}

impl Default for StreamManagementConfig {
    fn default() -> Self {
        StreamManagementConfig {
            enabled: true,
            resume_timeout: HumanDuration(Duration::from_secs(300)),
            max_unacked: 1000,
        }
    }
}

impl Default for C2sConfig {
    fn default() -> Self {
        C2sConfig {
            require_encryption: true,
            allow_plain_on_loopback: false,
            max_auth_attempts: 3,
            unauthenticated_timeout: HumanDuration(Duration::from_secs(30)),
            scram_iterations: 4096,
            resource_conflict: ResourceConflict::Replace,
            stream_management: StreamManagementConfig::default(),
        }
    }
}

/// `[websocket]`: RFC 7395 endpoint settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    /// URL path of the WebSocket endpoint on the HTTP and HTTPS listeners.
    pub path: String,
    /// Interval of WebSocket pings; keep it under the idle timeout of proxies in front of weft.
    pub ping_interval: HumanDuration,
    /// A peer that has not answered a ping within this time is dropped.
    pub ping_timeout: HumanDuration,
    /// Allowed `Origin` header values; empty allows any origin (and requests without one).
    pub allowed_origins: Vec<String>,
    /// When set, streams closed by the server (shutdown, drain) carry this `see-other-uri`
    /// (RFC 7395 §3.6.1). Must be a ws:// or wss:// URL; never used to downgrade wss to ws.
    pub see_other_uri: Option<String>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            path: "/xmpp-websocket".into(),
            ping_interval: HumanDuration(Duration::from_secs(30)),
            ping_timeout: HumanDuration(Duration::from_secs(30)),
            allowed_origins: Vec::new(),
            see_other_uri: None,
        }
    }
}

/// `[limits]`: protective limits, the same for every transport.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest stanza (or WebSocket message) accepted; larger gets `<policy-violation/>`.
    pub max_stanza_size: ByteSize,
    /// Deepest element nesting accepted in a stanza.
    pub max_depth: usize,
    /// Simultaneous connections from one IP address, over all listeners.
    pub max_connections_per_ip: usize,
    /// Bound on stanzas queued for one session before it is considered stuck.
    pub session_queue: usize,
    /// Sustained stanzas per second one client stream may send; beyond it weft stops reading
    /// from that stream until the budget refills (backpressure, nothing is dropped). 0: no limit.
    pub c2s_stanza_rate: u32,
    /// Stanzas a client may send in a burst above the sustained rate.
    pub c2s_stanza_burst: u32,
    /// The same for each incoming server-to-server stream. 0: no limit.
    pub s2s_stanza_rate: u32,
    pub s2s_stanza_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_stanza_size: ByteSize::kib(256),
            max_depth: 32,
            max_connections_per_ip: 100,
            session_queue: 1024,
            c2s_stanza_rate: 200,
            c2s_stanza_burst: 1000,
            s2s_stanza_rate: 2000,
            s2s_stanza_burst: 10000,
        }
    }
}

/// `[host_meta]`: XEP-0156 discovery documents. Behind a reverse proxy, set the public URLs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostMetaConfig {
    /// Public WebSocket URLs to advertise. Empty: derived from the listeners
    /// (wss://DOMAIN:PORT/path for each HTTPS listener, and ws:// for plain HTTP on loopback).
    pub websocket_urls: Vec<String>,
    /// Public BOSH URLs (XEP-0206) to advertise. Empty: derived from the listeners like the
    /// WebSocket ones (https:// per HTTPS listener, http:// for plain HTTP on loopback).
    pub bosh_urls: Vec<String>,
    /// Public wss:// URLs for XEP-0468 s2s. Empty: the wss:// URLs derived from the listeners.
    pub s2s_websocket_urls: Vec<String>,
    /// Public IP addresses for the XEP-0487 `ips` field. Empty: the HTTPS listeners' addresses
    /// when they are specific (not 0.0.0.0 / ::).
    pub ips: Vec<std::net::IpAddr>,
    /// XEP-0487 `xmpp.ttl`: how long peers may cache host-meta.json. Published with the
    /// XEP-0487 links (when addresses are known), which tells peers to skip SRV lookups.
    pub ttl: HumanDuration,
    /// XEP-0487 (RFC 2782) priority of the s2s WebSocket links: peers try lower first.
    pub s2s_websocket_priority: u16,
    /// XEP-0487 (RFC 2782) weight among s2s links of equal priority.
    pub s2s_websocket_weight: u16,
    /// XEP-0487 priority of the s2s Direct TLS links.
    pub s2s_tls_priority: u16,
    pub s2s_tls_weight: u16,
}

impl Default for HostMetaConfig {
    /// wss is preferred over Direct TLS: where weft serves it directly it is the transport
    /// that passes HTTPS-only networks and fronts.
    fn default() -> Self {
        HostMetaConfig {
            websocket_urls: Vec::new(),
            bosh_urls: Vec::new(),
            s2s_websocket_urls: Vec::new(),
            ips: Vec::new(),
            ttl: HumanDuration(Duration::from_secs(300)),
            s2s_websocket_priority: 10,
            s2s_websocket_weight: 50,
            s2s_tls_priority: 20,
            s2s_tls_weight: 50,
        }
    }
}

/// `[log]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter, e.g. "info" or "weft_server=debug,info". `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Reads, parses and validates a file; the first problem is the error.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_all(path).map_err(first)
    }

    /// Reads, parses and validates a file, reporting every problem found.
    pub fn load_all(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            vec![ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }]
        })?;
        Config::parse_all(&text)
    }

    /// Parses and validates TOML text; the first problem is the error.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_all(text).map_err(first)
    }

    /// Parses and validates TOML text, reporting every problem: a key that is unknown or has
    /// the wrong type is reported, set aside (its default applies) and the rest is read again,
    /// so one run names every wrong key. TOML syntax errors stop at the first (nothing after
    /// it can be trusted).
    pub fn parse_all(text: &str) -> Result<Config, Vec<ConfigError>> {
        match Config::check_text(text) {
            (Some(config), problems) if problems.is_empty() => Ok(config),
            (_, problems) => Err(problems),
        }
    }

    /// Every problem in TOML text, and the configuration that remains when the keys in error
    /// take their defaults (`None` when the TOML itself cannot be read), so that later checks
    /// (files, certificates, listeners) can still run on it.
    pub fn check_text(text: &str) -> (Option<Config>, Vec<ConfigError>) {
        let table: toml::Table = match text.parse() {
            Ok(table) => table,
            Err(e) => {
                let e: toml::de::Error = e;
                let error = ConfigError::Invalid {
                    key: locate(text, &e),
                    message: e.message().to_string(),
                };
                return (None, vec![error]);
            }
        };
        let (config, mut problems) = deserialize_all::<Config>(table, "");
        let Some(config) = config else {
            return (None, problems);
        };
        problems.extend(config.problems());
        (Some(config), problems)
    }

    /// Checks what types alone cannot; the first problem is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every problem that types alone cannot catch, each naming its key.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: &str| out.push(ConfigError::invalid(key, message));
        if self.server.domains.is_empty() {
            bad("server.domains", "at least one domain is required");
        }
        for (i, d) in self.server.domains.iter().enumerate() {
            if let Err(why) = check_domain(d) {
                bad(&format!("server.domains[{i}]"), &why);
            }
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            let key = if self.tls.cert.is_some() {
                "tls.key"
            } else {
                "tls.cert"
            };
            bad(key, "tls.cert and tls.key must be set together");
        }
        if self.c2s.max_auth_attempts == 0 {
            bad("c2s.max_auth_attempts", "must be at least 1");
        }
        if self.c2s.scram_iterations < 4096 {
            bad(
                "c2s.scram_iterations",
                "must be at least 4096 (RFC 7677 §4)",
            );
        }
        if !self.websocket.path.starts_with('/') {
            bad("websocket.path", "must start with '/'");
        }
        if self.websocket.ping_interval.0.is_zero() {
            bad("websocket.ping_interval", "must be more than 0s");
        }
        if let Some(uri) = &self.websocket.see_other_uri {
            if !(uri.starts_with("ws://") || uri.starts_with("wss://")) {
                bad(
                    "websocket.see_other_uri",
                    "must be a ws:// or wss:// URL (RFC 7395 §3.6.1)",
                );
            }
        }
        for (i, url) in self.host_meta.s2s_websocket_urls.iter().enumerate() {
            if !url.starts_with("wss://") {
                bad(
                    &format!("host_meta.s2s_websocket_urls[{i}]"),
                    "must be a wss:// URL (XEP-0468 requires TLS)",
                );
            }
        }
        if self.host_meta.ttl.0 > Duration::from_secs(u64::from(u16::MAX)) {
            // xmpp-proxy reads `xmpp.ttl` as a 16-bit number and, above it, drops the whole
            // document silently (found by hand against its 1.1.0): then it never uses wss.
            bad(
                "host_meta.ttl",
                "must be at most 65535s (18h12m15s): some peers read it as 16 bits and ignore host-meta.json above",
            );
        }
        for (i, url) in self.host_meta.websocket_urls.iter().enumerate() {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                bad(
                    &format!("host_meta.websocket_urls[{i}]"),
                    "must be a ws:// or wss:// URL",
                );
            }
        }
        let stanza = self.limits.max_stanza_size.0;
        if !(1024..=64 * 1024 * 1024).contains(&stanza) {
            bad(
                "limits.max_stanza_size",
                "must be between 1 KiB and 64 MiB (RFC 6120 §13.12 asks for at least 10000 bytes)",
            );
        }
        if self.limits.max_depth < 4 {
            bad("limits.max_depth", "must be at least 4");
        }
        if self.limits.max_connections_per_ip == 0 {
            bad("limits.max_connections_per_ip", "must be at least 1");
        }
        if self.limits.c2s_stanza_rate > 0 && self.limits.c2s_stanza_burst == 0 {
            bad(
                "limits.c2s_stanza_burst",
                "must be at least 1 when c2s_stanza_rate is set",
            );
        }
        if self.c2s.stream_management.max_unacked == 0 {
            bad("c2s.stream_management.max_unacked", "must be at least 1");
        }
        if self.limits.session_queue == 0 {
            bad("limits.session_queue", "must be at least 1");
        }
        for (key, message) in self.s2s.problems() {
            out.push(ConfigError::Invalid { key, message });
        }
        for (key, message) in self.bosh.problems(&self.websocket.path) {
            out.push(ConfigError::Invalid { key, message });
        }
        for (i, url) in self.host_meta.bosh_urls.iter().enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                out.push(ConfigError::invalid(
                    &format!("host_meta.bosh_urls[{i}]"),
                    "must be an http:// or https:// URL",
                ));
            }
        }
        for (key, message) in component::problems(&self.components, &self.server.domains) {
            out.push(ConfigError::Invalid { key, message });
        }
        out
    }

    /// Where the SQLite database lives.
    pub fn sqlite_path(&self) -> PathBuf {
        self.storage
            .sqlite_path
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("weft.sqlite"))
    }

    pub fn default_domain(&self) -> &str {
        &self.server.domains[0]
    }
}

/// Deserialises `table` into `T`, reporting every key that is unknown or has the wrong type:
/// each is reported, set aside (its default applies) and the rest is read again. Key paths are
/// prefixed with `prefix` (e.g. `modules.roster`). `None` when a key could not be set aside.
pub fn deserialize_all<T: serde::de::DeserializeOwned>(
    mut table: toml::Table,
    prefix: &str,
) -> (Option<T>, Vec<ConfigError>) {
    let mut problems = Vec::new();
    // Each round removes one key, so this ends; the bound guards against a key that cannot be
    // removed (it would be reported again and again).
    loop {
        let value = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(parsed) => return (Some(parsed), problems),
            Err(e) => {
                let (error, location) = key_error(e);
                let error = match error {
                    ConfigError::Invalid { key, message } if !prefix.is_empty() => {
                        ConfigError::Invalid {
                            key: format!("{prefix}.{key}"),
                            message,
                        }
                    }
                    other => other,
                };
                problems.push(error);
                if !remove(&mut table, &location) || problems.len() >= MAX_PROBLEMS {
                    return (None, problems);
                }
            }
        }
    }
}

/// More problems than this in one file are not worth listing.
const MAX_PROBLEMS: usize = 100;

fn first(mut problems: Vec<ConfigError>) -> ConfigError {
    problems.swap_remove(0)
}

/// A deserialisation error as a [`ConfigError`] naming the dotted key, and the location of the
/// offending entry in the table (the key path, without sequence indexes).
fn key_error(e: serde_path_to_error::Error<toml::de::Error>) -> (ConfigError, Vec<String>) {
    use serde_path_to_error::Segment;
    let mut location = Vec::new();
    let mut in_sequence = false;
    for segment in e.path().iter() {
        match segment {
            Segment::Map { key } if !in_sequence => location.push(key.clone()),
            // An entry of a list is removed with its whole list.
            Segment::Seq { .. } => in_sequence = true,
            _ => {}
        }
    }
    let path = e.path().to_string();
    let message = e.into_inner().message().to_string();
    let mut key = if path == "." { String::new() } else { path };
    // serde reports an unknown key at its parent table; name the key itself.
    if let Some(name) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        if key.is_empty() {
            key = name.to_string();
        } else if !key.ends_with(name) {
            key = format!("{key}.{name}");
        }
        if location.last().map(String::as_str) != Some(name) {
            location.push(name.to_string());
        }
    }
    if key.is_empty() {
        key = "(file)".into();
    }
    (ConfigError::Invalid { key, message }, location)
}

/// Removes the entry at `location`; false when there is none to remove.
fn remove(table: &mut toml::Table, location: &[String]) -> bool {
    let Some((last, parents)) = location.split_last() else {
        return false;
    };
    let mut current = table;
    for key in parents {
        match current.get_mut(key) {
            Some(toml::Value::Table(t)) => current = t,
            _ => return false,
        }
    }
    current.remove(last).is_some()
}

/// A light check of a DNS domain name as XMPP domainpart (RFC 7622 §3.2).
fn check_domain(d: &str) -> Result<(), String> {
    if d.is_empty() || d.len() > 1023 {
        return Err("a domain must be 1 to 1023 bytes".into());
    }
    if d.contains(['@', '/', ' ']) || d != d.to_lowercase() {
        return Err(format!("'{d}' is not a valid lowercase domain"));
    }
    Ok(())
}

/// For errors serde cannot place (TOML syntax), point at the line.
fn locate(text: &str, err: &toml::de::Error) -> String {
    match err.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].lines().count().max(1);
            format!("line {line}")
        }
        None => "(file)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_key(text: &str) -> String {
        match Config::parse(text) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid-key error, got {other:?}"),
        }
    }

    #[test]
    fn host_meta_ttl_fits_sixteen_bits() {
        assert_eq!(err_key("[host_meta]\nttl = \"1d\"\n"), "host_meta.ttl");
        assert!(Config::parse("[host_meta]\nttl = \"18h\"\n").is_ok());
    }

    #[test]
    fn empty_file_is_the_default() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.domains, vec!["localhost".to_string()]);
        assert_eq!(c.limits.max_stanza_size, ByteSize(262_144));
        assert_eq!(c.sqlite_path(), PathBuf::from("weft-data/weft.sqlite"));
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../../weft.example.toml");
        Config::parse(text).expect("weft.example.toml must stay valid");
    }

    #[test]
    fn human_units() {
        let c = Config::parse(
            "[limits]\nmax_stanza_size = \"64 KiB\"\n[websocket]\nping_interval = \"10s\"\n",
        )
        .unwrap();
        assert_eq!(c.limits.max_stanza_size.0, 65536);
        assert_eq!(c.websocket.ping_interval.0, Duration::from_secs(10));
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            err_key("[limits]\nmax_stanza_size = \"lots\"\n"),
            "limits.max_stanza_size"
        );
        assert_eq!(
            err_key("[limits]\nmax_stanza_sise = 5\n"),
            "limits.max_stanza_sise"
        );
        assert_eq!(
            err_key("[websocket]\nping_interval = \"30\"\n"),
            "websocket.ping_interval"
        );
        assert_eq!(err_key("[server]\ndomains = []\n"), "server.domains");
        assert_eq!(
            err_key("[server]\ndomains = [\"a\", \"B@x\"]\n"),
            "server.domains[1]"
        );
        assert_eq!(err_key("[tls]\ncert = \"/x.pem\"\n"), "tls.key");
        assert_eq!(
            err_key("[listen]\nhttp = [\"nonsense\"]\n"),
            "listen.http[0]"
        );
        assert_eq!(
            err_key("[websocket]\nsee_other_uri = \"http://x\"\n"),
            "websocket.see_other_uri"
        );
        assert_eq!(
            err_key("[bosh]\nsee_other_uri = \"wss://x\"\n"),
            "bosh.see_other_uri"
        );
        assert_eq!(err_key("[bosh]\nmax_hold = 2\n"), "bosh.max_hold");
        assert_eq!(err_key("[bosh]\npolling = \"90s\"\n"), "bosh.polling");
        assert_eq!(
            err_key("[host_meta]\nbosh_urls = [\"wss://x/y\"]\n"),
            "host_meta.bosh_urls[0]"
        );
        assert_eq!(
            err_key("[c2s]\nresource_conflict = \"maybe\"\n"),
            "c2s.resource_conflict"
        );
        // Host-meta is never fetched over plain HTTP, and s2s WebSocket is wss only.
        assert_eq!(
            err_key("[s2s.host_meta_base]\n\"b.test\" = \"http://127.0.0.1:8080\"\n"),
            "s2s.host_meta_base.b.test"
        );
        assert_eq!(
            err_key("[s2s.routes]\n\"b.test\" = [\"ws://127.0.0.1:8080/x\"]\n"),
            "s2s.routes.b.test[0]"
        );
        assert_eq!(
            err_key("[host_meta]\ns2s_websocket_urls = [\"ws://x/y\"]\n"),
            "host_meta.s2s_websocket_urls[0]"
        );
    }

    #[test]
    fn components_are_checked_by_key() {
        let ok = Config::parse(
            "[listen]\ncomponent = ['127.0.0.1:5347']\n\
             [[components]]\ndomain = 'gw.localhost'\nsecret = 's3cret'\n\
             [[components]]\ndomain = 'other.example'\nsecret = 'x'\nname = 'Other'\nconflict = 'replace'\n",
        )
        .unwrap();
        assert_eq!(ok.components.len(), 2);
        assert_eq!(ok.components[1].conflict, ComponentConflict::Replace);
        assert_eq!(ok.components[0].conflict, ComponentConflict::Reject);
        assert!(!format!("{:?}", ok.components[0]).contains("s3cret"));
        assert!(Config::parse("").unwrap().listen.component.is_empty());
        let one = |body: &str| err_key(&format!("[[components]]\n{body}"));
        assert_eq!(
            one("domain = 'localhost'\nsecret = 'x'\n"),
            "components[0].domain"
        );
        assert_eq!(
            one("domain = 'Gw.x'\nsecret = 'x'\n"),
            "components[0].domain"
        );
        assert_eq!(
            one("domain = 'gw.x'\nsecret = ''\n"),
            "components[0].secret"
        );
        assert_eq!(
            one("domain = 'gw.x'\nsecret = 'x'\nsecrte = 'y'\n"),
            "components[0].secrte"
        );
        assert_eq!(
            one("domain = 'gw.x'\nsecret = 'x'\nconflict = 'kick'\n"),
            "components[0].conflict"
        );
        assert_eq!(
            err_key("[[components]]\ndomain = 'gw.x'\nsecret = 'a'\n[[components]]\ndomain = 'gw.x'\nsecret = 'b'\n"),
            "components[1].domain"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let text = "[limits]\nmax_stanza_sise = 5\nmax_depth = 'deep'\n[websocket]\npath = 'x'\n\
                    [server]\ndomains = ['a', 'B@x']\n[bogus]\nx = 1\n[s2s]\nqueue_size = 0\n";
        let keys: Vec<String> = match Config::parse_all(text) {
            Err(problems) => problems
                .into_iter()
                .map(|e| match e {
                    ConfigError::Invalid { key, .. } => key,
                    other => panic!("{other:?}"),
                })
                .collect(),
            Ok(_) => panic!("accepted"),
        };
        for key in [
            "limits.max_stanza_sise",
            "limits.max_depth",
            "bogus",
            "websocket.path",
            "server.domains[1]",
            "s2s.queue_size",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
        assert_eq!(keys.len(), 6, "{keys:?}");
        // A syntax error is one problem, at its line.
        match Config::parse_all("[limits]\nmax_depth = = 3\n") {
            Err(p) => assert!(
                p.len() == 1 && p[0].to_string().starts_with("line 2"),
                "{p:?}"
            ),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn unknown_key_message_names_it() {
        match Config::parse("[limits]\nmax_stanza_sise = 5\n") {
            Err(e) => assert!(e.to_string().contains("max_stanza_sise"), "{e}"),
            Ok(_) => panic!("unknown key accepted"),
        }
    }
}
