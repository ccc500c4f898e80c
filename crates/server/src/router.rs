//! The delivery decision (RFC 6121 §8.5): to the server's modules, to local sessions, or to
//! s2s. For local clients, replies for the sender are returned, not sent, so the sender's task
//! writes them itself; for stanzas from elsewhere (s2s, bounces) replies are routed on.

use std::borrow::Borrow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use rxml::xml_ncname;

use crate::error::{StanzaError, StanzaErrorCondition};
use crate::modules::{Flow, IqOutcome, IqRequest, StanzaEvent, StanzaHook, StanzaText};
use crate::session::registry::{DeliveryError, Handed};
use crate::stanza::{self, bare_part, Kind};
use crate::state::ServerState;

/// Routes a stanza whose 'from' was already stamped with the sender's full JID. Returns the
/// stanzas to write back to the sender (errors, IQ results, reflected presence).
pub async fn route_from_client(
    state: &Arc<ServerState>,
    stanza: Element,
    kind: Kind,
    from: &FullJid,
) -> Vec<Element> {
    // Modules that look at a client's messages or presence first; when none is concerned with
    // this sender, nothing is parsed here and the fast path below stays as it is.
    let hook = StanzaHook::from_local(kind).filter(|h| {
        state.modules.wants(*h) && state.modules.concerned(*h, bare_part(from.as_str()))
    });
    let mut text = None;
    let (stanza, to_sender, to) = match hook {
        Some(hook) => match from_local_hook(state, hook, stanza, kind, from, &mut text).await {
            Ok(passed) => passed,
            Err(replies) => return replies,
        },
        None => (stanza, Vec::new(), None),
    };
    if !to_sender.is_empty() {
        let replies = Box::pin(route_on(state, stanza, kind, from, to, text)).await;
        return joined(to_sender, replies);
    }
    route_on(state, stanza, kind, from, to, text).await
}

/// Routing proper, once the modules let a client's stanza through. `to`: its 'to' if the
/// modules' hook parsed it already; `text`: the stanza's text, if a module left it
/// (`StanzaEvent::text`).
async fn route_on(
    state: &Arc<ServerState>,
    stanza: Element,
    kind: Kind,
    from: &FullJid,
    to: Option<Jid>,
    text: Option<StanzaText>,
) -> Vec<Element> {
    // A module concerned with the addressee (its carbons, its blocklist, its archive) sees
    // the stanza before delivery, on the way that parses 'to'.
    let to_hook = StanzaHook::to_local(kind);
    let hooked = state.modules.wants(to_hook)
        && stanza
            .attr("to")
            .is_some_and(|to| state.modules.concerned(to_hook, bare_part(to)));
    // The usual case: 'to' is, byte for byte, the JID of a bound local session. Then it is a
    // valid normalised JID and parsing it (nodeprep, nameprep, resourceprep: ~4% of the CPU
    // per routed message at 10 pairs) would only give the same JID back.
    let stanza = if hooked {
        stanza
    } else {
        match state.sessions.deliver_to_addressee(stanza) {
            // A session that is ending counts as none: its stanzas go where those for a
            // resource that went away go (RFC 6121 §8.5.3.2), not back as errors.
            Handed::NoSession(stanza) | Handed::Refused(DeliveryError::Gone, stanza) => stanza,
            handed => return replies_for(handed),
        }
    };
    // One call for both ways: a second (boxed, to keep this future small) cost a large
    // allocation and copy per hooked message.
    route_parsed(state, stanza, kind, from, to, text).await
}

/// A client's stanza whose 'to' is not a bound session as written: parsed (unless `parsed`
/// is its 'to' already) and routed by the decision table.
async fn route_parsed(
    state: &Arc<ServerState>,
    stanza: Element,
    kind: Kind,
    from: &FullJid,
    parsed: Option<Jid>,
    text: Option<StanzaText>,
) -> Vec<Element> {
    // The 'to' the modules' hook parsed, if no module changed it since: a message archived
    // (XEP-0313) goes through two hooks, and parsing a JID (stringprep) costs.
    let to = match parsed.filter(|p| stanza.attr("to") == Some(p.as_str())) {
        Some(to) => Some(to),
        None => match stanza::to_jid(&stanza) {
            Ok(to) => to,
            Err(_) => return reply(&stanza, StanzaErrorCondition::JidMalformed),
        },
    };
    let Some(to) = to else {
        return to_own_account(state, stanza, kind, from).await;
    };
    let domain = to.domain().as_str();
    if !state.is_local_domain(domain) && state.modules.service(state, domain).is_none() {
        if state.components.serves(domain) {
            return crate::component::deliver(state, domain, stanza)
                .into_iter()
                .collect();
        }
        let local = from.domain().as_str().to_string();
        return match crate::s2s::S2s::send(state, &local, to.domain().as_str(), stanza) {
            Ok(()) => Vec::new(),
            Err(refused) => reply_with(&refused.1, refused.0),
        };
    }
    // FullJid borrows as Jid: no copy of the sender's JID per stanza.
    to_local(state, stanza, kind, from.borrow(), to, text).await
}

/// Runs a client's stanza through the modules on `hook` (its 'to' parsed for them, and
/// returned with the stanza).
async fn from_local_hook(
    state: &Arc<ServerState>,
    hook: StanzaHook,
    stanza: Element,
    kind: Kind,
    from: &FullJid,
    text: &mut Option<StanzaText>,
) -> Result<(Element, Vec<Element>, Option<Jid>), Vec<Element>> {
    let to = match stanza::to_jid(&stanza) {
        Ok(to) => to,
        Err(_) => return Err(reply(&stanza, StanzaErrorCondition::JidMalformed)),
    };
    let account = bare_part(from.as_str());
    let (stanza, to_sender) = run_hook(
        state,
        hook,
        account,
        stanza,
        kind,
        from.borrow(),
        to.as_ref(),
        text,
    )
    .await?;
    Ok((stanza, to_sender, to))
}

/// Passes a stanza through the modules on `hook`: `Ok` with the stanza to go on with and the
/// stanzas modules left for its sender, or `Err` with every stanza for the sender when a
/// module took it. `text`: the stanza's text, kept up to date by the modules that know of
/// it and dropped by any other (`StanzaEvent::text`).
#[allow(clippy::too_many_arguments)]
async fn run_hook(
    state: &Arc<ServerState>,
    hook: StanzaHook,
    account: &str,
    stanza: Element,
    kind: Kind,
    from: &Jid,
    to: Option<&Jid>,
    text: &mut Option<StanzaText>,
) -> Result<(Element, Vec<Element>), Vec<Element>> {
    let mut to_sender = Vec::new();
    let event = StanzaEvent {
        stanza,
        kind,
        from,
        to,
        to_sender: &mut to_sender,
        text,
    };
    match state.modules.stanza(state, hook, account, event).await {
        Flow::Continue(stanza) => Ok((stanza, to_sender)),
        Flow::Done(mut replies) => {
            to_sender.append(&mut replies);
            Err(to_sender)
        }
    }
}

/// `first`, then `then`: replies in the order they were made.
fn joined(mut first: Vec<Element>, mut then: Vec<Element>) -> Vec<Element> {
    if first.is_empty() {
        return then;
    }
    first.append(&mut then);
    first
}

/// Delivers a stanza addressed to a local JID (RFC 6121 §8.5.2, §8.5.3); returns the replies
/// for its sender. `text`: the stanza's text if a module left it (`StanzaEvent::text`).
async fn to_local(
    state: &Arc<ServerState>,
    stanza: Element,
    kind: Kind,
    from: &Jid,
    to: Jid,
    mut text: Option<StanzaText>,
) -> Vec<Element> {
    let domain = to.domain().as_str();
    if !state.is_local_domain(domain) {
        // A module's service entity (this function is reached only for local domains and
        // services): one that takes every stanza under its domain (XEP-0045 rooms) gets it.
        if let Some(service) = state.modules.service(state, domain) {
            if service.spec().service_stanzas {
                return service.service_stanza(state, stanza, kind, from, &to).await;
            }
        }
    }
    if to.node().is_none() {
        return to_server(state, &stanza, kind, from, &to).await;
    }
    let hook = StanzaHook::to_local(kind);
    let account = bare_part(to.as_str());
    let (stanza, extra) = if state.modules.wants(hook) && state.modules.concerned(hook, account) {
        match run_hook(
            state,
            hook,
            account,
            stanza,
            kind,
            from,
            Some(&to),
            &mut text,
        )
        .await
        {
            Ok(passed) => passed,
            Err(replies) => return replies,
        }
    } else {
        (stanza, Vec::new())
    };
    let replies = match to.try_as_full() {
        Ok(full) => to_full_jid(state, stanza, kind, full, text.as_ref()).await,
        Err(bare) => to_bare_jid(state, stanza, kind, from, bare).await,
    };
    joined(extra, replies)
}

/// Delivers a stanza that did not come from a local client — from a peer server, a component,
/// or a bounce — and routes its replies (locally or back over s2s). Its 'to' must be local: a
/// hosted domain, a module's service, or a component (XEP-0114), which gets it.
pub fn deliver_local(
    state: &Arc<ServerState>,
    stanza: Element,
) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    Box::pin(async move {
        let Some(kind) = Kind::of(&stanza, crate::ns::CLIENT) else {
            return;
        };
        let (Ok(Some(to)), Some(Ok(from))) =
            (stanza::to_jid(&stanza), stanza.attr("from").map(Jid::new))
        else {
            return;
        };
        let domain = to.domain().as_str();
        if !state.is_local_domain(domain) {
            if state.components.serves(domain) {
                if let Some(reply) = crate::component::deliver(state, domain, stanza) {
                    dispatch(state, reply).await;
                }
                return;
            }
            if state.modules.service(state, domain).is_none() {
                return;
            }
        }
        for reply in to_local(state, stanza, kind, &from, to, None).await {
            dispatch(state, reply).await;
        }
    })
}

/// Sends a presence on a local account's behalf to its one addressee (`StanzaHook::
/// PresenceFromAccount`): through the modules that may withhold it, then like `dispatch`. Its
/// JIDs are parsed once here: a broadcast to 500 contacts parsed each 'to' three times.
pub async fn send_presence_for_account(state: &Arc<ServerState>, stanza: Element) {
    let (Some(Ok(from)), Ok(Some(to))) =
        (stanza.attr("from").map(Jid::new), stanza::to_jid(&stanza))
    else {
        return;
    };
    send_presence_addressed(state, stanza, &from, to).await;
}

/// `send_presence_for_account` for a caller that holds the stanza's 'from' and 'to' as JIDs
/// already (a broadcast: one sender, contacts from the roster), so none is parsed again.
pub async fn send_presence_addressed(
    state: &Arc<ServerState>,
    stanza: Element,
    from: &Jid,
    to: Jid,
) {
    let hook = StanzaHook::PresenceFromAccount;
    let account = bare_part(from.as_str());
    let stanza = if state.modules.wants(hook) && state.modules.concerned(hook, account) {
        let kind = Kind::Presence;
        match run_hook(
            state,
            hook,
            account,
            stanza,
            kind,
            from,
            Some(&to),
            &mut None,
        )
        .await
        {
            Ok((stanza, _)) => stanza,
            Err(_) => return,
        }
    } else {
        stanza
    };
    send_addressed(state, stanza, Kind::Presence, from, to).await;
}

/// `dispatch` for a caller that holds the stanza's kind, 'from' and 'to' already (a room's
/// copies of one message, a broadcast), so none is parsed again: a local account's session,
/// a component or module service, or a remote domain over s2s.
pub async fn send_addressed(
    state: &Arc<ServerState>,
    stanza: Element,
    kind: Kind,
    from: &Jid,
    to: Jid,
) {
    if state.is_local_domain(to.domain().as_str()) {
        for reply in to_local(state, stanza, kind, from, to, None).await {
            dispatch(state, reply).await;
        }
        return;
    }
    if state.serves_domain(to.domain().as_str()) {
        // A component or a module's service (a room's occupant leaving with its session).
        deliver_local(state, stanza).await;
        return;
    }
    if let Err(refused) =
        crate::s2s::S2s::send(state, from.domain().as_str(), to.domain().as_str(), stanza)
    {
        tracing::debug!("{kind:?} to {to} dropped: {:?}", refused.0.condition);
    }
}

/// Sends a server-generated stanza (from a module: a roster push, a subscription answer)
/// wherever its 'to' points: a local session or account, a component, or a remote domain over
/// s2s.
pub async fn dispatch(state: &Arc<ServerState>, stanza: Element) {
    let Ok(Some(to)) = stanza::to_jid(&stanza) else {
        return;
    };
    if state.serves_domain(to.domain().as_str()) {
        deliver_local(state, stanza).await;
        return;
    }
    let local = stanza
        .attr("from")
        .and_then(|f| Jid::new(f).ok())
        .map(|f| f.domain().as_str().to_string())
        .unwrap_or_else(|| state.config.default_domain().to_string());
    if let Err(refused) = crate::s2s::S2s::send(state, &local, to.domain().as_str(), stanza) {
        tracing::debug!("reply to {to} dropped: {:?}", refused.0.condition);
    }
}

/// RFC 6120 §8.1.1.1: no 'to' means the sender's own account.
async fn to_own_account(
    state: &Arc<ServerState>,
    stanza: Element,
    kind: Kind,
    from: &FullJid,
) -> Vec<Element> {
    match kind {
        Kind::Iq => {
            let account = Jid::from(from.to_bare());
            server_iq(state, &stanza, from.borrow(), &account).await
        }
        Kind::Presence => {
            // RFC 6121 §4.2.2 / §4.5.2: presence broadcast. Without rosters (a later issue) the
            // audience is the user's own available resources, including the sender.
            let available = stanza.attr("type").is_none();
            if !available && stanza.attr("type") != Some("unavailable") {
                return Vec::new();
            }
            let priority = stanza
                .get_child("priority", crate::ns::CLIENT)
                .and_then(|p| p.text().trim().parse::<i8>().ok())
                .unwrap_or(0);
            state.sessions.set_presence(from, available, priority);
            let mut back = Vec::new();
            for (jid, handle) in state.sessions.all_resources(&from.to_bare()) {
                let mut copy = stanza.clone();
                stanza::set_attr(&mut copy, xml_ncname!("to").into(), jid.as_str());
                if &jid == from {
                    back.push(copy);
                } else {
                    let _ = handle.deliver(copy);
                }
            }
            back
        }
        Kind::Message => {
            // A message to one's own bare JID.
            Vec::new()
        }
    }
}

async fn to_server(
    state: &Arc<ServerState>,
    stanza: &Element,
    kind: Kind,
    from: &Jid,
    to: &Jid,
) -> Vec<Element> {
    match kind {
        Kind::Iq if to.resource().is_none() => server_iq(state, stanza, from, to).await,
        Kind::Iq | Kind::Message => reply(stanza, StanzaErrorCondition::ServiceUnavailable),
        // Presence to the server itself has no meaning without subscriptions to it.
        Kind::Presence => Vec::new(),
    }
}

/// An IQ the server answers itself, for its domain or on behalf of an account.
async fn server_iq(state: &Arc<ServerState>, iq: &Element, from: &Jid, to: &Jid) -> Vec<Element> {
    let is_set = match iq.attr("type") {
        Some("get") => false,
        Some("set") => true,
        Some("result") | Some("error") => return Vec::new(),
        _ => return reply(iq, StanzaErrorCondition::BadRequest),
    };
    let mut children = iq.children();
    let (Some(payload), None) = (children.next(), children.next()) else {
        return reply_with(
            iq,
            StanzaError::new(StanzaErrorCondition::BadRequest)
                .with_text("an IQ get or set carries exactly one payload (RFC 6120 §8.2.3)"),
        );
    };
    let req = IqRequest {
        iq,
        payload,
        from,
        to,
        is_set,
    };
    match state.modules.iq(state, &req).await {
        IqOutcome::Result(payload) => vec![iq_result_for(iq, payload, to)],
        IqOutcome::ResultAfter(mut before, payload) => {
            before.push(iq_result_for(iq, payload, to));
            before
        }
        IqOutcome::Error(err) => reply_with(iq, err),
        // RFC 6120 §8.4: an IQ in a namespace nobody serves gets service-unavailable.
        IqOutcome::NotMine => reply(iq, StanzaErrorCondition::ServiceUnavailable),
    }
}

/// The result of an IQ the server answered itself.
fn iq_result_for(iq: &Element, payload: Option<Element>, to: &Jid) -> Element {
    let mut result = stanza::iq_result(iq, payload);
    if iq.attr("to").is_none() {
        // Answers on behalf of the account come from its bare JID (RFC 6120 §10.3.3).
        stanza::set_attr(&mut result, xml_ncname!("from").into(), to.as_str());
    }
    result
}

async fn to_full_jid(
    state: &Arc<ServerState>,
    stanza: Element,
    kind: Kind,
    to: &FullJid,
    text: Option<&StanzaText>,
) -> Vec<Element> {
    let stanza = match state.sessions.deliver_to_full_as(to, stanza, text) {
        Handed::NoSession(stanza) | Handed::Refused(DeliveryError::Gone, stanza) => stanza,
        handed => return replies_for(handed),
    };
    // RFC 6121 §8.5.3.2: no such resource.
    match kind {
        Kind::Message => match stanza.attr("type") {
            Some("groupchat") => reply(&stanza, StanzaErrorCondition::ServiceUnavailable),
            Some("headline") | Some("error") => Vec::new(),
            _ => {
                let from = match stanza.attr("from").map(Jid::new) {
                    Some(Ok(from)) => from,
                    _ => return Vec::new(),
                };
                deliver_message_to_bare(state, stanza, &from, &to.to_bare()).await
            }
        },
        Kind::Iq => reply(&stanza, StanzaErrorCondition::ServiceUnavailable),
        Kind::Presence => Vec::new(),
    }
}

/// The replies for the sender of a stanza handed to a bound session (RFC 6121 §8.5.3.1).
fn replies_for(handed: Handed) -> Vec<Element> {
    match handed {
        Handed::Queued => Vec::new(),
        Handed::Refused(DeliveryError::Congested, stanza) => reply_with(
            &stanza,
            StanzaError::new(StanzaErrorCondition::ResourceConstraint)
                .with_text("the recipient is not reading fast enough"),
        ),
        Handed::Refused(DeliveryError::Gone, stanza) | Handed::NoSession(stanza) => {
            reply(&stanza, StanzaErrorCondition::RecipientUnavailable)
        }
    }
}

async fn to_bare_jid(
    state: &Arc<ServerState>,
    stanza: Element,
    kind: Kind,
    from: &Jid,
    to: &BareJid,
) -> Vec<Element> {
    match kind {
        Kind::Iq => {
            if !account_exists(state, to).await {
                return reply(&stanza, StanzaErrorCondition::ServiceUnavailable);
            }
            // RFC 6121 §8.5.2.1.3: the server answers IQs to a bare JID for the account.
            server_iq(state, &stanza, from, &Jid::from(to.clone())).await
        }
        Kind::Message => match stanza.attr("type") {
            Some("error") => Vec::new(),
            Some("groupchat") => reply(&stanza, StanzaErrorCondition::ServiceUnavailable),
            _ => deliver_message_to_bare(state, stanza, from, to).await,
        },
        Kind::Presence => {
            state.sessions.deliver_to_all(to, stanza);
            Vec::new()
        }
    }
}

/// RFC 6121 §8.5.2.1.1: every available resource with non-negative priority gets a copy.
async fn deliver_message_to_bare(
    state: &Arc<ServerState>,
    stanza: Element,
    from: &Jid,
    to: &BareJid,
) -> Vec<Element> {
    let Some(stanza) = state.sessions.deliver_message(to, stanza) else {
        return Vec::new();
    };
    if stanza.attr("type") == Some("headline") {
        return Vec::new();
    }
    if !account_exists(state, to).await {
        return reply(&stanza, StanzaErrorCondition::ServiceUnavailable);
    }
    no_resource(state, stanza, from, to).await
}

/// A message that a session took but never delivered (its connection was lost and not resumed,
/// XEP-0198 §5), handled as one for an account without an available resource: kept by the
/// offline module, else an error to its sender. Not offered to the account's other resources:
/// those with carbons already had their copy.
pub async fn undelivered_message(state: &Arc<ServerState>, stanza: Element, to: &BareJid) {
    let Some(Ok(from)) = stanza.attr("from").map(Jid::new) else {
        return;
    };
    for reply in no_resource(state, stanza, &from, to).await {
        dispatch(state, reply).await;
    }
}

/// RFC 6121 §8.5.2.2.1: no resource took the message.
async fn no_resource(
    state: &Arc<ServerState>,
    stanza: Element,
    from: &Jid,
    to: &BareJid,
) -> Vec<Element> {
    // Offline storage, when a module does it.
    let (stanza, extra) = if state.modules.wants(StanzaHook::MessageNoResource) {
        let account = to.as_str();
        let to = Jid::from(to.clone());
        let hook = StanzaHook::MessageNoResource;
        let kind = Kind::Message;
        match run_hook(
            state,
            hook,
            account,
            stanza,
            kind,
            from,
            Some(&to),
            &mut None,
        )
        .await
        {
            Ok(passed) => passed,
            Err(replies) => return replies,
        }
    } else {
        (stanza, Vec::new())
    };
    // Nobody kept it: the sender learns it was not delivered.
    let error = reply_with(
        &stanza,
        StanzaError::new(StanzaErrorCondition::ServiceUnavailable)
            .with_text("the recipient is offline"),
    );
    joined(extra, error)
}

async fn account_exists(state: &ServerState, jid: &BareJid) -> bool {
    let Some(node) = jid.node() else { return false };
    match state
        .storage
        .accounts
        .account_exists(jid.domain().as_str(), node.as_str())
        .await
    {
        Ok(exists) => exists,
        Err(e) => {
            tracing::warn!("account lookup failed: {e}");
            false
        }
    }
}

fn reply(stanza: &Element, condition: StanzaErrorCondition) -> Vec<Element> {
    stanza::error_reply(stanza, condition).into_iter().collect()
}

fn reply_with(stanza: &Element, err: StanzaError) -> Vec<Element> {
    err.reply_to(stanza).into_iter().collect()
}
