//! XEP-0156 host-meta: `/.well-known/host-meta` (XRD, RFC 6415) and `host-meta.json` (JRD),
//! generated from configuration. Only these two resources carry `Access-Control-Allow-Origin: *`
//! (XEP-0156 §3.2), so browser clients on other origins can discover the endpoint.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::state::ServerState;

/// XEP-0156 link relation for RFC 7395 endpoints.
pub const REL_WEBSOCKET: &str = "urn:xmpp:alt-connections:websocket";

/// The domain a host-meta request is about: its Host header when we serve it, else the default.
fn domain_of(state: &ServerState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| strip_port(h).to_ascii_lowercase());
    match host {
        Some(h) if state.is_local_domain(&h) => h,
        _ => state.config.default_domain().to_string(),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map(|h| &h[1..]).unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// The WebSocket URLs to advertise for `domain`: the configured public ones, else one per
/// listener (ws:// only for loopback listeners, which serve local development).
pub fn websocket_urls(state: &ServerState, domain: &str) -> Vec<String> {
    let cfg = &state.config;
    if !cfg.host_meta.websocket_urls.is_empty() {
        return cfg.host_meta.websocket_urls.clone();
    }
    let path = &cfg.websocket.path;
    let mut urls: Vec<String> = cfg
        .listen
        .https
        .iter()
        .map(|a| format!("wss://{domain}:{}{path}", a.port()))
        .collect();
    urls.extend(
        cfg.listen
            .http
            .iter()
            .filter(|a| a.ip().is_loopback())
            .map(|a| format!("ws://{domain}:{}{path}", a.port())),
    );
    urls
}

fn with_cors(content_type: &'static str, body: String) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

pub async fn xrd(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    let domain = domain_of(&state, &headers);
    let mut body = String::from(
        "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n",
    );
    for url in websocket_urls(&state, &domain) {
        body.push_str(&format!(
            "  <Link rel='{REL_WEBSOCKET}' href='{}'/>\n",
            weft_xml::escape(&url)
        ));
    }
    body.push_str("</XRD>\n");
    with_cors("application/xrd+xml; charset=utf-8", body)
}

pub async fn jrd(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    let domain = domain_of(&state, &headers);
    let links: Vec<serde_json::Value> = websocket_urls(&state, &domain)
        .into_iter()
        .map(|href| serde_json::json!({ "rel": REL_WEBSOCKET, "href": href }))
        .collect();
    let body = serde_json::json!({ "subject": domain, "links": links }).to_string();
    with_cors("application/json", body)
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn host_header_ports() {
        assert_eq!(strip_port("localhost:5280"), "localhost");
        assert_eq!(strip_port("example.org"), "example.org");
        assert_eq!(strip_port("[::1]:5443"), "::1");
    }
}
