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
/// XEP-0156 link relation for XEP-0206 BOSH endpoints.
pub const REL_BOSH: &str = "urn:xmpp:alt-connections:xbosh";
/// XEP-0468 / XEP-0487 link relation for s2s WebSocket endpoints.
pub const REL_S2S_WEBSOCKET: &str = "urn:xmpp:alt-connections:s2s-websocket";
/// XEP-0487 link relation for s2s Direct TLS (XEP-0368).
pub const REL_S2S_TLS: &str = "urn:xmpp:alt-connections:s2s-tls";

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
    listener_urls(state, domain, ("wss", "ws"), &cfg.websocket.path)
}

/// The BOSH URLs to advertise for `domain`, chosen like the WebSocket ones (https:// per
/// HTTPS listener, http:// only on loopback); none while BOSH is off.
pub fn bosh_urls(state: &ServerState, domain: &str) -> Vec<String> {
    let cfg = &state.config;
    if !cfg.bosh.enabled {
        return Vec::new();
    }
    if !cfg.host_meta.bosh_urls.is_empty() {
        return cfg.host_meta.bosh_urls.clone();
    }
    listener_urls(state, domain, ("https", "http"), &cfg.bosh.path)
}

/// One URL per HTTPS listener with the secure scheme, and one per loopback HTTP listener
/// (local development) with the plain one.
fn listener_urls(
    state: &ServerState,
    domain: &str,
    (secure, plain): (&str, &str),
    path: &str,
) -> Vec<String> {
    let listen = &state.config.listen;
    let secure_urls = listen
        .https
        .iter()
        .map(|a| format!("{secure}://{domain}:{}{path}", a.port()));
    let plain_urls = listen
        .http
        .iter()
        .filter(|a| a.ip().is_loopback())
        .map(|a| format!("{plain}://{domain}:{}{path}", a.port()));
    secure_urls.chain(plain_urls).collect()
}

/// XEP-0468 endpoints: configured, else wss:// per HTTPS listener (never ws://: wss is
/// mandatory for s2s).
pub fn s2s_websocket_urls(state: &ServerState, domain: &str) -> Vec<String> {
    let cfg = &state.config;
    if !cfg.s2s.enabled {
        return Vec::new();
    }
    if !cfg.host_meta.s2s_websocket_urls.is_empty() {
        return cfg.host_meta.s2s_websocket_urls.clone();
    }
    let path = &cfg.websocket.path;
    cfg.listen
        .https
        .iter()
        .map(|a| format!("wss://{domain}:{}{path}", a.port()))
        .collect()
}

/// XEP-0487 `ips`: configured, else the specific addresses the HTTPS listeners are bound to.
fn advertised_ips(state: &ServerState) -> Vec<String> {
    let cfg = &state.config;
    if !cfg.host_meta.ips.is_empty() {
        return cfg.host_meta.ips.iter().map(|ip| ip.to_string()).collect();
    }
    let mut ips: Vec<String> = cfg
        .listen
        .https
        .iter()
        .filter(|a| !a.ip().is_unspecified())
        .map(|a| a.ip().to_string())
        .collect();
    ips.dedup();
    ips
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
    for url in bosh_urls(&state, &domain) {
        body.push_str(&format!(
            "  <Link rel='{REL_BOSH}' href='{}'/>\n",
            weft_xml::escape(&url)
        ));
    }
    for url in s2s_websocket_urls(&state, &domain) {
        body.push_str(&format!(
            "  <Link rel='{REL_S2S_WEBSOCKET}' href='{}'/>\n",
            weft_xml::escape(&url)
        ));
    }
    body.push_str("</XRD>\n");
    with_cors("application/xrd+xml; charset=utf-8", body)
}

pub async fn jrd(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    let domain = domain_of(&state, &headers);
    let mut links: Vec<serde_json::Value> = websocket_urls(&state, &domain)
        .into_iter()
        .map(|href| serde_json::json!({ "rel": REL_WEBSOCKET, "href": href }))
        .collect();
    links.extend(
        bosh_urls(&state, &domain)
            .into_iter()
            .map(|href| serde_json::json!({ "rel": REL_BOSH, "href": href })),
    );
    // XEP-0487 fields make the s2s links usable by peers that require them (xmpp-proxy picks
    // wss only when they are present); they need the addresses to connect to.
    let ips = advertised_ips(&state);
    let hm = &state.config.host_meta;
    let mut s2s_links = Vec::new();
    for href in s2s_websocket_urls(&state, &domain) {
        let mut link = serde_json::json!({ "rel": REL_S2S_WEBSOCKET, "href": href });
        if !ips.is_empty() {
            link["ips"] = serde_json::json!(ips);
            link["priority"] = serde_json::json!(hm.s2s_websocket_priority);
            link["weight"] = serde_json::json!(hm.s2s_websocket_weight);
            link["sni"] = serde_json::json!(domain);
        }
        s2s_links.push((hm.s2s_websocket_priority, link));
    }
    if state.config.s2s.enabled && !ips.is_empty() {
        for a in &state.config.listen.s2s_direct_tls {
            let link = serde_json::json!({
                "rel": REL_S2S_TLS, "port": a.port(), "ips": ips,
                "priority": hm.s2s_tls_priority, "weight": hm.s2s_tls_weight, "sni": domain,
            });
            s2s_links.push((hm.s2s_tls_priority, link));
        }
    }
    // In priority order too, for readers that take the first link (stable: equal priorities
    // keep their order).
    s2s_links.sort_by_key(|(priority, _)| *priority);
    links.extend(s2s_links.into_iter().map(|(_, link)| link));
    let mut doc = serde_json::json!({ "subject": domain, "links": links });
    if state.config.s2s.enabled && !ips.is_empty() {
        // XEP-0487: the top-level object marks the links as complete (peers skip SRV).
        doc["xmpp"] = serde_json::json!({ "ttl": state.config.host_meta.ttl.0.as_secs() });
    }
    let body = doc.to_string();
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
