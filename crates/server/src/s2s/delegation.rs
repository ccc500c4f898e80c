//! Incoming certificate delegation (XEP-0468 §5 with XEP-0487): a domain whose XMPP service
//! sits behind someone else's TLS front publishes, in its own host-meta, the name that front's
//! certificate carries (the `sni` of its s2s links). A peer whose certificate is valid for
//! such a name is accepted for that domain. The host-meta must come over HTTPS verified for
//! the domain itself (the same discovery and cache as outgoing links); nothing else widens
//! what an incoming certificate is accepted for.

use weft_discovery::EndpointKind;

use crate::state::ServerState;

/// The names `domain`'s host-meta delegates its s2s links to (their XEP-0487 `sni`), or why
/// there are none.
pub async fn delegated_names(state: &ServerState, domain: &str) -> Result<Vec<String>, String> {
    let host_meta = state
        .s2s
        .discovery
        .host_meta(domain)
        .await
        .map_err(|e| format!("no host-meta: {e}"))?;
    if !host_meta.verified_via_https {
        return Err("its host-meta did not come over verified HTTPS".into());
    }
    let mut names: Vec<String> = Vec::new();
    for endpoint in &host_meta.doc.endpoints {
        if !matches!(
            endpoint.kind,
            EndpointKind::S2sWebSocket | EndpointKind::S2sDirectTls
        ) {
            continue;
        }
        if let Some(sni) = &endpoint.sni {
            if sni != domain && !names.contains(sni) {
                names.push(sni.clone());
            }
        }
    }
    if names.is_empty() {
        return Err(format!(
            "its host-meta ({}) names no other host for its s2s links",
            host_meta.url
        ));
    }
    Ok(names)
}
