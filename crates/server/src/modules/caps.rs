//! XEP-0115 entity capabilities of the clients the server talks to: the `<c/>` in an available
//! presence names a verification string; the first time the server meets one it asks that
//! entity's disco#info (`node#ver`, from the account's bare JID, which the entity trusts),
//! checks the answer hashes to the string (§5.4) and keeps the features under it. Others with
//! the same string are never asked. PEP reads the features (`+notify`) through
//! [`Caps::features_of`].
//!
//! Local clients are read here, on their broadcast presence. Remote contacts' presence would
//! be read at `PresenceToLocal`, a hook run for every presence delivered (a broadcast to 500
//! contacts runs it 500 times): PEP reads it there instead, only for accounts with nodes, and
//! hands it over ([`Caps::observe_remote`]). A newly verified string is told to PEP, which
//! then sends the last items its holders were waiting for.

use std::collections::BTreeSet;

use base64::Engine;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use jid::{FullJid, Jid};
use minidom::Element;
use rxml::xml_ncname;
use xmpp_parsers::caps::{hash_caps, Caps as CapsElement};
use xmpp_parsers::disco::DiscoInfoResult;

use super::disco;
use super::pep::Pep;
use super::{Flow, Module, ModuleDef, ModuleSpec, Priority, SessionHook, StanzaEvent, StanzaHook};
use crate::compliance::Claim;
use crate::ns;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "caps",
    default_enabled: true,
    spec: &SPEC,
    build: |_| Ok(Arc::new(Caps::default())),
};

static SPEC: ModuleSpec = ModuleSpec {
    stanza_hooks: &[
        // Before the roster module takes the presence for its broadcast.
        (StanzaHook::PresenceFromLocal, Priority(-20)),
        (StanzaHook::IqToLocal, Priority(-20)),
    ],
    session_hooks: &[(SessionHook::Closed, Priority::NORMAL)],
    specs: &[Claim::xep(
        115,
        "1.6.0",
        "modules::caps and modules::disco: the server's own capabilities in its stream features; local clients' capabilities asked once per verification string, verified and cached",
    )],
    ..ModuleSpec::named("caps")
};

/// Verification strings whose features are kept; past it an arbitrary one is forgotten.
const MAX_KNOWN: usize = 10_000;
/// Disco queries waiting for their answer at most; past it no new one is sent.
const MAX_PENDING: usize = 1_000;
/// Entities whose string is remembered at most (sessions and remote contacts).
const MAX_ENTITIES: usize = 1_000_000;

/// A verification string with its hash function, e.g. `sha-1 q07IKJEyjvHSyhy//CH0CxmKi8w=`.
pub type CapsKey = Arc<str>;

struct Pending {
    key: CapsKey,
    asked: Jid,
    caps: CapsElement,
    sent: Instant,
}

/// A query unanswered for this long is forgotten (its string is asked again later).
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Caps {
    /// What each entity's last available presence announced.
    by_entity: DashMap<Jid, CapsKey>,
    /// Features of entities whose answer did not match their string, for them alone.
    unverified: DashMap<Jid, Arc<BTreeSet<String>>>,
    /// Features per verified string.
    known: DashMap<CapsKey, Arc<BTreeSet<String>>>,
    /// Queries sent, by IQ id.
    pending: DashMap<String, Pending>,
    pending_count: AtomicUsize,
    next_id: AtomicU64,
}

#[async_trait::async_trait]
impl Module for Caps {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn concerns(&self, hook: StanzaHook, _account: &str) -> bool {
        // IQs pass through here only while a query waits for its answer.
        hook != StanzaHook::IqToLocal || self.pending_count.load(Ordering::Relaxed) > 0
    }

    async fn stanza(
        &self,
        state: &Arc<ServerState>,
        hook: StanzaHook,
        event: StanzaEvent<'_>,
    ) -> Flow {
        let StanzaEvent {
            stanza, from, to, ..
        } = event;
        match hook {
            StanzaHook::PresenceFromLocal if to.is_none() => {
                let asker = Jid::from(from.to_bare());
                self.presence(state, &stanza, from, asker).await;
            }
            StanzaHook::IqToLocal => match self.answer(&stanza, from) {
                Answer::NotOurs => {}
                Answer::Taken(learned) => {
                    if let (Some(learned), Some(pep)) = (learned, state.modules.find::<Pep>()) {
                        pep.caps_learned(state, &learned).await;
                    }
                    return Flow::Done(Vec::new());
                }
            },
            _ => {}
        }
        Flow::Continue(stanza)
    }

    async fn session(&self, _state: &Arc<ServerState>, _hook: SessionHook, jid: &FullJid) {
        let jid = Jid::from(jid.clone());
        self.by_entity.remove(&jid);
        self.unverified.remove(&jid);
        if self.pending_count.load(Ordering::Relaxed) > 0 {
            self.forget_pending(|p| p.asked == jid);
        }
    }
}

/// What became of an IQ for a local account.
enum Answer {
    /// Not an answer to one of our queries.
    NotOurs,
    /// One of ours, taken here; with what it taught us, if anything.
    Taken(Option<Learned>),
}

/// What an answer to a caps query taught.
pub enum Learned {
    /// The features behind a verification string, for everyone announcing it.
    Key(CapsKey),
    /// The features of one entity whose answer did not hash to its string.
    Entity(Jid),
}

impl Caps {
    /// The verification string `entity`'s last available presence announced.
    pub fn key_of(&self, entity: &Jid) -> Option<CapsKey> {
        self.by_entity.get(entity).map(|k| k.clone())
    }

    /// The features behind a verification string, once verified.
    pub fn features_for(&self, key: &str) -> Option<Arc<BTreeSet<String>>> {
        self.known.get(key).map(|f| f.clone())
    }

    /// A presence from a remote entity to the local account `asker` (PEP reads its
    /// contacts' presence for the accounts with nodes): its string is remembered like a
    /// local client's, and asked for by `asker`.
    pub async fn observe_remote(
        &self,
        state: &Arc<ServerState>,
        stanza: &Element,
        from: &Jid,
        asker: Jid,
    ) {
        self.presence(state, stanza, from, asker).await;
    }

    /// The features `entity` announced: those verified for its string, else what it
    /// answered itself when the answer did not hash to its string.
    pub fn features_of(&self, entity: &Jid) -> Option<Arc<BTreeSet<String>>> {
        let key = self.by_entity.get(entity).map(|k| k.clone());
        key.and_then(|key| self.known.get(&key).map(|f| f.clone()))
            .or_else(|| self.unverified.get(entity).map(|f| f.clone()))
    }

    /// An entity's presence: remember its string, ask for the features behind a new one.
    async fn presence(&self, state: &Arc<ServerState>, stanza: &Element, from: &Jid, asker: Jid) {
        if from.resource().is_none() {
            return;
        }
        if stanza.attr("type").is_some() {
            if stanza.attr("type") == Some("unavailable") {
                self.by_entity.remove(from);
                self.unverified.remove(from);
            }
            return;
        }
        let Some(caps) = stanza
            .get_child("c", super::disco::NS_CAPS)
            .and_then(|c| CapsElement::try_from(c.clone()).ok())
        else {
            return;
        };
        let ver = base64::engine::general_purpose::STANDARD.encode(&caps.ver);
        let key: CapsKey = format!("{} {ver}", String::from(caps.hash.clone())).into();
        if self.by_entity.len() < MAX_ENTITIES || self.by_entity.contains_key(from) {
            self.by_entity.insert(from.clone(), key.clone());
        }
        if self.pending_count.load(Ordering::Relaxed) > 0 {
            self.forget_pending(|p| p.sent.elapsed() > ANSWER_WITHIN);
        }
        let asking = self.pending.iter().any(|p| p.key == key);
        if self.known.contains_key(&key)
            || asking
            || self.pending_count.load(Ordering::Relaxed) >= MAX_PENDING
        {
            return;
        }
        let id = format!("weft-caps-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let node = format!("{}#{ver}", caps.node);
        let query = Element::builder("iq", ns::CLIENT)
            .attr(xml_ncname!("type").into(), "get")
            .attr(xml_ncname!("id").into(), id.as_str())
            .attr(xml_ncname!("from").into(), asker.as_str())
            .attr(xml_ncname!("to").into(), from.as_str())
            .append(
                Element::builder("query", ns::DISCO_INFO)
                    .attr(xml_ncname!("node").into(), node)
                    .build(),
            )
            .build();
        self.pending.insert(
            id,
            Pending {
                key,
                asked: from.clone(),
                caps,
                sent: Instant::now(),
            },
        );
        self.pending_count.fetch_add(1, Ordering::Relaxed);
        crate::router::dispatch(state, query).await;
    }

    /// Drops the queries `gone` says will not be answered; IQs skip this module again once
    /// none waits.
    fn forget_pending(&self, gone: impl Fn(&Pending) -> bool) {
        self.pending.retain(|_, p| !gone(p));
        self.pending_count
            .store(self.pending.len(), Ordering::Relaxed);
    }

    /// An IQ for a local account: the answer to one of our queries is taken here.
    fn answer(&self, iq: &Element, from: &Jid) -> Answer {
        let Some(id) = iq.attr("id").filter(|id| id.starts_with("weft-caps-")) else {
            return Answer::NotOurs;
        };
        if !matches!(iq.attr("type"), Some("result") | Some("error")) {
            return Answer::NotOurs;
        }
        // Only the entity asked may answer.
        let Some((_, pending)) = self.pending.remove_if(id, |_, p| &p.asked == from) else {
            return Answer::NotOurs;
        };
        self.pending_count.fetch_sub(1, Ordering::Relaxed);
        let info = iq
            .get_child("query", ns::DISCO_INFO)
            .and_then(|q| DiscoInfoResult::try_from(q.clone()).ok());
        let Some(info) = info else {
            tracing::debug!(%from, "no disco#info in the answer to a caps query");
            return Answer::Taken(None);
        };
        let verified = hash_caps(&verification_string(&info), pending.caps.hash.clone())
            .is_ok_and(|h| h.hash == pending.caps.ver);
        if !verified {
            // Some clients announce a string made before all their features were known
            // (slixmpp hashes when the caps plugin loads): their answer is used for them
            // alone, never kept under the string for others.
            tracing::debug!(%from, key = %pending.key, "caps answer does not match its verification string; used for this entity only");
            if self.unverified.len() < MAX_ENTITIES || self.unverified.contains_key(&pending.asked)
            {
                self.unverified
                    .insert(pending.asked.clone(), Arc::new(info.features));
            }
            return Answer::Taken(Some(Learned::Entity(pending.asked)));
        }
        if self.known.len() >= MAX_KNOWN {
            if let Some(victim) = self.known.iter().next().map(|e| e.key().clone()) {
                self.known.remove(&victim);
            }
        }
        self.known
            .insert(pending.key.clone(), Arc::new(info.features));
        Answer::Taken(Some(Learned::Key(pending.key)))
    }
}

/// The verification string S of XEP-0115 §5.1 for a disco#info answer, built as for the
/// server's own caps ([`disco::verification_string`]). Not xmpp-parsers' `compute_disco`: that
/// sorts each feature with its '<' appended, so a feature that another one extends with a byte
/// below '<' sorts after it ("vcard-temp:x:update<" before "vcard-temp<", a pair Converse.js
/// advertises, whose correct strings then never verified); and it keeps a form's fields in
/// document order where §5.1 sorts them by var.
fn verification_string(info: &DiscoInfoResult) -> Vec<u8> {
    // Identities by category, type, xml:lang: "category/type/lang/name<".
    let mut identities: Vec<_> = info
        .identities
        .iter()
        .map(|i| {
            let lang = i.lang.as_deref().unwrap_or("");
            let name = i.name.as_deref().unwrap_or("");
            (i.category.as_str(), i.type_.as_str(), lang, name)
        })
        .collect();
    identities.sort_unstable();
    let identities: String = identities
        .iter()
        .map(|(category, type_, lang, name)| format!("{category}/{type_}/{lang}/{name}<"))
        .collect();
    let features: Vec<&str> = info.features.iter().map(String::as_str).collect();
    disco::verification_string(&identities, &features, &info.extensions).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::hashes::Algo;

    fn ver(xml: &str) -> String {
        let info = DiscoInfoResult::try_from(xml.parse::<Element>().unwrap()).unwrap();
        hash_caps(&verification_string(&info), Algo::Sha_1)
            .unwrap()
            .to_base64()
    }

    /// XEP-0115 §5.2 and §5.3: the simple and the complex example, fields out of order in the
    /// complex one (§5.1 sorts them by var).
    #[test]
    fn the_xep_examples_verify() {
        assert_eq!(
            ver("<query xmlns='http://jabber.org/protocol/disco#info'>\
                <identity category='client' name='Exodus 0.9.1' type='pc'/>\
                <feature var='http://jabber.org/protocol/caps'/>\
                <feature var='http://jabber.org/protocol/disco#info'/>\
                <feature var='http://jabber.org/protocol/disco#items'/>\
                <feature var='http://jabber.org/protocol/muc'/></query>"),
            "QgayPKawpkPSDYmwT/WM94uAlu0="
        );
        assert_eq!(
            ver("<query xmlns='http://jabber.org/protocol/disco#info'>\
                <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
                <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
                <feature var='http://jabber.org/protocol/caps'/>\
                <feature var='http://jabber.org/protocol/disco#info'/>\
                <feature var='http://jabber.org/protocol/disco#items'/>\
                <feature var='http://jabber.org/protocol/muc'/>\
                <x xmlns='jabber:x:data' type='result'>\
                <field var='software'><value>Psi</value></field>\
                <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
                <field var='os_version'><value>10.5.1</value></field>\
                <field var='ip_version' type='text-multi'><value>ipv6</value><value>ipv4</value></field>\
                <field var='os'><value>Mac</value></field>\
                <field var='software_version'><value>0.11</value></field>\
                </x></query>"),
            "q07IKJEyjvHSyhy//CH0CxmKi8w="
        );
    }
}
