//! XEP-0045 §8 (moderator), §9 (admin) and §10 (owner) use cases: kicks, voice, bans,
//! affiliation and role lists, configuration, destruction. No I/O.

use jid::{FullJid, Jid};
use minidom::Element;
use rxml::xml_ncname;

use super::config::{self, RoomConfig};
use super::room::{Affiliation, Ctx, Out, Role, Room, Why, NS_USER};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;

pub const NS_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const NS_OWNER: &str = "http://jabber.org/protocol/muc#owner";

fn refuse(condition: StanzaErrorCondition, text: &str) -> StanzaError {
    StanzaError::new(condition).with_text(text)
}

/// One change an admin request asks for.
enum Change {
    Role {
        nick: String,
        role: Role,
        reason: Option<String>,
    },
    Affiliation {
        jid: String,
        affiliation: Affiliation,
        reason: Option<String>,
        /// §9.5: the reserved nick to set, or (empty) to drop.
        nick: Option<String>,
    },
}

impl Room {
    fn actor(&self, ctx: &Ctx<'_>, from: &FullJid) -> (Affiliation, Role) {
        let affiliation = self.affiliation(ctx, from.to_bare().as_str());
        let role = self
            .occupant_of(from.as_str())
            .map_or(Role::None, |o| o.role);
        (affiliation, role)
    }

    /// §9.5, §8.5, §9.8: the list of one affiliation or role.
    pub fn admin_get(
        &self,
        ctx: &Ctx<'_>,
        from: &FullJid,
        query: &Element,
    ) -> Result<Element, StanzaError> {
        let (actor_aff, actor_role) = self.actor(ctx, from);
        let item = query.get_child("item", NS_ADMIN).ok_or_else(|| {
            refuse(
                StanzaErrorCondition::BadRequest,
                "name an affiliation or a role",
            )
        })?;
        let mut result = Element::builder("query", NS_ADMIN).build();
        if let Some(a) = item.attr("affiliation") {
            let wanted = Affiliation::parse(a)
                .filter(|a| *a != Affiliation::None)
                .ok_or_else(|| {
                    refuse(StanzaErrorCondition::BadRequest, "no such affiliation list")
                })?;
            // §7.11: members, and occupants whose role `muc#roomconfig_getmemberlist` names.
            let members_visible = wanted == Affiliation::Member
                && (actor_aff >= Affiliation::Member
                    || self.config.get_member_list.contains(actor_role));
            if actor_aff < Affiliation::Admin && !members_visible {
                return Err(refuse(
                    StanzaErrorCondition::Forbidden,
                    "only admins see affiliation lists",
                ));
            }
            for (jid, aff) in self.affiliations.iter().filter(|(_, a)| **a == wanted) {
                let mut i = Element::builder("item", NS_ADMIN)
                    .attr(xml_ncname!("affiliation").into(), aff.as_str())
                    .attr(xml_ncname!("jid").into(), jid.as_str());
                // §9.5: the reserved nick, else the one in use.
                if let Some(nick) = self
                    .nicks
                    .get(jid)
                    .cloned()
                    .or_else(|| self.nick_of_bare(jid))
                {
                    i = i.attr(xml_ncname!("nick").into(), nick);
                }
                result.append_child(i.build());
            }
            return Ok(result);
        }
        if let Some(r) = item.attr("role") {
            let wanted = Role::parse(r)
                .filter(|r| *r != Role::None)
                .ok_or_else(|| refuse(StanzaErrorCondition::BadRequest, "no such role list"))?;
            if actor_role != Role::Moderator {
                return Err(refuse(
                    StanzaErrorCondition::Forbidden,
                    "only moderators see role lists",
                ));
            }
            for occ in self.occupants.values().filter(|o| o.role == wanted) {
                let mut i = Element::builder("item", NS_ADMIN)
                    .attr(xml_ncname!("role").into(), occ.role.as_str())
                    .attr(xml_ncname!("nick").into(), occ.nick.as_str())
                    .attr(
                        xml_ncname!("affiliation").into(),
                        self.affiliation(ctx, occ.bare.as_str()).as_str(),
                    );
                if let Some(s) = occ.sessions.first() {
                    i = i.attr(xml_ncname!("jid").into(), s.as_str());
                }
                result.append_child(i.build());
            }
            return Ok(result);
        }
        Err(refuse(
            StanzaErrorCondition::BadRequest,
            "name an affiliation or a role",
        ))
    }

    /// §8 and §9: role and affiliation changes, all checked before any is made.
    pub fn admin_set(
        &mut self,
        ctx: &Ctx<'_>,
        from: &FullJid,
        query: &Element,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        let (actor_aff, actor_role) = self.actor(ctx, from);
        let mut changes = Vec::new();
        for item in query.children().filter(|c| c.is("item", NS_ADMIN)) {
            let reason = item.get_child("reason", NS_ADMIN).map(|r| r.text());
            if let (Some(nick), Some(role)) = (item.attr("nick"), item.attr("role")) {
                let role = Role::parse(role)
                    .ok_or_else(|| refuse(StanzaErrorCondition::BadRequest, "no such role"))?;
                let target = self.occupants.get(nick).ok_or_else(|| {
                    refuse(
                        StanzaErrorCondition::ItemNotFound,
                        "no occupant has that nickname",
                    )
                })?;
                let target_aff = self.affiliation(ctx, target.bare.as_str());
                let allowed = match role {
                    // §8.2 kick, §8.3/8.4 voice: moderators, never against an admin or owner.
                    Role::None | Role::Visitor | Role::Participant => {
                        actor_role == Role::Moderator
                            && target_aff < Affiliation::Admin
                            && (target.role < Role::Moderator || actor_aff >= Affiliation::Admin)
                    }
                    // §9.6 grant moderator: admins and owners.
                    Role::Moderator => actor_aff >= Affiliation::Admin,
                };
                if !allowed {
                    let condition =
                        if actor_role == Role::Moderator || actor_aff >= Affiliation::Admin {
                            StanzaErrorCondition::NotAllowed
                        } else {
                            StanzaErrorCondition::Forbidden
                        };
                    return Err(refuse(condition, "you may not change that occupant's role"));
                }
                changes.push(Change::Role {
                    nick: nick.to_string(),
                    role,
                    reason,
                });
            } else if let (Some(jid), Some(aff)) = (item.attr("jid"), item.attr("affiliation")) {
                let affiliation = Affiliation::parse(aff).ok_or_else(|| {
                    refuse(StanzaErrorCondition::BadRequest, "no such affiliation")
                })?;
                let jid = Jid::new(jid)
                    .map_err(|_| refuse(StanzaErrorCondition::JidMalformed, "not a JID"))?
                    .to_bare()
                    .to_string();
                let current = self
                    .affiliations
                    .get(&jid)
                    .copied()
                    .unwrap_or(Affiliation::None);
                if actor_aff < Affiliation::Admin {
                    return Err(refuse(
                        StanzaErrorCondition::Forbidden,
                        "only admins and owners change affiliations",
                    ));
                }
                // §9: admins manage members and outcasts; owners manage admins and owners too.
                if (affiliation >= Affiliation::Admin || current >= Affiliation::Admin)
                    && actor_aff < Affiliation::Owner
                {
                    return Err(refuse(
                        StanzaErrorCondition::NotAllowed,
                        "only owners change admins and owners",
                    ));
                }
                // §9.5: a nick reserves it for a member; an empty one drops the reservation.
                let nick = match item.attr("nick") {
                    Some("") => Some(String::new()),
                    Some(n) if affiliation >= Affiliation::Member => Some(self.nick_for(&jid, n)?),
                    _ => None,
                };
                changes.push(Change::Affiliation {
                    jid,
                    affiliation,
                    reason,
                    nick,
                });
            } else {
                return Err(refuse(
                    StanzaErrorCondition::BadRequest,
                    "an item names a nick and a role, or a jid and an affiliation",
                ));
            }
        }
        // §10.5: the last owner stays.
        let mut owners: Vec<&String> = self
            .affiliations
            .iter()
            .filter(|(_, a)| **a == Affiliation::Owner)
            .map(|(j, _)| j)
            .collect();
        for c in &changes {
            if let Change::Affiliation {
                jid, affiliation, ..
            } = c
            {
                if *affiliation != Affiliation::Owner {
                    owners.retain(|o| *o != jid);
                }
            }
        }
        let gains_owner = changes.iter().any(|c| {
            matches!(
                c,
                Change::Affiliation {
                    affiliation: Affiliation::Owner,
                    ..
                }
            )
        });
        if owners.is_empty()
            && !gains_owner
            && self.affiliations.values().any(|a| *a == Affiliation::Owner)
        {
            return Err(refuse(
                StanzaErrorCondition::Conflict,
                "a room keeps at least one owner",
            ));
        }
        // §8.2, §9.1: the moderator's nick as the actor, when it is in the room.
        let actor_nick = self.occupant_of(from.as_str()).map(|o| o.nick.clone());
        for c in changes {
            match c {
                Change::Role {
                    nick,
                    role: Role::None,
                    reason,
                } => {
                    let why = Why {
                        reason: reason.as_deref(),
                        actor: actor_nick.as_deref(),
                    };
                    self.remove_occupant(ctx, &nick, &[307], &why, out);
                }
                Change::Role { nick, role, .. } => self.set_role(ctx, &nick, role, &[], out),
                Change::Affiliation {
                    jid,
                    affiliation,
                    reason,
                    nick,
                } => {
                    match nick {
                        Some(n) if n.is_empty() => {
                            self.nicks.remove(&jid);
                        }
                        Some(n) => {
                            self.nicks.insert(jid.clone(), n);
                        }
                        None => {}
                    }
                    let why = Why {
                        reason: reason.as_deref(),
                        actor: actor_nick.as_deref(),
                    };
                    self.set_affiliation(ctx, &jid, affiliation, &why, out);
                }
            }
        }
        Ok(())
    }

    /// Records an affiliation and tells the room: a banned occupant leaves (301), one that is
    /// no longer a member of a members-only room too (321), others get their new role.
    pub fn set_affiliation(
        &mut self,
        ctx: &Ctx<'_>,
        jid: &str,
        affiliation: Affiliation,
        why: &Why<'_>,
        out: &mut Out,
    ) {
        if affiliation == Affiliation::None {
            self.affiliations.remove(jid);
        } else {
            self.affiliations.insert(jid.to_string(), affiliation);
        }
        if affiliation < Affiliation::Member {
            // A reservation goes with the membership (§9.2: a ban drops it).
            self.nicks.remove(jid);
        }
        out.save = true;
        let Some(nick) = self.nick_of_bare(jid) else {
            return;
        };
        if affiliation == Affiliation::Outcast {
            self.remove_occupant(ctx, &nick, &[301], why, out);
        } else if self.config.members_only && affiliation < Affiliation::Member {
            self.remove_occupant(ctx, &nick, &[321], why, out);
        } else {
            let role = self.default_role(affiliation);
            self.set_role(ctx, &nick, role, &[], out);
        }
    }

    /// §10.2: the configuration form, for owners.
    pub fn owner_get(
        &self,
        ctx: &Ctx<'_>,
        from: &FullJid,
        query: &Element,
    ) -> Result<Element, StanzaError> {
        let (actor_aff, _) = self.actor(ctx, from);
        if actor_aff != Affiliation::Owner {
            return Err(refuse(
                StanzaErrorCondition::Forbidden,
                "only owners configure the room",
            ));
        }
        if query.children().next().is_some() {
            return Err(refuse(
                StanzaErrorCondition::BadRequest,
                "a configuration request is empty",
            ));
        }
        let list = |wanted| -> Vec<String> {
            self.affiliations
                .iter()
                .filter(|(_, a)| **a == wanted)
                .map(|(j, _)| j.clone())
                .collect()
        };
        Ok(Element::builder("query", NS_OWNER)
            .append(config::form(
                &self.config,
                &list(Affiliation::Owner),
                &list(Affiliation::Admin),
                ctx.max_history,
            ))
            .build())
    }

    /// §10.1.2-§10.2 (submit, cancel) and §10.9 (destroy), for owners.
    pub fn owner_set(
        &mut self,
        ctx: &Ctx<'_>,
        from: &FullJid,
        query: &Element,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        let (actor_aff, _) = self.actor(ctx, from);
        if actor_aff != Affiliation::Owner {
            return Err(refuse(
                StanzaErrorCondition::Forbidden,
                "only owners configure or destroy the room",
            ));
        }
        if let Some(destroy) = query.get_child("destroy", NS_OWNER) {
            self.destroy(destroy, out);
            return Ok(());
        }
        let Some(x) = query.get_child("x", config::NS_DATA) else {
            return Err(refuse(
                StanzaErrorCondition::BadRequest,
                "submit or cancel the configuration form",
            ));
        };
        match x.attr("type") {
            Some("cancel") => {
                // §10.1.3: cancelling the first configuration destroys the room.
                if self.locked {
                    out.destroy = true;
                }
                Ok(())
            }
            Some("submit") => {
                let submitted = config::apply(&self.config, x, ctx.max_history)
                    .map_err(|e| refuse(StanzaErrorCondition::NotAcceptable, &e))?;
                if let Some(owners) = &submitted.owners {
                    if owners.is_empty() && ctx.admins.is_empty() {
                        return Err(refuse(
                            StanzaErrorCondition::NotAcceptable,
                            "a room keeps at least one owner",
                        ));
                    }
                }
                let was: RoomConfig = std::mem::replace(&mut self.config, submitted.config);
                self.locked = false;
                out.save = true;
                for (list, affiliation) in [
                    (submitted.owners, Affiliation::Owner),
                    (submitted.admins, Affiliation::Admin),
                ] {
                    let Some(list) = list else { continue };
                    let wanted: Vec<String> = list
                        .iter()
                        .filter_map(|j| Jid::new(j).ok().map(|j| j.to_bare().to_string()))
                        .collect();
                    let gone: Vec<String> = self
                        .affiliations
                        .iter()
                        .filter(|(j, a)| **a == affiliation && !wanted.contains(j))
                        .map(|(j, _)| j.clone())
                        .collect();
                    for j in gone {
                        self.set_affiliation(ctx, &j, Affiliation::None, &Why::default(), out);
                    }
                    for j in wanted {
                        if self.affiliations.get(&j) != Some(&affiliation) {
                            self.set_affiliation(ctx, &j, affiliation, &Why::default(), out);
                        }
                    }
                }
                // §10.2.1: occupants hear that the configuration changed (104), and whether
                // the room became non-anonymous (172) or semi-anonymous (173), logged (170)
                // or unlogged (171).
                let mut codes = vec![104];
                if self.config.whois_anyone != was.whois_anyone {
                    codes.push(if self.config.whois_anyone { 172 } else { 173 });
                }
                if self.config.logging != was.logging && ctx.archived {
                    codes.push(if self.config.logging { 170 } else { 171 });
                }
                self.notify(&codes, out);
                if self.config.presence_broadcast != was.presence_broadcast {
                    self.presence_broadcast_changed(ctx, was.presence_broadcast, out);
                }
                if self.config.members_only && !was.members_only {
                    // §9.? members-only now: those without affiliation leave (322).
                    let outsiders: Vec<String> = self
                        .occupants
                        .values()
                        .filter(|o| self.affiliation(ctx, o.bare.as_str()) < Affiliation::Member)
                        .map(|o| o.nick.clone())
                        .collect();
                    for nick in outsiders {
                        self.remove_occupant(ctx, &nick, &[322], &Why::default(), out);
                    }
                }
                if !self.config.persistent && self.occupants.is_empty() {
                    out.destroy = true;
                }
                Ok(())
            }
            _ => Err(refuse(
                StanzaErrorCondition::BadRequest,
                "submit or cancel the configuration form",
            )),
        }
    }

    /// §10.2.1: occupants hear that the room's configuration changed (104).
    pub fn notify_config_change(&self, out: &mut Out) {
        self.notify(&[104], out);
    }

    /// A message from the room to every occupant with status codes (§10.2.1).
    fn notify(&self, codes: &[u16], out: &mut Out) {
        let mut x = Element::builder("x", NS_USER);
        for c in codes {
            x = x.append(
                Element::builder("status", NS_USER)
                    .attr(xml_ncname!("code").into(), c.to_string())
                    .build(),
            );
        }
        let x = x.build();
        for (session, _) in self.sessions() {
            out.stanzas.push(
                Element::builder("message", ns::CLIENT)
                    .attr(xml_ncname!("type").into(), "groupchat")
                    .attr(xml_ncname!("from").into(), self.jid.as_str())
                    .attr(xml_ncname!("to").into(), session.as_str())
                    .append(x.clone())
                    .build(),
            );
        }
    }

    /// The service stops (§7.2 service-shutdown-kick): each session of each occupant hears
    /// that it is out of the room (110, 332), and the room forgets its occupants. A persistent
    /// room stays stored as it is.
    pub fn shut_down(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        for occ in self.occupants.values() {
            for session in &occ.sessions {
                out.stanzas.push(self.presence_of(
                    ctx,
                    occ,
                    session.as_str(),
                    occ.role,
                    true,
                    &[110, 332],
                ));
            }
        }
        self.occupants.clear();
        self.by_session.clear();
    }

    /// §10.9: every occupant leaves with the `<destroy/>` (alternate venue, reason).
    pub fn destroy(&mut self, destroy: &Element, out: &mut Out) {
        let mut d = Element::builder("destroy", NS_USER);
        if let Some(alt) = destroy.attr("jid") {
            d = d.attr(xml_ncname!("jid").into(), alt);
        }
        for c in destroy.children() {
            d = d.append(Element::builder(c.name(), NS_USER).append(c.text()).build());
        }
        let d = d.build();
        for (session, nick) in self.sessions() {
            out.stanzas.push(
                Element::builder("presence", ns::CLIENT)
                    .attr(xml_ncname!("type").into(), "unavailable")
                    .attr(xml_ncname!("from").into(), format!("{}/{nick}", self.jid))
                    .attr(xml_ncname!("to").into(), session.as_str())
                    .append(
                        Element::builder("x", NS_USER)
                            .append(
                                Element::builder("item", NS_USER)
                                    .attr(xml_ncname!("affiliation").into(), "none")
                                    .attr(xml_ncname!("role").into(), "none")
                                    .build(),
                            )
                            .append(d.clone())
                            .build(),
                    )
                    .build(),
            );
        }
        for occ in std::mem::take(&mut self.occupants).into_values() {
            if !out.left.contains(&occ.bare) {
                out.left.push(occ.bare);
            }
        }
        self.by_session.clear();
        out.destroy = true;
    }
}
