//! XEP-0045 rooms: their state, occupants entering and leaving (§7.1, §7.2, §7.14), presence
//! updates, nick changes (§7.6), discussion history, XEP-0421 occupant ids. Messages are in
//! `messages.rs`, the admin and owner use cases in `admin.rs`, voice requests and room vCards
//! in `extras.rs`. No I/O: every call adds what to send to an [`Out`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use base64::Engine;
use jid::{BareJid, FullJid};
use minidom::Element;
use rxml::xml_ncname;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::config::{RoleSet, RoomConfig};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;
use crate::stanza;

pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub const NS_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";

/// An affiliation (§5.2), in rising rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// A role (§5.1), in rising rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

/// The room's subject and who set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub nick: Option<String>,
    pub text: String,
}

/// One user in the room under one nick, with one session or several (§7.2.? multi-session:
/// the same bare JID entering with the same nick from another resource).
pub struct Occupant {
    pub nick: String,
    pub bare: BareJid,
    /// Its sessions, in the order they entered.
    pub sessions: Vec<FullJid>,
    pub role: Role,
    /// Its last available presence, without addresses and MUC payloads.
    presence: Element,
    /// XEP-0421: stable for the bare JID in this room.
    pub id: String,
    /// Its groupchat messages' budget (`occupant_message_rate`).
    pub budget: Bucket,
}

pub(super) struct History {
    pub(super) message: Element,
    pub(super) at: SystemTime,
}

/// What the service lends a room for one call.
pub struct Ctx<'a> {
    pub now: SystemTime,
    /// The service's administrators (bare JIDs): owners of every room.
    pub admins: &'a [String],
    /// Most messages of history a room may keep.
    pub max_history: usize,
    /// Occupants per room at most, whatever its configuration.
    pub max_occupants: usize,
    /// Rooms the sender is in (counted for entering presences only) and the most it may be
    /// in (0: no limit).
    pub user_rooms: usize,
    pub max_rooms_per_user: usize,
    /// Groupchat messages per second and at once per occupant (rate 0: no limit).
    pub message_rate: f64,
    pub message_burst: f64,
    /// The room archive exists (the mam module is loaded): a room configured for logging is
    /// then logged (status 170).
    pub archived: bool,
}

/// An occupant's groupchat budget: a token bucket, refilled at the service's rate.
pub struct Bucket {
    tokens: f64,
    at: SystemTime,
}

impl Bucket {
    fn full(ctx: &Ctx<'_>) -> Bucket {
        Bucket {
            tokens: ctx.message_burst,
            at: ctx.now,
        }
    }

    /// Takes a token if there is one: whether the occupant may send now.
    pub fn take(&mut self, ctx: &Ctx<'_>) -> bool {
        let elapsed = ctx
            .now
            .duration_since(self.at)
            .map_or(0.0, |d| d.as_secs_f64());
        self.at = ctx.now;
        self.tokens = (self.tokens + elapsed * ctx.message_rate).min(ctx.message_burst);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// Who removed an occupant and why, for its unavailable presence (XEP-0045 §8.2, §9.1).
#[derive(Default)]
pub struct Why<'a> {
    pub reason: Option<&'a str>,
    /// The moderator's nick, when it is in the room.
    pub actor: Option<&'a str>,
}

/// What a call leaves to do.
#[derive(Default)]
pub struct Out {
    pub stanzas: Vec<Element>,
    /// The stored room changed (configuration, affiliations, subject).
    pub save: bool,
    /// The room is gone (temporary and empty, or destroyed).
    pub destroy: bool,
    /// Stanzas to many sessions each (a groupchat message, an occupant's presence), in
    /// order among `stanzas` (see `Broadcast::at`).
    pub broadcast: Vec<Broadcast>,
    /// The broadcast at this index, a groupchat message, goes to the room's archive
    /// (XEP-0313) as sent by this nick, and gets the `<stanza-id/>` it was given there.
    pub archive: Option<(String, usize)>,
    /// The sender's bare JID came into the room (it was in under no nick).
    pub entered: bool,
    /// Bare JIDs no longer in the room under any nick.
    pub left: Vec<BareJid>,
}

/// One message to many sessions: kept as one element, not a copy per session, so that it can
/// be serialised once for all of them (`framing::Copies`).
pub struct Broadcast {
    /// Without `to`.
    pub message: Element,
    pub to: Vec<FullJid>,
    /// Sent before `Out::stanzas[at]`: the length of `stanzas` when it was made.
    pub at: usize,
}

impl Out {
    /// Adds `message` (no `to`) for each of `to`, after the stanzas made so far.
    pub fn broadcast(&mut self, message: Element, to: Vec<FullJid>) {
        if to.is_empty() {
            return;
        }
        let at = self.stanzas.len();
        self.broadcast.push(Broadcast { message, to, at });
    }
}

/// The part of a room kept in storage when it is persistent.
#[derive(Serialize, Deserialize)]
pub struct Saved {
    pub config: RoomConfig,
    pub affiliations: BTreeMap<String, Affiliation>,
    pub subject: Option<Subject>,
    pub secret: String,
    /// The room's vCard (its avatar), as XML.
    #[serde(default)]
    pub vcard: Option<String>,
    /// Reserved nicks (§7.10): bare JID → nick.
    #[serde(default)]
    pub nicks: BTreeMap<String, String>,
}

pub struct Room {
    pub jid: BareJid,
    pub config: RoomConfig,
    /// Bare JID → affiliation other than none.
    pub affiliations: BTreeMap<String, Affiliation>,
    pub subject: Option<Subject>,
    /// The room's vCard, as XML (extras.rs).
    pub vcard: Option<String>,
    /// Reserved nicks (register.rs): bare JID → nick.
    pub nicks: BTreeMap<String, String>,
    /// Salt of the occupant ids.
    secret: String,
    /// Created and not yet configured (§10.1.2): only its owner may enter.
    pub locked: bool,
    pub occupants: BTreeMap<String, Occupant>,
    /// Session full JID → nick.
    pub(super) by_session: HashMap<String, String>,
    pub(super) history: VecDeque<History>,
}

pub fn error(stanza: &Element, condition: StanzaErrorCondition, text: &str) -> Option<Element> {
    let mut e = StanzaError::new(condition);
    if !text.is_empty() {
        e = e.with_text(text);
    }
    e.reply_to(stanza)
}

pub(super) fn x_user() -> minidom::ElementBuilder {
    Element::builder("x", NS_USER)
}

fn status(code: u16) -> Element {
    Element::builder("status", NS_USER)
        .attr(xml_ncname!("code").into(), code.to_string())
        .build()
}

pub(super) fn addressed(mut el: Element, from: &str, to: &str) -> Element {
    stanza::set_attr(&mut el, xml_ncname!("from").into(), from);
    stanza::set_attr(&mut el, xml_ncname!("to").into(), to);
    el
}

impl Room {
    pub fn new(jid: BareJid, config: RoomConfig) -> Room {
        let secret: [u8; 16] = rand::random();
        Room {
            jid,
            config,
            affiliations: BTreeMap::new(),
            subject: None,
            vcard: None,
            nicks: BTreeMap::new(),
            secret: base64::engine::general_purpose::STANDARD_NO_PAD.encode(secret),
            locked: false,
            occupants: BTreeMap::new(),
            by_session: HashMap::new(),
            history: VecDeque::new(),
        }
    }

    pub fn restore(jid: BareJid, saved: Saved) -> Room {
        let mut room = Room::new(jid, saved.config);
        room.affiliations = saved.affiliations;
        room.subject = saved.subject;
        room.secret = saved.secret;
        room.vcard = saved.vcard;
        room.nicks = saved.nicks;
        room
    }

    pub fn saved(&self) -> Saved {
        Saved {
            config: self.config.clone(),
            affiliations: self.affiliations.clone(),
            subject: self.subject.clone(),
            secret: self.secret.clone(),
            vcard: self.vcard.clone(),
            nicks: self.nicks.clone(),
        }
    }

    pub fn affiliation(&self, ctx: &Ctx<'_>, bare: &str) -> Affiliation {
        if ctx.admins.iter().any(|a| a == bare) {
            return Affiliation::Owner;
        }
        self.affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    /// §5.1: the role one enters with.
    pub fn default_role(&self, affiliation: Affiliation) -> Role {
        match affiliation {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            _ if self.config.moderated => Role::Visitor,
            _ => Role::Participant,
        }
    }

    pub fn occupant_of(&self, session: &str) -> Option<&Occupant> {
        self.by_session
            .get(session)
            .and_then(|nick| self.occupants.get(nick))
    }

    pub(super) fn room_jid_of(&self, nick: &str) -> String {
        format!("{}/{nick}", self.jid)
    }

    fn occupant_id(&self, bare: &BareJid) -> String {
        let digest = sha2::Sha256::new()
            .chain_update(self.secret.as_bytes())
            .chain_update(bare.as_str().as_bytes())
            .finalize();
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&digest[..18])
    }

    /// Whether the others get the presence of an occupant with `role`
    /// (`muc#roomconfig_presencebroadcast`).
    pub fn shown(&self, role: Role) -> bool {
        self.config.presence_broadcast.contains(role)
    }

    /// Whether `viewer` (a role) sees occupants' real JIDs.
    fn sees_jids(&self, viewer: Role) -> bool {
        self.config.whois_anyone || viewer == Role::Moderator
    }

    /// The presence of `occ` as `viewer_role` at `to` gets it.
    pub fn presence_of(
        &self,
        ctx: &Ctx<'_>,
        occ: &Occupant,
        to: &str,
        viewer_role: Role,
        unavailable: bool,
        codes: &[u16],
    ) -> Element {
        let mut p = if unavailable {
            Element::builder("presence", ns::CLIENT)
                .attr(xml_ncname!("type").into(), "unavailable")
                .build()
        } else {
            occ.presence.clone()
        };
        p = addressed(p, &self.room_jid_of(&occ.nick), to);
        let affiliation = self.affiliation(ctx, occ.bare.as_str());
        let mut item = Element::builder("item", NS_USER)
            .attr(xml_ncname!("affiliation").into(), affiliation.as_str())
            .attr(
                xml_ncname!("role").into(),
                if unavailable {
                    "none"
                } else {
                    occ.role.as_str()
                },
            );
        if self.sees_jids(viewer_role) {
            if let Some(first) = occ.sessions.first() {
                item = item.attr(xml_ncname!("jid").into(), first.as_str());
            }
        }
        let mut x = x_user().append(item.build());
        for &c in codes {
            x = x.append(status(c));
        }
        p.append_child(x.build());
        p.append_child(
            Element::builder("occupant-id", NS_OCCUPANT_ID)
                .attr(xml_ncname!("id").into(), occ.id.as_str())
                .build(),
        );
        p
    }

    /// Sends `nick`'s presence to every session in the room; its own sessions get `own`
    /// codes (110 first), the others `others`, when its role's presence is broadcast.
    fn broadcast_presence(
        &self,
        ctx: &Ctx<'_>,
        occ: &Occupant,
        unavailable: bool,
        own: &[u16],
        others: &[u16],
        out: &mut Out,
    ) {
        let mine = |viewer: &Occupant| viewer.bare == occ.bare && viewer.nick == occ.nick;
        if self.shown(occ.role) {
            let viewers = self.occupants.values().filter(|v| !mine(v));
            self.presence_to_viewers(ctx, occ, unavailable, others, viewers, out);
        }
        for viewer in self.occupants.values().filter(|v| mine(v)) {
            for session in &viewer.sessions {
                out.stanzas.push(self.presence_of(
                    ctx,
                    occ,
                    session.as_str(),
                    viewer.role,
                    unavailable,
                    own,
                ));
            }
        }
    }

    /// `occ`'s presence with `codes` to every session of `viewers`: one broadcast for those
    /// who see its real JID and one for the others (`Out::broadcast`), not a stanza each.
    fn presence_to_viewers<'v>(
        &self,
        ctx: &Ctx<'_>,
        occ: &Occupant,
        unavailable: bool,
        codes: &[u16],
        viewers: impl Iterator<Item = &'v Occupant>,
        out: &mut Out,
    ) {
        let (mut seeing, mut blind) = (Vec::new(), Vec::new());
        for viewer in viewers {
            let to = if self.sees_jids(viewer.role) {
                &mut seeing
            } else {
                &mut blind
            };
            to.extend(viewer.sessions.iter().cloned());
        }
        // A moderator always sees real JIDs, a visitor only where anyone does (`sees_jids`).
        for (to, role) in [(seeing, Role::Moderator), (blind, Role::Visitor)] {
            if to.is_empty() {
                continue;
            }
            let mut p = self.presence_of(ctx, occ, "", role, unavailable, codes);
            stanza::remove_attr(&mut p, "to");
            out.broadcast(p, to);
        }
    }

    /// A presence from a client to `room/nick` (§7.2, §7.6, §7.14, §7.7.2 presence updates).
    pub fn presence(
        &mut self,
        ctx: &Ctx<'_>,
        from: &FullJid,
        nick: &str,
        stanza: &Element,
        created: bool,
        out: &mut Out,
    ) {
        let current = self.by_session.get(from.as_str()).cloned();
        match (stanza.attr("type"), current) {
            (Some("unavailable") | Some("error"), Some(_)) => {
                self.exit(ctx, from, stanza, &[], out)
            }
            (Some("unavailable") | Some("error"), None) => {}
            (None, Some(old)) if old == nick => self.update(ctx, from, stanza, out),
            (None, Some(old)) => self.change_nick(ctx, &old, nick, stanza, out),
            (None, None) => self.enter(ctx, from, nick, stanza, created, out),
            // Subscriptions and probes mean nothing to a room.
            _ => {}
        }
    }

    /// What a presence says, without its addresses and MUC payloads.
    fn sanitised(stanza: &Element) -> Element {
        let mut p = Element::builder("presence", ns::CLIENT).build();
        for c in stanza.children() {
            if c.is("x", NS_MUC) || c.is("x", NS_USER) || c.is("occupant-id", NS_OCCUPANT_ID) {
                continue;
            }
            p.append_child(c.clone());
        }
        p
    }

    fn enter(
        &mut self,
        ctx: &Ctx<'_>,
        from: &FullJid,
        nick: &str,
        stanza: &Element,
        created: bool,
        out: &mut Out,
    ) {
        let bare = from.to_bare();
        let affiliation = self.affiliation(ctx, bare.as_str());
        let refuse = |out: &mut Out, condition, text: &str| {
            out.stanzas.extend(error(stanza, condition, text));
        };
        if self.locked && affiliation != Affiliation::Owner {
            return refuse(
                out,
                StanzaErrorCondition::ItemNotFound,
                "the room is being set up by its owner (XEP-0045 §10.1.2)",
            );
        }
        if affiliation == Affiliation::Outcast {
            return refuse(
                out,
                StanzaErrorCondition::Forbidden,
                "you are banned from this room",
            );
        }
        if self.config.members_only && affiliation < Affiliation::Member {
            return refuse(
                out,
                StanzaErrorCondition::RegistrationRequired,
                "this room is for members only",
            );
        }
        if let Some(password) = &self.config.password {
            let given = stanza
                .get_child("x", NS_MUC)
                .and_then(|x| x.get_child("password", NS_MUC))
                .map(|p| p.text());
            if affiliation < Affiliation::Owner && given.as_deref() != Some(password.as_str()) {
                return refuse(
                    out,
                    StanzaErrorCondition::NotAuthorized,
                    "a password is needed to enter this room",
                );
            }
        }
        if let Some(holder) = self.occupants.get(nick) {
            if holder.bare != bare {
                return refuse(
                    out,
                    StanzaErrorCondition::Conflict,
                    "that nickname is in use",
                );
            }
        }
        if let Err(e) = self.check_reserved(nick, bare.as_str()) {
            out.stanzas.extend(e.reply_to(stanza));
            return;
        }
        let limit = match self.config.max_users {
            0 => ctx.max_occupants,
            n => n.min(ctx.max_occupants),
        };
        if !self.occupants.contains_key(nick)
            && self.occupants.len() >= limit
            && affiliation < Affiliation::Admin
        {
            return refuse(
                out,
                StanzaErrorCondition::ServiceUnavailable,
                "the room is full",
            );
        }
        let joined_before = self.occupants.contains_key(nick);
        let new_here = !joined_before && !self.occupants.values().any(|o| o.bare == bare);
        if new_here
            && ctx.max_rooms_per_user > 0
            && ctx.user_rooms >= ctx.max_rooms_per_user
            && !ctx.admins.iter().any(|a| a == bare.as_str())
        {
            let text = format!(
                "you are in too many rooms already (at most {})",
                ctx.max_rooms_per_user
            );
            return refuse(out, StanzaErrorCondition::ResourceConstraint, &text);
        }
        out.entered = new_here;
        // The others, as the newcomer sees them (§7.2.3).
        let role = self
            .occupants
            .get(nick)
            .map_or(self.default_role(affiliation), |o| o.role);
        for other in self
            .occupants
            .values()
            .filter(|o| o.nick != nick && (self.shown(o.role) || o.bare == bare))
        {
            out.stanzas
                .push(self.presence_of(ctx, other, from.as_str(), role, false, &[]));
        }
        let id = self.occupant_id(&bare);
        let occ = self
            .occupants
            .entry(nick.to_string())
            .or_insert_with(|| Occupant {
                nick: nick.to_string(),
                bare: bare.clone(),
                sessions: Vec::new(),
                role,
                presence: Element::builder("presence", ns::CLIENT).build(),
                id,
                budget: Bucket::full(ctx),
            });
        occ.sessions.push(from.clone());
        occ.presence = Self::sanitised(stanza);
        self.by_session.insert(from.to_string(), nick.to_string());
        // §7.2.4, §7.2.5, §7.2.12: 110 to the occupant itself, 100 in a non-anonymous room,
        // 170 in a logged one (its archive), 201 for a room just created.
        let mut own = vec![110];
        if self.config.whois_anyone {
            own.push(100);
        }
        if self.config.logging && ctx.archived {
            own.push(170);
        }
        if created {
            own.push(201);
        }
        let occ = &self.occupants[nick];
        if joined_before {
            // Another session of the same occupant: only it hears of it, as itself.
            out.stanzas
                .push(self.presence_of(ctx, occ, from.as_str(), role, false, &own));
        } else {
            // The others first, the newcomer's own last (§7.2.3: it ends the list).
            if self.shown(role) {
                let others = self.occupants.values().filter(|v| v.nick != nick);
                self.presence_to_viewers(ctx, occ, false, &[], others, out);
            }
            let p = self.presence_of(ctx, occ, from.as_str(), role, false, &own);
            out.stanzas.push(p);
        }
        self.send_history(ctx, from, stanza, out);
        // §7.2.15: the subject, even an empty one, ends the entering.
        let subject_from = match self.subject.as_ref().and_then(|s| s.nick.as_deref()) {
            Some(n) => self.room_jid_of(n),
            None => self.jid.to_string(),
        };
        let text = self.subject.as_ref().map_or("", |s| s.text.as_str());
        out.stanzas.push(
            Element::builder("message", ns::CLIENT)
                .attr(xml_ncname!("type").into(), "groupchat")
                .attr(xml_ncname!("from").into(), subject_from)
                .attr(xml_ncname!("to").into(), from.as_str())
                .attr(
                    xml_ncname!("id").into(),
                    format!("subject-{}", rand::random::<u32>()),
                )
                .append(Element::builder("subject", ns::CLIENT).append(text).build())
                .build(),
        );
    }

    /// §7.2.13: the history the newcomer asked for (`<history/>`), at most what is kept.
    fn send_history(&self, ctx: &Ctx<'_>, to: &FullJid, stanza: &Element, out: &mut Out) {
        let asked = stanza
            .get_child("x", NS_MUC)
            .and_then(|x| x.get_child("history", NS_MUC));
        let number = |name: &str| {
            asked
                .and_then(|h| h.attr(name))
                .and_then(|v| v.parse::<usize>().ok())
        };
        let max_stanzas = number("maxstanzas").unwrap_or(usize::MAX);
        let max_chars = number("maxchars").unwrap_or(usize::MAX);
        let since = number("seconds")
            .map(|s| ctx.now - Duration::from_secs(s as u64))
            .or_else(|| {
                asked
                    .and_then(|h| h.attr("since"))
                    .and_then(|s| s.parse::<xmpp_parsers::date::DateTime>().ok())
                    .and_then(|d| u64::try_from(d.0.timestamp()).ok())
                    .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            });
        let mut picked: Vec<&History> = Vec::new();
        let mut chars = 0usize;
        for h in self.history.iter().rev() {
            if picked.len() >= max_stanzas || since.is_some_and(|t| h.at < t) {
                break;
            }
            let size = String::from(&h.message).len();
            if chars + size > max_chars {
                break;
            }
            chars += size;
            picked.push(h);
        }
        for h in picked.into_iter().rev() {
            let mut m = h.message.clone();
            stanza::set_attr(&mut m, xml_ncname!("to").into(), to.as_str());
            stanza::stamp_delay(&mut m, self.jid.as_str(), h.at);
            out.stanzas.push(m);
        }
    }

    /// A presence update of an occupant (§7.7.2: show and status), to everyone.
    fn update(&mut self, ctx: &Ctx<'_>, from: &FullJid, stanza: &Element, out: &mut Out) {
        let Some(nick) = self.by_session.get(from.as_str()).cloned() else {
            return;
        };
        if let Some(occ) = self.occupants.get_mut(&nick) {
            occ.presence = Self::sanitised(stanza);
        }
        let occ = &self.occupants[&nick];
        self.broadcast_presence(ctx, occ, false, &[110], &[], out);
    }

    /// §7.6: an occupant takes another nick (all its sessions with it).
    fn change_nick(
        &mut self,
        ctx: &Ctx<'_>,
        old: &str,
        new: &str,
        stanza: &Element,
        out: &mut Out,
    ) {
        if self.occupants.contains_key(new) {
            out.stanzas.extend(error(
                stanza,
                StanzaErrorCondition::Conflict,
                "that nickname is in use",
            ));
            return;
        }
        let occ = &self.occupants[old];
        if let Err(e) = self.check_reserved(new, occ.bare.as_str()) {
            out.stanzas.extend(e.reply_to(stanza));
            return;
        }
        let shown = self.shown(occ.role);
        // 303 with the new nick in the item, from the old nick, to everyone.
        for viewer in self.occupants.values() {
            let own = viewer.nick == old;
            if !own && !shown {
                continue;
            }
            for session in &viewer.sessions {
                let codes: &[u16] = if own { &[303, 110] } else { &[303] };
                let mut p = self.presence_of(ctx, occ, session.as_str(), viewer.role, true, codes);
                // The item carries the new nick and the occupant's role (§7.6.3).
                if let Some(x) = p.get_child_mut("x", NS_USER) {
                    if let Some(item) = x.get_child_mut("item", NS_USER) {
                        stanza::set_attr(item, xml_ncname!("nick").into(), new);
                        stanza::set_attr(item, xml_ncname!("role").into(), occ.role.as_str());
                    }
                }
                out.stanzas.push(p);
            }
        }
        let mut occ = self.occupants.remove(old).expect("looked up above");
        occ.nick = new.to_string();
        occ.presence = Self::sanitised(stanza);
        for s in &occ.sessions {
            self.by_session.insert(s.to_string(), new.to_string());
        }
        self.occupants.insert(new.to_string(), occ);
        let occ = &self.occupants[new];
        self.broadcast_presence(ctx, occ, false, &[110], &[], out);
    }

    /// §7.14: a session leaves (an unavailable presence, a bounce, or removal with `codes`:
    /// 307 kicked, 301 banned, 321 no longer a member).
    pub fn exit(
        &mut self,
        ctx: &Ctx<'_>,
        from: &FullJid,
        stanza: &Element,
        codes: &[u16],
        out: &mut Out,
    ) {
        let Some(nick) = self.by_session.remove(from.as_str()) else {
            return;
        };
        let Some(occ) = self.occupants.get_mut(&nick) else {
            return;
        };
        occ.sessions.retain(|s| s != from);
        let status_text = stanza.get_child("status", ns::CLIENT).map(|s| s.text());
        let with_status = |mut p: Element| {
            if let Some(t) = &status_text {
                p.append_child(
                    Element::builder("status", ns::CLIENT)
                        .append(t.as_str())
                        .build(),
                );
            }
            p
        };
        let occ = &self.occupants[&nick];
        let mut own: Vec<u16> = codes.to_vec();
        own.push(110);
        let leaving = with_status(self.presence_of(ctx, occ, from.as_str(), occ.role, true, &own));
        if !occ.sessions.is_empty() {
            // Its other sessions stay: only this one hears it left.
            out.stanzas.push(leaving);
            return;
        }
        let occ = self.occupants.remove(&nick).expect("present above");
        // The others never saw an occupant whose role's presence is not broadcast.
        let shown = self.shown(occ.role);
        for viewer in self.occupants.values().filter(|_| shown) {
            for session in &viewer.sessions {
                out.stanzas.push(with_status(self.presence_of(
                    ctx,
                    &occ,
                    session.as_str(),
                    viewer.role,
                    true,
                    codes,
                )));
            }
        }
        out.stanzas.push(leaving);
        if !self.occupants.values().any(|o| o.bare == occ.bare) {
            out.left.push(occ.bare);
        }
        if self.occupants.is_empty() && !self.config.persistent {
            out.destroy = true;
        }
    }

    /// Removes every session of the occupant `nick` with `codes` (kicks, bans): the actor
    /// and the reason go in the unavailable presences' item (§8.2, §9.1).
    pub fn remove_occupant(
        &mut self,
        ctx: &Ctx<'_>,
        nick: &str,
        codes: &[u16],
        why: &Why<'_>,
        out: &mut Out,
    ) {
        let Some(occ) = self.occupants.get(nick) else {
            return;
        };
        let note = Element::builder("presence", ns::CLIENT).build();
        let first = out.stanzas.len();
        for s in occ.sessions.clone() {
            self.exit(ctx, &s, &note, codes, out);
        }
        if why.reason.is_none() && why.actor.is_none() {
            return;
        }
        for p in &mut out.stanzas[first..] {
            let Some(item) = p
                .get_child_mut("x", NS_USER)
                .and_then(|x| x.get_child_mut("item", NS_USER))
            else {
                continue;
            };
            if let Some(actor) = why.actor {
                item.append_child(
                    Element::builder("actor", NS_USER)
                        .attr(xml_ncname!("nick").into(), actor)
                        .build(),
                );
            }
            if let Some(reason) = why.reason {
                item.append_child(Element::builder("reason", NS_USER).append(reason).build());
            }
        }
    }

    /// Sessions in the room, for the destruction of the room and the service's shutdown.
    pub fn sessions(&self) -> Vec<(FullJid, String)> {
        self.occupants
            .values()
            .flat_map(|o| o.sessions.iter().map(|s| (s.clone(), o.nick.clone())))
            .collect()
    }

    /// Sets an occupant's role, broadcasting its presence with `codes` to all.
    pub fn set_role(
        &mut self,
        ctx: &Ctx<'_>,
        nick: &str,
        role: Role,
        codes: &[u16],
        out: &mut Out,
    ) {
        let Some(occ) = self.occupants.get_mut(nick) else {
            return;
        };
        let before = std::mem::replace(&mut occ.role, role);
        let occ = &self.occupants[nick];
        if !self.shown(before) || self.shown(role) {
            self.broadcast_presence(ctx, occ, false, codes, codes, out);
            return;
        }
        // Its presence is no longer broadcast: the others see it leave, it sees its new role.
        for viewer in self.occupants.values() {
            let mine = viewer.nick == occ.nick;
            for session in &viewer.sessions {
                out.stanzas.push(self.presence_of(
                    ctx,
                    occ,
                    session.as_str(),
                    viewer.role,
                    !mine,
                    codes,
                ));
            }
        }
    }

    /// The roles whose presence is broadcast changed from `was`: the others see occupants
    /// that are no longer shown leave, and get the presence of those now shown.
    pub fn presence_broadcast_changed(&self, ctx: &Ctx<'_>, was: RoleSet, out: &mut Out) {
        for occ in self.occupants.values() {
            let shown = self.shown(occ.role);
            if was.contains(occ.role) == shown {
                continue;
            }
            for viewer in self.occupants.values().filter(|v| v.nick != occ.nick) {
                for session in &viewer.sessions {
                    out.stanzas.push(self.presence_of(
                        ctx,
                        occ,
                        session.as_str(),
                        viewer.role,
                        !shown,
                        &[],
                    ));
                }
            }
        }
    }

    /// The nick of the occupant whose bare JID is `bare`, if it is in the room.
    pub fn nick_of_bare(&self, bare: &str) -> Option<String> {
        self.occupants
            .values()
            .find(|o| o.bare.as_str() == bare)
            .map(|o| o.nick.clone())
    }

    /// Gives the newest history message the id the archive gave it.
    pub fn stamp_last_history(&mut self, stanza_id: &Element) {
        if let Some(h) = self.history.back_mut() {
            h.message.append_child(stanza_id.clone());
        }
    }

    pub fn subject_text(&self) -> &str {
        self.subject.as_ref().map_or("", |s| s.text.as_str())
    }
}
