//! What `weft run` prints once it listens: the configuration and data directory in use, every
//! listener as the URL or host:port a client or peer would use, and on a fresh install the one
//! next step. The README's sample is checked against this output (tests/cli.rs).

use std::net::SocketAddr;

use weft_config::Config;
use weft_server::RunningServer;

use crate::{ConfigFile, ConfigSource};

/// What the summary is made of.
pub struct Facts<'a> {
    pub config: &'a Config,
    pub source: &'a ConfigSource,
    pub running: &'a RunningServer,
    /// Accounts in the database.
    pub accounts: u64,
    /// How the operator runs weft again, with the same configuration (`weft -c FILE`).
    pub command: String,
}

/// The lines, in order.
pub fn summary(f: &Facts<'_>) -> Vec<String> {
    let config = f.config;
    let domain = config.default_domain();
    let ws_path = &config.websocket.path;
    let mut lines = vec![format!(
        "weft {}: serving {}",
        env!("CARGO_PKG_VERSION"),
        config.server.domains.join(", ")
    )];
    let mut row = |what: &str, value: String| lines.push(format!("  {what:<15} {value}"));
    row("configuration", f.source.to_string());
    row(
        "data directory",
        config.server.data_dir.display().to_string(),
    );
    row(
        "database",
        format!(
            "{} ({} account{})",
            config.sqlite_path().display(),
            f.accounts,
            if f.accounts == 1 { "" } else { "s" }
        ),
    );
    row(
        "certificate",
        match &config.tls.cert {
            Some(cert) => cert.display().to_string(),
            None => "self-signed, in the data directory (clients must accept it; \
                     set [tls] for a real one)"
                .into(),
        },
    );
    let host = |a: &SocketAddr| public_host(a, domain);
    let r = f.running;
    for a in &r.http {
        row("c2s WebSocket", format!("ws://{}{ws_path}", host(a)));
    }
    for a in &r.https {
        row("c2s WebSocket", format!("wss://{}{ws_path}", host(a)));
    }
    for a in &r.c2s {
        row("c2s TCP", format!("{} (STARTTLS)", host(a)));
    }
    for a in &r.c2s_direct_tls {
        row("c2s TCP", format!("{} (Direct TLS)", host(a)));
    }
    for a in &r.s2s {
        row("s2s TCP", format!("{} (STARTTLS)", host(a)));
    }
    for a in &r.s2s_direct_tls {
        row("s2s TCP", format!("{} (Direct TLS)", host(a)));
    }
    let components: Vec<&str> = config
        .components
        .iter()
        .map(|c| c.domain.as_str())
        .collect();
    for a in &r.component {
        row(
            "components",
            format!("{a} (XEP-0114: {})", components.join(", ")),
        );
    }
    if config.s2s.enabled {
        for a in &r.https {
            row("s2s WebSocket", format!("wss://{}{ws_path}", host(a)));
        }
    }
    for a in &r.http {
        row(
            "host-meta",
            format!("http://{}/.well-known/host-meta", host(a)),
        );
    }
    for a in &r.https {
        row(
            "host-meta",
            format!("https://{}/.well-known/host-meta", host(a)),
        );
    }
    if !config.s2s.enabled {
        row("federation", "off (s2s.enabled = false)".into());
    }
    if f.accounts == 0 {
        lines.push(format!(
            "next step: add an account with  {} user add alice@{domain}",
            f.command
        ));
    }
    lines
}

/// The host:port a client uses for a listener: the domain, as clients connect by name (and
/// TLS checks it), except on a loopback address when the domain is not `localhost` (only
/// this machine reaches it, by address).
fn public_host(addr: &SocketAddr, domain: &str) -> String {
    let ip = addr.ip();
    if ip.is_loopback() && domain != "localhost" {
        addr.to_string()
    } else {
        format!("{domain}:{}", addr.port())
    }
}

/// How this weft was started, to repeat in advice: the program as invoked (so that
/// `target/release/weft` stays runnable from the same directory) and the same `--config`.
pub fn command_line(file: &ConfigFile) -> String {
    let program = std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| a.contains('/'))
        .unwrap_or_else(|| "weft".into());
    match &file.config {
        Some(path) => format!("{program} -c {}", path.display()),
        None => program,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_as_clients_use_them() {
        let lo: SocketAddr = "127.0.0.1:5280".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:5222".parse().unwrap();
        let v6: SocketAddr = "[::1]:5443".parse().unwrap();
        assert_eq!(public_host(&lo, "localhost"), "localhost:5280");
        assert_eq!(public_host(&lo, "example.org"), "127.0.0.1:5280");
        assert_eq!(public_host(&v6, "example.org"), "[::1]:5443");
        assert_eq!(public_host(&any, "example.org"), "example.org:5222");
    }
}
