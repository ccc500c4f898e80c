//! `[[components]]`: XEP-0114 external components — the domain each may serve and the secret
//! it proves with its handshake. Where they connect is `listen.component`.

use serde::Deserialize;

/// What happens when a component connects (with the right secret) for a domain that another
/// connection already serves.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ComponentConflict {
    /// The newcomer gets `<conflict/>`; the connected one stays (Prosody's `kick_new`).
    #[default]
    Reject,
    /// The connected one gets `<conflict/>` and the newcomer takes over (Prosody's
    /// `kick_old`): for components that reconnect before their old TCP connection is seen
    /// to be dead.
    Replace,
}

/// One external component.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// The component's domain (e.g. "gateway.example.org"): every JID at it is routed to the
    /// component, and the component may send from JIDs at it only.
    pub domain: String,
    /// The shared secret of the XEP-0114 handshake (SHA-1 of the stream id and this).
    pub secret: String,
    /// The name the server's disco#items shows for it.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub conflict: ComponentConflict,
}

/// The secret stays out of logs and `Debug` output.
impl std::fmt::Debug for ComponentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentConfig")
            .field("domain", &self.domain)
            .field("secret", &"<hidden>")
            .field("name", &self.name)
            .field("conflict", &self.conflict)
            .finish()
    }
}

/// Every problem of `[[components]]` types alone cannot catch, as (key path, message).
pub(crate) fn problems(components: &[ComponentConfig], hosted: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, c) in components.iter().enumerate() {
        let key = |k: &str| format!("components[{i}].{k}");
        if let Err(why) = crate::check_domain(&c.domain) {
            out.push((key("domain"), why));
        } else if hosted.contains(&c.domain) {
            out.push((
                key("domain"),
                format!(
                    "'{}' is one of server.domains; a component needs a domain of its own",
                    c.domain
                ),
            ));
        } else if components[..i].iter().any(|o| o.domain == c.domain) {
            out.push((key("domain"), format!("'{}' is configured twice", c.domain)));
        }
        if c.secret.is_empty() {
            out.push((key("secret"), "must not be empty (XEP-0114 §3)".into()));
        }
    }
    out
}
