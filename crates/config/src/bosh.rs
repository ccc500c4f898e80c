//! `[bosh]`: XEP-0124 / XEP-0206 BOSH endpoint settings — the server-side limits every
//! session's `wait`, `hold` and `requests` are capped to, and the timers it enforces.

use std::time::Duration;

use serde::Deserialize;

use crate::HumanDuration;

/// `[bosh]`: BOSH (XMPP over HTTP long polling) on the HTTP and HTTPS listeners.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoshConfig {
    /// Serve BOSH at `path`; on by default like the WebSocket endpoint.
    pub enabled: bool,
    /// URL path of the endpoint.
    pub path: String,
    /// Longest a request is held waiting for stanzas; a client's `wait` is capped to it.
    pub max_wait: HumanDuration,
    /// Most requests held at once (XEP-0124 `hold`); a client's `hold` is capped to it.
    pub max_hold: u32,
    /// Most simultaneous requests (`requests`): the rid window.
    pub max_requests: u32,
    /// A session with no request for this long ends (or hibernates under XEP-0198).
    pub inactivity: HumanDuration,
    /// Shortest allowed interval between two empty polls (XEP-0124 §12).
    pub polling: HumanDuration,
    /// Most BOSH sessions at once on this node.
    pub max_sessions: usize,
    /// Allowed `Origin` values for CORS; unset: the same as `websocket.allowed_origins`
    /// (empty there allows any origin).
    pub allowed_origins: Option<Vec<String>>,
    /// When set, sessions the server ends (shutdown, drain) are terminated with
    /// `see-other-uri` and this http:// or https:// URL; never used to send an https session
    /// to http.
    pub see_other_uri: Option<String>,
}

impl Default for BoshConfig {
    fn default() -> Self {
        BoshConfig {
            enabled: true,
            path: "/http-bind".into(),
            max_wait: HumanDuration(Duration::from_secs(60)),
            max_hold: 1,
            max_requests: 2,
            inactivity: HumanDuration(Duration::from_secs(60)),
            polling: HumanDuration(Duration::from_secs(2)),
            max_sessions: 10_000,
            allowed_origins: None,
            see_other_uri: None,
        }
    }
}

impl BoshConfig {
    /// Every problem types alone cannot catch, as (key path, message).
    pub(crate) fn problems(&self, websocket_path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |k: &str, m: &str| out.push((format!("bosh.{k}"), m.to_string()));
        if !self.path.starts_with('/') {
            bad("path", "must start with '/'");
        } else if self.enabled && self.path == websocket_path {
            bad("path", "must differ from websocket.path");
        }
        if self.max_wait.0 < Duration::from_secs(1) {
            bad("max_wait", "must be at least 1s");
        }
        if self.max_requests < 1 || self.max_requests > 16 {
            bad("max_requests", "must be between 1 and 16");
        } else if self.max_hold >= self.max_requests {
            // XEP-0124 §7.1: `requests` must exceed `hold` so the client can always send.
            bad("max_hold", "must be less than max_requests (XEP-0124 §7.1)");
        }
        if self.inactivity.0 < Duration::from_secs(1) {
            bad("inactivity", "must be at least 1s");
        }
        if self.polling.0 >= self.inactivity.0 {
            bad("polling", "must be shorter than inactivity");
        }
        if self.max_sessions == 0 {
            bad("max_sessions", "must be at least 1");
        }
        if let Some(uri) = &self.see_other_uri {
            if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                bad(
                    "see_other_uri",
                    "must be an http:// or https:// URL (XEP-0124 §17.3 see-other-uri)",
                );
            }
        }
        out
    }
}
