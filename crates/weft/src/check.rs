//! `weft config check [FILE]`: everything that can be checked without starting the server —
//! every key, the files the configuration names, the certificate against its key and the
//! domains, the data directory, listeners that would collide — reported all at once, each
//! with its key path.

use std::net::SocketAddr;
use std::path::Path;

use weft_config::{Config, ConfigError};
use weft_server::transport::tls_check;

/// One thing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: String,
    pub message: String,
    /// An error stops the server (or breaks a feature); a warning does not.
    pub error: bool,
}

impl Finding {
    fn error(key: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            key: key.into(),
            message: message.into(),
            error: true,
        }
    }
    fn warning(key: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            key: key.into(),
            message: message.into(),
            error: false,
        }
    }
}

/// Runs the check and prints what it found; fails when anything is an error.
pub fn run(file: Option<&Path>) -> anyhow::Result<()> {
    let (name, findings) = match file {
        Some(path) => (path.display().to_string(), check_file(path)),
        None => {
            let mut config = Config::default();
            config.server.data_dir = crate::absolute(&config.server.data_dir);
            ("embedded default".to_string(), check_config(&config))
        }
    };
    let errors = findings.iter().filter(|f| f.error).count();
    let warnings = findings.len() - errors;
    for f in &findings {
        let level = if f.error { "error" } else { "warning" };
        eprintln!("{level}: {}: {}", f.key, f.message);
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if errors > 0 {
        let mut summary = plural(errors, "error");
        if warnings > 0 {
            summary.push_str(&format!(", {}", plural(warnings, "warning")));
        }
        anyhow::bail!("{name}: {summary}");
    }
    if warnings > 0 {
        println!("{name}: ok, {}", plural(warnings, "warning"));
    } else {
        println!("{name}: ok");
    }
    Ok(())
}

/// Every finding for the file at `path`.
pub fn check_file(path: &Path) -> Vec<Finding> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return vec![Finding::error("(file)", format!("cannot read it: {e}"))],
    };
    let (config, problems) = Config::check_text(&text);
    let mut out: Vec<Finding> = problems.into_iter().map(from_config_error).collect();
    if let Some(mut config) = config {
        config.server.data_dir = crate::absolute(&config.server.data_dir);
        out.extend(check_config_files(&config));
    }
    out
}

/// Every finding for a configuration that parsed.
pub fn check_config(config: &Config) -> Vec<Finding> {
    let mut out: Vec<Finding> = config
        .problems()
        .into_iter()
        .map(from_config_error)
        .collect();
    out.extend(check_config_files(config));
    out
}

fn from_config_error(e: ConfigError) -> Finding {
    match e {
        ConfigError::Invalid { key, message } => Finding::error(key, message),
        other => Finding::error("(file)", other.to_string()),
    }
}

/// What the configuration points at: certificate, CA file, data directory, listeners.
fn check_config_files(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => {
            for f in tls_check::check_pair(cert, key, &config.server.domains) {
                out.push(Finding {
                    key: f.key.into(),
                    message: f.message,
                    error: f.fatal,
                });
            }
        }
        // One without the other is already reported by Config::problems.
        (Some(_), None) | (None, Some(_)) => {}
        (None, None) => out.push(Finding::warning(
            "tls",
            format!(
                "no certificate configured: weft uses a self-signed one for {} in the data \
                 directory. Clients must accept it by hand and federation peers cannot verify \
                 it (dialback only); set tls.cert and tls.key for a real one",
                config.server.domains.join(", ")
            ),
        )),
    }
    if let Some(ca) = &config.s2s.ca_file {
        match std::fs::read(ca) {
            Err(e) => out.push(Finding::error(
                "s2s.ca_file",
                format!("cannot read {}: {e}", ca.display()),
            )),
            Ok(pem) => {
                let certs = rustls_pemfile_count(&pem);
                if certs == 0 {
                    out.push(Finding::error(
                        "s2s.ca_file",
                        format!("no PEM certificate in {}", ca.display()),
                    ));
                }
            }
        }
    }
    match weft_server::modules::load(config) {
        Err(problems) => out.extend(problems.into_iter().map(from_config_error)),
        Ok(modules) => out.extend(check_components(config, &modules)),
    }
    out.extend(check_data_dir(config));
    out.extend(check_listeners(config));
    out
}

/// XEP-0114 components: a domain a module's service already has, a listener missing or open
/// beyond this machine (the stream is plain TCP).
fn check_components(config: &Config, modules: &weft_server::modules::Modules) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, c) in config.components.iter().enumerate() {
        let taken = config
            .server
            .domains
            .iter()
            .flat_map(|d| modules.service_items(d))
            .find(|(jid, _)| *jid == c.domain);
        if let Some((_, name)) = taken {
            out.push(Finding::error(
                format!("components[{i}].domain"),
                format!("{} is the JID of the module service '{name}'", c.domain),
            ));
        }
    }
    if !config.components.is_empty() && config.listen.component.is_empty() {
        out.push(Finding::warning(
            "listen.component",
            "components are configured but no listener for them: they cannot connect",
        ));
    }
    for (i, a) in config.listen.component.iter().enumerate() {
        if !a.ip().is_loopback() {
            out.push(Finding::warning(
                format!("listen.component[{i}]"),
                format!(
                    "{a} is reachable from other machines; component streams are plain TCP \
                     (XEP-0114), keep them on loopback or a private network"
                ),
            ));
        }
    }
    out
}

/// Counts the PEM certificate blocks (the server parses them; here presence is enough).
fn rustls_pemfile_count(pem: &[u8]) -> usize {
    String::from_utf8_lossy(pem)
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

fn check_data_dir(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let dir = &config.server.data_dir;
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => out.push(Finding::error(
            "server.data_dir",
            format!("{} exists and is not a directory", dir.display()),
        )),
        Ok(meta) => {
            if meta.permissions().readonly() {
                out.push(Finding::error(
                    "server.data_dir",
                    format!("{} is not writable", dir.display()),
                ));
            }
            for exposed in weft_storage::private::exposure(dir) {
                out.push(Finding::warning(
                    "server.data_dir",
                    format!(
                        "{} is readable by other users (mode {:o}); it holds credentials and \
                         keys. Fix: {}",
                        exposed.path.display(),
                        exposed.mode,
                        weft_storage::private::fix_command(dir)
                    ),
                ));
            }
        }
        // Created (0700) at first start; its nearest existing ancestor must let us.
        Err(_) => {
            let existing = dir.ancestors().skip(1).find(|a| a.exists());
            if let Some(a) = existing.filter(|a| !a.is_dir()) {
                out.push(Finding::error(
                    "server.data_dir",
                    format!("cannot be created: {} is not a directory", a.display()),
                ));
            }
        }
    }
    if let Some(db) = &config.storage.sqlite_path {
        if db.is_dir() {
            out.push(Finding::error(
                "storage.sqlite_path",
                format!("{} is a directory", db.display()),
            ));
        }
    }
    out
}

/// Two listeners on one port collide when their addresses overlap: the same address, or an
/// unspecified one (0.0.0.0, or [::], which also takes IPv4 on a dual-stack host) with any.
fn check_listeners(config: &Config) -> Vec<Finding> {
    let l = &config.listen;
    let mut all: Vec<(String, SocketAddr)> = Vec::new();
    let mut add = |name: &str, addrs: &[SocketAddr]| {
        for (i, a) in addrs.iter().enumerate() {
            all.push((format!("listen.{name}[{i}]"), *a));
        }
    };
    add("http", &l.http);
    add("https", &l.https);
    add("c2s", &l.c2s);
    add("c2s_direct_tls", &l.c2s_direct_tls);
    if config.s2s.enabled {
        add("s2s", &l.s2s);
        add("s2s_direct_tls", &l.s2s_direct_tls);
    }
    add("component", &l.component);
    let mut out = Vec::new();
    for (i, (key, a)) in all.iter().enumerate() {
        if a.port() == 0 {
            continue;
        }
        if let Some((earlier, _)) = all[..i].iter().find(|(_, b)| overlap(a, b)) {
            out.push(Finding::error(
                key.clone(),
                format!("{a} collides with {earlier} (the same port on an overlapping address)"),
            ));
        }
    }
    out
}

fn overlap(a: &SocketAddr, b: &SocketAddr) -> bool {
    if a.port() != b.port() {
        return false;
    }
    let (x, y) = (a.ip(), b.ip());
    let v6_any = |ip: std::net::IpAddr| ip.is_ipv6() && ip.is_unspecified();
    x == y
        || v6_any(x)
        || v6_any(y)
        || (x.is_unspecified() && x.is_ipv4() == y.is_ipv4())
        || (y.is_unspecified() && x.is_ipv4() == y.is_ipv4())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<(String, bool)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.toml");
        let text = format!(
            "[server]\ndata_dir = '{}'\n{text}",
            dir.path().join("data").display()
        );
        std::fs::write(&path, text).unwrap();
        check_file(&path)
            .into_iter()
            .map(|f| (f.key, f.error))
            .collect()
    }

    #[test]
    fn listeners_that_collide() {
        let found = keys(
            "[listen]\nhttp = ['127.0.0.1:5280']\nhttps = ['0.0.0.0:5280']\n\
             c2s = ['[::]:5222']\nc2s_direct_tls = ['127.0.0.1:5222']\n\
             s2s = ['127.0.0.1:0', '127.0.0.1:0']\ns2s_direct_tls = ['[::1]:5280']\n",
        );
        let errors: Vec<&str> = found
            .iter()
            .filter(|(_, e)| *e)
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(errors, ["listen.https[0]", "listen.c2s_direct_tls[0]"]);
    }

    #[test]
    fn missing_files_and_wrong_keys_all_reported() {
        let found = keys(
            "[tls]\ncert = '/nonexistent/cert.pem'\nkey = '/nonexistent/key.pem'\n\
             [s2s]\nca_file = '/nonexistent/ca.pem'\n[limits]\nmax_depht = 3\nmax_stanza_size = 'big'\n",
        );
        let errors: Vec<&str> = found
            .iter()
            .filter(|(_, e)| *e)
            .map(|(k, _)| k.as_str())
            .collect();
        for key in [
            "tls.cert",
            "tls.key",
            "s2s.ca_file",
            "limits.max_depht",
            "limits.max_stanza_size",
        ] {
            assert!(errors.contains(&key), "{key} not in {errors:?}");
        }
    }

    #[test]
    fn components_are_checked() {
        // The upload module's service is upload.localhost; the component listener collides
        // with c2s and is open to the network; and [[components]] without a listener.
        let found = keys(
            "[listen]\nc2s = ['127.0.0.1:5222']\ncomponent = ['0.0.0.0:5222']\n\
             [[components]]\ndomain = 'upload.localhost'\nsecret = 'x'\n",
        );
        assert!(
            found.contains(&("components[0].domain".into(), true)),
            "{found:?}"
        );
        assert!(
            found.contains(&("listen.component[0]".into(), true)),
            "{found:?}"
        );
        assert!(
            found.contains(&("listen.component[0]".into(), false)),
            "{found:?}"
        );
        let found = keys("[[components]]\ndomain = 'gw.localhost'\nsecret = 'x'\n");
        assert!(
            found.contains(&("listen.component".into(), false)),
            "{found:?}"
        );
        assert!(!found.iter().any(|(_, e)| *e), "{found:?}");
    }

    #[test]
    fn the_default_warns_about_its_self_signed_certificate() {
        let found = keys("");
        assert_eq!(found, vec![("tls".to_string(), false)]);
    }
}
