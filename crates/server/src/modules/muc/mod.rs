//! XEP-0045 multi-user chat: a service entity `conference.<domain>` (listed in the server's
//! disco#items) whose rooms live in memory, persistent ones also in storage. Rooms are
//! sans-IO (`room.rs`, `admin.rs`, `config.rs`); this file routes stanzas into them, one at a
//! time per room (its lock is held while what it answers is sent, so every occupant gets a
//! room's stanzas in the order the room made them), and keeps their storage.

mod admin;
mod config;
mod extras;
mod messages;
mod register;
mod room;

use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use rxml::xml_ncname;
use serde::Deserialize;
use tokio::sync::Mutex;
use weft_storage::{StorageError, StoredRoom};
use xmpp_parsers::disco::{DiscoInfoResult, Identity};

use super::{Module, ModuleDef, ModuleSpec, Section};
use crate::compliance::Claim;
use crate::error::StanzaErrorCondition;
use crate::ns;
use crate::stanza::{self, Kind};
use crate::state::ServerState;
use admin::{NS_ADMIN, NS_OWNER};
use room::{error, Broadcast, Ctx, Out, Room, NS_MUC, NS_OCCUPANT_ID, NS_USER};

pub const DEF: ModuleDef = ModuleDef {
    name: "muc",
    default_enabled: true,
    spec: &SPEC,
    build,
};

const NS_PING: &str = "urn:xmpp:ping";
const NS_SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
const NS_CONFERENCE: &str = "jabber:x:conference";
const NS_MAM: &str = "urn:xmpp:mam:2";
pub(super) const NS_SID: &str = "urn:xmpp:sid:0";

static SPEC: ModuleSpec = ModuleSpec {
    service_stanzas: true,
    server_features: &[],
    specs: &[
        Claim::xep(45, "1.35.5", "modules::muc: rooms with configuration (presence broadcast by role, member list access), affiliations, roles, kicks and bans, subject, history, private messages, nick changes, multiple sessions per nick, mediated invitations, persistence, registered nicks (§7.10, §7.12, reserved on the member list), the room archive (XEP-0313), voice requests, room vCards (XEP-0486 avatars), 332 at the service's shutdown, per-user room and message-rate limits; status 170/171 for the room archive, the actor and reason of kicks and bans; no approval of registrations (a registration is granted at once)").partial(),
        Claim::xep(249, "1.2", "routed between clients; modules::muc passes a room's password along"),
        Claim::xep(410, "1.1.0", "modules::muc: self-pings answered by the room"),
        Claim::xep(421, "0.2.0", "modules::muc: occupant ids in presence and messages"),
        Claim::xep(486, "0.1.0", "modules::muc: room vCards set by owners, the photo hash in the room's presence and disco#info"),
    ],
    ..ModuleSpec::named("muc")
};

/// `[modules.muc]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MucSettings {
    /// The service's JID is `SUBDOMAIN.<domain>` for each hosted domain.
    pub subdomain: String,
    /// Its name in disco.
    pub name: String,
    /// Who may create rooms: "local" (accounts of this server), "anyone", or "admins".
    pub create: String,
    /// Bare JIDs that own every room.
    pub admins: Vec<String>,
    /// A new room waits for its owner's configuration (or an instant-room acceptance) before
    /// anyone else may enter (XEP-0045 §10.1.2).
    pub lock_new_rooms: bool,
    /// Messages of discussion history a room may keep at most.
    pub max_history: usize,
    /// Occupants of one room at most.
    pub max_occupants: usize,
    /// New rooms are listed in the directory.
    pub rooms_public: bool,
    /// New rooms outlive their occupants.
    pub rooms_persistent: bool,
    /// Rooms one user (a bare JID, any number of sessions and nicks) may be in at once; entering
    /// one more is refused with `<resource-constraint/>`. The service's admins are not counted.
    /// 0: no limit.
    pub max_rooms_per_user: usize,
    /// Groupchat messages (chat states and subject changes included) one occupant may send per
    /// second on average, a token bucket per occupant; a message beyond it gets
    /// `<resource-constraint/>` (type wait) and reaches nobody. 0: no limit.
    pub occupant_message_rate: f64,
    /// Messages an occupant may send at once before `occupant_message_rate` holds it back.
    pub occupant_message_burst: u32,
}

impl Default for MucSettings {
    fn default() -> Self {
        MucSettings {
            subdomain: "conference".into(),
            name: "Chatrooms".into(),
            create: "local".into(),
            admins: Vec::new(),
            lock_new_rooms: true,
            max_history: 100,
            max_occupants: 1000,
            rooms_public: true,
            rooms_persistent: false,
            max_rooms_per_user: 100,
            occupant_message_rate: 2.0,
            occupant_message_burst: 10,
        }
    }
}

fn build(section: &Section) -> Result<Arc<dyn Module>, Vec<weft_config::ConfigError>> {
    let settings: MucSettings = section.parse()?;
    let mut problems = Vec::new();
    if !matches!(settings.create.as_str(), "local" | "anyone" | "admins") {
        problems.push(section.error("create", "must be \"local\", \"anyone\" or \"admins\""));
    }
    if settings.subdomain.is_empty() || settings.subdomain.contains(['.', '@', '/']) {
        problems.push(section.error("subdomain", "must be one DNS label, like \"conference\""));
    }
    for a in &settings.admins {
        if BareJid::new(a).is_err() {
            problems.push(section.error("admins", format!("'{a}' is not a bare JID")));
        }
    }
    if settings.max_occupants == 0 {
        problems.push(section.error("max_occupants", "must be at least 1"));
    }
    let rate = settings.occupant_message_rate;
    if !rate.is_finite() || rate < 0.0 {
        problems.push(section.error(
            "occupant_message_rate",
            "must be a number of messages per second, 0 for no limit",
        ));
    }
    if rate > 0.0 && settings.occupant_message_burst == 0 {
        problems.push(section.error(
            "occupant_message_burst",
            "must be at least 1 while occupant_message_rate is set",
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(Muc {
        settings,
        rooms: DashMap::new(),
        user_rooms: DashMap::new(),
        archived: std::sync::atomic::AtomicBool::new(false),
    }))
}

pub struct Muc {
    settings: MucSettings,
    /// Room bare JID → room.
    rooms: DashMap<String, Arc<Mutex<Room>>>,
    /// Bare JID → the number of rooms it is in (`max_rooms_per_user`).
    user_rooms: DashMap<String, usize>,
    /// Whether rooms have an archive (the mam module is loaded); set at start.
    archived: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Module for Muc {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn service(&self) -> Option<(&str, &str)> {
        Some((
            self.settings.subdomain.as_str(),
            self.settings.name.as_str(),
        ))
    }

    async fn start(&self, state: &Arc<ServerState>) -> Result<(), StorageError> {
        let archived = state.modules.find::<crate::modules::mam::Mam>().is_some();
        self.archived
            .store(archived, std::sync::atomic::Ordering::Relaxed);
        for domain in &state.config.server.domains {
            let service = format!("{}.{domain}", self.settings.subdomain);
            for stored in state.storage.muc.muc_rooms(&service).await? {
                let jid = match BareJid::new(&format!("{}@{service}", stored.name)) {
                    Ok(j) => j,
                    Err(e) => {
                        tracing::warn!(room = stored.name, "stored room skipped: {e}");
                        continue;
                    }
                };
                match serde_json::from_str::<room::Saved>(&stored.data) {
                    Ok(saved) => {
                        self.rooms.insert(
                            jid.to_string(),
                            Arc::new(Mutex::new(Room::restore(jid, saved))),
                        );
                    }
                    Err(e) => tracing::warn!(room = %jid, "stored room unreadable, skipped: {e}"),
                }
            }
        }
        if !self.rooms.is_empty() {
            tracing::info!(rooms = self.rooms.len(), "loaded persistent MUC rooms");
        }
        Ok(())
    }

    /// The server stops: every occupant of every room hears it is out (status 332) while its
    /// session still takes stanzas. Persistent rooms stay stored; nothing is saved here.
    async fn stopping(&self, state: &Arc<ServerState>) {
        let rooms: Vec<Arc<Mutex<Room>>> = self.rooms.iter().map(|r| r.value().clone()).collect();
        let ctx = self.ctx();
        for room in rooms {
            let mut room = room.lock().await;
            let mut out = Out::default();
            room.shut_down(&ctx, &mut out);
            for el in out.stanzas {
                crate::router::dispatch(state, el).await;
            }
        }
        self.user_rooms.clear();
    }

    async fn service_stanza(
        &self,
        state: &Arc<ServerState>,
        stanza: Element,
        kind: Kind,
        from: &Jid,
        to: &Jid,
    ) -> Vec<Element> {
        if to.node().is_none() {
            return self.to_service(&stanza, kind, to);
        }
        let Ok(from) = from.clone().try_into_full() else {
            // Rooms talk with clients' sessions, not bare JIDs or servers.
            return error(
                &stanza,
                StanzaErrorCondition::BadRequest,
                "rooms talk with full JIDs",
            )
            .into_iter()
            .collect();
        };
        let room_jid = to.to_bare();
        let nick = to.resource().map(|r| r.as_str().to_owned());
        let entering = kind == Kind::Presence && stanza.attr("type").is_none();
        let (room, created) = match self.rooms.get(room_jid.as_str()).map(|r| r.clone()) {
            Some(room) => (room, false),
            None if entering && nick.is_some() => {
                if !self.may_create(state, &from) {
                    return error(
                        &stanza,
                        StanzaErrorCondition::NotAllowed,
                        "you may not create rooms here",
                    )
                    .into_iter()
                    .collect();
                }
                let room = self.create(&room_jid, &from);
                (room, true)
            }
            None => {
                if kind == Kind::Presence {
                    return Vec::new();
                }
                return error(&stanza, StanzaErrorCondition::ItemNotFound, "no such room")
                    .into_iter()
                    .collect();
            }
        };
        if kind == Kind::Iq && nick.is_none() {
            if let Some(payload) = stanza.children().next().filter(|p| p.has_ns(NS_MAM)) {
                return self
                    .archive_query(state, &room, &from, &room_jid, &stanza, payload)
                    .await;
            }
        }
        let mut room = room.lock().await;
        let mut ctx = self.ctx();
        if entering && self.settings.max_rooms_per_user > 0 {
            ctx.user_rooms = self
                .user_rooms
                .get(from.to_bare().as_str())
                .map_or(0, |n| *n);
        }
        let mut out = Out::default();
        match (kind, nick.as_deref()) {
            (Kind::Presence, Some(nick)) => {
                room.presence(&ctx, &from, nick, &stanza, created, &mut out)
            }
            (Kind::Presence, None) => {
                if stanza.attr("type").is_none() {
                    out.stanzas.extend(error(
                        &stanza,
                        StanzaErrorCondition::JidMalformed,
                        "enter a room as room@service/nick (XEP-0045 §7.2.1)",
                    ));
                }
            }
            (Kind::Message, Some(nick)) => {
                if stanza.attr("type") == Some("error") {
                    room.exit(&ctx, &from, &stanza, &[], &mut out);
                } else {
                    room.private_message(&from, nick, stanza, &mut out);
                }
            }
            (Kind::Message, None) => self.room_message(&ctx, &mut room, &from, stanza, &mut out),
            (Kind::Iq, Some(nick)) => room.occupant_iq(&from, nick, &stanza, &mut out),
            (Kind::Iq, None) => self.room_iq(&ctx, &mut room, &from, &stanza, &mut out),
        }
        self.count_rooms(&room, &from, &mut out);
        self.archive(state, &mut room, &mut out).await;
        self.finish(state, &mut room, out, &from).await
    }
}

impl Muc {
    /// What the service lends a room for one call.
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            now: SystemTime::now(),
            admins: &self.settings.admins,
            max_history: self.settings.max_history,
            max_occupants: self.settings.max_occupants,
            user_rooms: 0,
            max_rooms_per_user: self.settings.max_rooms_per_user,
            message_rate: self.settings.occupant_message_rate,
            message_burst: f64::from(self.settings.occupant_message_burst),
            archived: self.archived.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Counts the rooms each user is in (`max_rooms_per_user`) after a call into `room`.
    fn count_rooms(&self, room: &Room, from: &FullJid, out: &mut Out) {
        if out.entered {
            *self
                .user_rooms
                .entry(from.to_bare().to_string())
                .or_insert(0) += 1;
        }
        if out.destroy {
            // Gone without each occupant leaving (a new room's configuration cancelled).
            for occ in room.occupants.values() {
                if !out.left.contains(&occ.bare) {
                    out.left.push(occ.bare.clone());
                }
            }
        }
        for bare in out.left.drain(..) {
            if let dashmap::mapref::entry::Entry::Occupied(mut n) =
                self.user_rooms.entry(bare.to_string())
            {
                if *n.get() <= 1 {
                    n.remove();
                } else {
                    *n.get_mut() -= 1;
                }
            }
        }
    }

    /// XEP-0313 on rooms: the message to everyone goes to the room's archive, and each copy
    /// (and the history) gets the `<stanza-id by='room'/>` it was given.
    async fn archive(&self, state: &Arc<ServerState>, room: &mut Room, out: &mut Out) {
        let Some((nick, index)) = out.archive.take() else {
            return;
        };
        let Some(broadcast) = out.broadcast.get_mut(index) else {
            return;
        };
        let Some(mam) = state.modules.find::<crate::modules::mam::Mam>() else {
            return;
        };
        let message = &mut broadcast.message;
        let Some(id) = mam.archive_room_message(&room.jid, &nick, message).await else {
            return;
        };
        let stanza_id = Element::builder("stanza-id", NS_SID)
            .attr(xml_ncname!("id").into(), id.to_string())
            .attr(xml_ncname!("by").into(), room.jid.as_str())
            .build();
        if message.has_child("body", ns::CLIENT) {
            room.stamp_last_history(&stanza_id);
        }
        message.append_child(stanza_id);
    }

    /// A query of the room's archive (XEP-0313 §4 on a MUC): for occupants, members, and
    /// anyone when the room is public and open.
    async fn archive_query(
        &self,
        state: &Arc<ServerState>,
        room: &Mutex<Room>,
        from: &FullJid,
        room_jid: &BareJid,
        iq: &Element,
        payload: &Element,
    ) -> Vec<Element> {
        let ctx = self.ctx();
        let (allowed, logging) = {
            let room = room.lock().await;
            let affiliation = room.affiliation(&ctx, from.to_bare().as_str());
            let allowed = room.occupant_of(from.as_str()).is_some()
                || affiliation >= room::Affiliation::Member
                || room.config.public
                    && !room.config.members_only
                    && affiliation != room::Affiliation::Outcast;
            (allowed, room.config.logging)
        };
        let refuse = |condition, text: &str| error(iq, condition, text).into_iter().collect();
        let Some(mam) = state
            .modules
            .find::<crate::modules::mam::Mam>()
            .filter(|_| logging)
        else {
            return refuse(
                StanzaErrorCondition::FeatureNotImplemented,
                "this room keeps no archive",
            );
        };
        if !allowed {
            return refuse(
                StanzaErrorCondition::Forbidden,
                "only occupants and members read this room's archive",
            );
        }
        let is_set = match iq.attr("type") {
            Some("get") => false,
            Some("set") => true,
            _ => return Vec::new(),
        };
        let from_jid = Jid::from(from.clone());
        let to_jid = Jid::from(room_jid.clone());
        let req = crate::modules::IqRequest {
            iq,
            payload,
            from: &from_jid,
            to: &to_jid,
            is_set,
        };
        match mam.query_room(state, &req, room_jid).await {
            crate::modules::IqOutcome::Result(p) => vec![stanza::iq_result(iq, p)],
            crate::modules::IqOutcome::ResultAfter(mut before, p) => {
                before.push(stanza::iq_result(iq, p));
                before
            }
            crate::modules::IqOutcome::Error(e) => e.reply_to(iq).into_iter().collect(),
            crate::modules::IqOutcome::NotMine => {
                refuse(StanzaErrorCondition::ServiceUnavailable, "")
            }
        }
    }

    fn may_create(&self, state: &ServerState, from: &FullJid) -> bool {
        let bare = from.to_bare();
        match self.settings.create.as_str() {
            "anyone" => true,
            "admins" => self.settings.admins.iter().any(|a| a == bare.as_str()),
            _ => state.is_local_domain(from.domain().as_str()),
        }
    }

    fn create(&self, jid: &BareJid, owner: &FullJid) -> Arc<Mutex<Room>> {
        let config = config::RoomConfig {
            public: self.settings.rooms_public,
            persistent: self.settings.rooms_persistent,
            history_length: 20.min(self.settings.max_history),
            ..config::RoomConfig::default()
        };
        let mut room = Room::new(jid.clone(), config);
        room.affiliations
            .insert(owner.to_bare().to_string(), room::Affiliation::Owner);
        room.locked = self.settings.lock_new_rooms;
        let room = Arc::new(Mutex::new(room));
        // Two first entries at once: the first one made it.
        self.rooms.entry(jid.to_string()).or_insert(room).clone()
    }

    /// Sends what the room made (those for the sender come back to it, in order), and
    /// stores or forgets the room.
    async fn finish(
        &self,
        state: &Arc<ServerState>,
        room: &mut Room,
        out: Out,
        sender: &FullJid,
    ) -> Vec<Element> {
        let mut back = Vec::new();
        // A message's copies all come from one occupant JID: parsed once, not per copy.
        let mut last_from: Option<Jid> = None;
        let mut broadcasts = out.broadcast.into_iter().peekable();
        for (i, el) in out.stanzas.into_iter().enumerate() {
            // In the order the room made them (a broadcast before the i-th stanza goes first).
            while let Some(b) = broadcasts.next_if(|b| b.at <= i) {
                self.broadcast(state, b, sender, &mut back).await;
            }
            if el.attr("to") == Some(sender.as_str()) {
                back.push(el);
                continue;
            }
            let (Some(kind), Some(Ok(to)), Some(from)) = (
                Kind::of(&el, ns::CLIENT),
                el.attr("to").map(Jid::new),
                el.attr("from"),
            ) else {
                crate::router::dispatch(state, el).await;
                continue;
            };
            if last_from.as_ref().is_none_or(|f| f.as_str() != from) {
                match Jid::new(from) {
                    Ok(from) => last_from = Some(from),
                    Err(_) => continue,
                }
            }
            if let Some(from) = &last_from {
                crate::router::send_addressed(state, el, kind, from, to).await;
            }
        }
        for b in broadcasts {
            self.broadcast(state, b, sender, &mut back).await;
        }
        let (service, name) = (
            room.jid.domain().as_str(),
            room.jid.node().map_or("", |n| n.as_str()),
        );
        if out.destroy {
            self.rooms.remove(room.jid.as_str());
            if let Some(mam) = state.modules.find::<crate::modules::mam::Mam>() {
                mam.remove_room_archive(state, &room.jid).await;
            }
            if let Err(e) = state.storage.muc.remove_muc_room(service, name).await {
                tracing::warn!(room = %room.jid, "removing the stored room failed: {e}");
            }
        } else if out.save {
            let result = if room.config.persistent {
                let data = serde_json::to_string(&room.saved()).unwrap_or_default();
                state
                    .storage
                    .muc
                    .save_muc_room(&StoredRoom {
                        service: service.to_owned(),
                        name: name.to_owned(),
                        data,
                    })
                    .await
            } else {
                state
                    .storage
                    .muc
                    .remove_muc_room(service, name)
                    .await
                    .map(|_| ())
            };
            if let Err(e) = result {
                tracing::warn!(room = %room.jid, "storing the room failed: {e}");
            }
        }
        back
    }

    /// Sends one stanza of a room to many sessions: the sender's copy into `back`; a session
    /// on a plain connection that no module watches gets bytes serialised once for all
    /// (`framing::Copies`); every other one an element through the router.
    async fn broadcast(
        &self,
        state: &Arc<ServerState>,
        broadcast: Broadcast,
        sender: &FullJid,
        back: &mut Vec<Element>,
    ) {
        let (Some(kind), Some(Ok(from))) = (
            Kind::of(&broadcast.message, ns::CLIENT),
            broadcast.message.attr("from").map(Jid::new),
        ) else {
            return;
        };
        let copies = crate::framing::Copies::new(broadcast.message);
        let watched = state
            .modules
            .wants(crate::modules::StanzaHook::to_local(kind));
        for to in broadcast.to {
            if to == *sender {
                back.push(copies.element_to(to.as_str()));
                continue;
            }
            let account = stanza::bare_part(to.as_str());
            if !(watched && state.modules.concerned_by_room_copies(kind, account))
                && state.sessions.write_copy(&to, &copies)
            {
                continue;
            }
            let el = copies.element_to(to.as_str());
            crate::router::send_addressed(state, el, kind, &from, Jid::from(to)).await;
        }
    }

    /// A message to the room itself: groupchat, a bounce of one, invitations.
    fn room_message(
        &self,
        ctx: &Ctx<'_>,
        room: &mut Room,
        from: &FullJid,
        stanza: Element,
        out: &mut Out,
    ) {
        match stanza.attr("type") {
            Some("groupchat") => room.groupchat(ctx, from, stanza, out),
            // A bounce from an occupant's server: that session is gone.
            Some("error") => room.exit(ctx, from, &stanza, &[], out),
            _ if stanza.has_child("x", NS_USER) => room.invitations(ctx, from, &stanza, out),
            _ if extras::request_form(&stanza).is_some() => {
                room.voice_request(ctx, from, &stanza, out)
            }
            _ => out.stanzas.extend(error(
                &stanza,
                StanzaErrorCondition::BadRequest,
                "send groupchat messages to the room",
            )),
        }
    }

    /// An IQ to the room's bare JID.
    fn room_iq(&self, ctx: &Ctx<'_>, room: &mut Room, from: &FullJid, iq: &Element, out: &mut Out) {
        let is_set = match iq.attr("type") {
            Some("get") => false,
            Some("set") => true,
            _ => return,
        };
        let Some(payload) = iq.children().next() else {
            out.stanzas
                .extend(error(iq, StanzaErrorCondition::BadRequest, ""));
            return;
        };
        let answer = match (payload.name(), payload.ns().as_str(), is_set) {
            ("query", ns::DISCO_INFO, false) => match payload.attr("node") {
                None => Ok(Some(self.room_info(room))),
                Some(register::NODE_ROOMUSER) => Ok(Some(room.reserved_nick_info(from))),
                Some(_) => Err(crate::error::StanzaError::new(
                    StanzaErrorCondition::ItemNotFound,
                )),
            },
            ("query", ns::DISCO_ITEMS, false) => {
                let mut q = Element::builder("query", ns::DISCO_ITEMS).build();
                if room.occupant_of(from.as_str()).is_some() {
                    let bare = from.to_bare();
                    let listed = room
                        .occupants
                        .iter()
                        .filter(|(_, o)| room.shown(o.role) || o.bare == bare);
                    for (nick, _) in listed {
                        q.append_child(
                            Element::builder("item", ns::DISCO_ITEMS)
                                .attr(xml_ncname!("jid").into(), format!("{}/{nick}", room.jid))
                                .build(),
                        );
                    }
                }
                Ok(Some(q))
            }
            ("query", NS_ADMIN, false) => room.admin_get(ctx, from, payload).map(Some),
            ("query", NS_ADMIN, true) => room.admin_set(ctx, from, payload, out).map(|_| None),
            ("query", NS_OWNER, false) => room.owner_get(ctx, from, payload).map(Some),
            ("query", NS_OWNER, true) => room.owner_set(ctx, from, payload, out).map(|_| None),
            ("query", register::NS_REGISTER, false) => room.register_get(ctx, from).map(Some),
            ("query", register::NS_REGISTER, true) => {
                room.register_set(ctx, from, payload, out).map(|_| None)
            }
            ("ping", NS_PING, false) => Ok(None),
            ("vCard", extras::NS_VCARD, false) => Ok(Some(room.vcard_get())),
            ("vCard", extras::NS_VCARD, true) => {
                room.vcard_set(ctx, from, payload, out).map(|_| None)
            }
            _ => {
                out.stanzas
                    .extend(error(iq, StanzaErrorCondition::ServiceUnavailable, ""));
                return;
            }
        };
        match answer {
            // The result goes first: what the change made follows it.
            Ok(payload) => out.stanzas.insert(0, stanza::iq_result(iq, payload)),
            Err(e) => out.stanzas.extend(e.reply_to(iq)),
        }
    }

    fn room_info(&self, room: &Room) -> Element {
        let name = if room.config.name.is_empty() {
            room.jid.node().map_or("", |n| n.as_str()).to_string()
        } else {
            room.config.name.clone()
        };
        let mut features: std::collections::BTreeSet<String> = [
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            NS_MUC,
            NS_OCCUPANT_ID,
            NS_SELF_PING,
            NS_CONFERENCE,
            extras::NS_VCARD,
            extras::FORM_REQUEST,
            register::NS_REGISTER,
        ]
        .into_iter()
        .map(String::from)
        .collect();
        features.extend(config::features(&room.config).into_iter().map(String::from));
        let mut info: Element = DiscoInfoResult {
            node: None,
            identities: vec![Identity::new("conference", "text", "en", name)],
            features,
            extensions: vec![],
        }
        .into();
        let avatar = room.avatar_hash();
        info.append_child(config::info_form(
            &room.config,
            room.occupants.len(),
            room.subject_text(),
            avatar.as_deref(),
        ));
        info
    }

    /// Stanzas to the service's own JID: disco, and nothing else.
    fn to_service(&self, stanza: &Element, kind: Kind, to: &Jid) -> Vec<Element> {
        if kind != Kind::Iq {
            return Vec::new();
        }
        let get = stanza.attr("type") == Some("get");
        let payload = stanza.children().next();
        let answer = match payload {
            Some(p) if get && p.is("query", ns::DISCO_INFO) && p.attr("node").is_none() => {
                let info: Element = DiscoInfoResult {
                    node: None,
                    identities: vec![Identity::new(
                        "conference",
                        "text",
                        "en",
                        self.settings.name.as_str(),
                    )],
                    features: [
                        ns::DISCO_INFO,
                        ns::DISCO_ITEMS,
                        NS_MUC,
                        NS_OCCUPANT_ID,
                        NS_SELF_PING,
                    ]
                    .into_iter()
                    .map(String::from)
                    .collect(),
                    extensions: vec![],
                }
                .into();
                Some(info)
            }
            Some(p) if get && p.is("query", ns::DISCO_ITEMS) && p.attr("node").is_none() => {
                let service = to.domain().as_str();
                let mut q = Element::builder("query", ns::DISCO_ITEMS).build();
                let mut public: Vec<(String, String)> = Vec::new();
                for entry in self.rooms.iter() {
                    let Ok(room) = entry.value().try_lock() else {
                        continue;
                    };
                    if room.jid.domain().as_str() != service || !room.config.public || room.locked {
                        continue;
                    }
                    let name = if room.config.name.is_empty() {
                        room.jid.node().map_or("", |n| n.as_str()).to_string()
                    } else {
                        room.config.name.clone()
                    };
                    public.push((room.jid.to_string(), name));
                }
                public.sort();
                for (jid, name) in public {
                    q.append_child(
                        Element::builder("item", ns::DISCO_ITEMS)
                            .attr(xml_ncname!("jid").into(), jid)
                            .attr(xml_ncname!("name").into(), name)
                            .build(),
                    );
                }
                Some(q)
            }
            _ => None,
        };
        match answer {
            Some(payload) => vec![stanza::iq_result(stanza, Some(payload))],
            None => error(stanza, StanzaErrorCondition::ServiceUnavailable, "")
                .into_iter()
                .collect(),
        }
    }
}
