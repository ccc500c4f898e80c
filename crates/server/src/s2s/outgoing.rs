//! One outgoing link's task: set up the link for the first queued stanza, then carry the queue
//! in order until the link idles out. On failure, every queued stanza that deserves an answer
//! gets `remote-server-not-found` or `remote-server-timeout` back; nothing vanishes silently.

use std::sync::Arc;

use minidom::Element;
use tokio::sync::mpsc;

use super::link::{self, Link};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::framing::Incoming;
use crate::ns;
use crate::session::rate::StanzaBudget;
use crate::state::ServerState;

/// Stanzas written per flush.
const WRITE_BATCH: usize = 64;

pub(super) async fn run(
    state: Arc<ServerState>,
    local: String,
    remote: String,
    pool_id: u64,
    mut rx: mpsc::Receiver<Element>,
) {
    let timeout = state.config.s2s.connect_timeout.0;
    let established = tokio::select! {
        r = tokio::time::timeout(timeout, link::establish(&state, &local, &remote)) => r,
        _ = state.shutdown.cancelled() => return,
    };
    let mut link = match established {
        Ok(Ok(link)) => link,
        Ok(Err(e)) => {
            tracing::info!(%local, %remote, "s2s link failed: {e}");
            state.s2s.forget(&local, &remote, pool_id);
            bounce_all(&state, &mut rx, e.condition(), &e.to_string()).await;
            return;
        }
        Err(_) => {
            tracing::info!(%local, %remote, "s2s link timed out");
            state.s2s.forget(&local, &remote, pool_id);
            bounce_all(
                &state,
                &mut rx,
                StanzaErrorCondition::RemoteServerTimeout,
                "the remote server did not answer in time",
            )
            .await;
            return;
        }
    };
    let idle = state.config.s2s.idle_timeout.0;
    // What a bidirectional link's peer sends us is paced like an incoming link's stanzas.
    let limits = &state.config.limits;
    let mut budget = StanzaBudget::new(limits.s2s_stanza_rate, limits.s2s_stanza_burst);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                link.framed.close(false, None).await;
                return;
            }
            next = tokio::time::timeout(idle, rx.recv()) => match next {
                Ok(Some(first)) => {
                    if let Err(e) = write_batch(&mut link, first, &mut rx).await {
                        tracing::info!(%local, %remote, "s2s link broke: {e}");
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::debug!(%local, %remote, "s2s link idle; closing");
                    break;
                }
            },
            incoming = link.framed.recv() => match incoming {
                // RFC 6120 §4.9: the peer ended the stream; the link is over.
                Ok(Incoming::Element(el)) if el.is("error", ns::STREAM) => {
                    let condition = el.children().next().map(|c| c.name().to_string()).unwrap_or_default();
                    tracing::info!(%local, %remote, "peer sent stream error <{condition}/>");
                    break;
                }
                // A bidirectional link (XEP-0288) carries the peer's stanzas too; otherwise an
                // outgoing stream carries nothing to us but dialback answers.
                Ok(Incoming::Element(el)) if link.bidi => {
                    let name = el.name().to_string();
                    if !from_peer(&state, &local, &remote, el).await {
                        tracing::info!(%local, %remote, "the peer sent <{name}/> it may not send on this link; closing it");
                        break;
                    }
                    if let Some(until) = budget.spend() {
                        tokio::time::sleep_until(until).await;
                    }
                }
                Ok(Incoming::Element(el)) => tracing::debug!(%remote, "ignored on outgoing stream: {}", el.name()),
                Ok(_) | Err(_) => {
                    tracing::info!(%local, %remote, "the peer closed the s2s link");
                    break;
                }
            }
        }
    }
    link.framed.close(false, None).await;
    requeue(&state, &local, &remote, pool_id, rx).await;
}

/// A link ended: new stanzas go to a new link from now on, and what is still queued is re-sent
/// through it.
pub(super) async fn requeue(
    state: &Arc<ServerState>,
    local: &str,
    remote: &str,
    pool_id: u64,
    mut rx: mpsc::Receiver<Element>,
) {
    state.s2s.forget(local, remote, pool_id);
    rx.close();
    while let Ok(stanza) = rx.try_recv() {
        if let Err(refused) = super::S2s::send(state, local, remote, stanza) {
            let (err, stanza) = *refused;
            bounce(state, &stanza, err).await;
        }
    }
}

/// XEP-0288: a stanza the peer sent back over our bidirectional link, accepted when it comes
/// from the domain the link is authenticated for (the 'to' of our stream) to this one.
async fn from_peer(state: &Arc<ServerState>, local: &str, remote: &str, el: Element) -> bool {
    if crate::stanza::Kind::of(&el, ns::SERVER).is_none() {
        return false;
    }
    let from_ok = el
        .attr("from")
        .and_then(|f| jid::Jid::new(f).ok())
        .is_some_and(|f| f.domain().as_str() == remote);
    let to_ok = el
        .attr("to")
        .and_then(|t| jid::Jid::new(t).ok())
        .is_some_and(|t| t.domain().as_str() == local);
    if !from_ok || !to_ok {
        return false;
    }
    let el = weft_xml::with_namespace(&el, ns::SERVER, ns::CLIENT);
    crate::router::deliver_local(state, el).await;
    true
}

async fn write_batch(
    link: &mut Link,
    first: Element,
    rx: &mut mpsc::Receiver<Element>,
) -> std::io::Result<()> {
    link.framed.queue(&to_server_ns(&first));
    for _ in 1..WRITE_BATCH {
        match rx.try_recv() {
            Ok(el) => link.framed.queue(&to_server_ns(&el)),
            Err(_) => break,
        }
    }
    link.framed.flush().await
}

/// Stanzas from local clients are in jabber:client; on s2s they travel in jabber:server.
pub(super) fn to_server_ns(el: &Element) -> Element {
    if el.has_ns(ns::CLIENT) {
        weft_xml::with_namespace(el, ns::CLIENT, ns::SERVER)
    } else {
        el.clone()
    }
}

async fn bounce_all(
    state: &Arc<ServerState>,
    rx: &mut mpsc::Receiver<Element>,
    condition: StanzaErrorCondition,
    text: &str,
) {
    rx.close();
    while let Some(stanza) = rx.recv().await {
        bounce(state, &stanza, StanzaError::new(condition).with_text(text)).await;
    }
}

/// Returns a stanza error to the local sender (RFC 6120 §8.3.1).
async fn bounce(state: &Arc<ServerState>, stanza: &Element, err: StanzaError) {
    let Some(reply) = err.reply_to(stanza) else {
        return;
    };
    crate::router::deliver_local(state, reply).await;
}
