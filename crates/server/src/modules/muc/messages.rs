//! XEP-0045 messages in a room: to everyone (§7.4) with the subject (§8.1), private messages
//! (§7.5), mediated invitations and declines (§7.8), and IQs to occupants: XEP-0410 self-pings
//! answered by the room, others forwarded with an id that finds the way back. No I/O.

use base64::Engine;
use jid::{FullJid, Jid};
use minidom::Element;
use rxml::xml_ncname;

use super::room::{
    addressed, error, x_user, Affiliation, Ctx, History, Out, Role, Room, Subject, NS_OCCUPANT_ID,
    NS_USER,
};
use super::NS_SID;
use crate::error::StanzaErrorCondition;
use crate::ns;
use crate::stanza;

const NS_PING: &str = "urn:xmpp:ping";
/// Prefix of the ids of IQs the room forwards between occupants.
const FORWARDED: &str = "muc-fwd.";

impl Room {
    /// §7.4, §8.1: a groupchat message from an occupant, to everyone (the sender too).
    pub fn groupchat(&mut self, ctx: &Ctx<'_>, from: &FullJid, stanza: Element, out: &mut Out) {
        let occ = self
            .by_session
            .get(from.as_str())
            .and_then(|nick| self.occupants.get_mut(nick));
        let Some(occ) = occ else {
            out.stanzas.extend(error(
                &stanza,
                StanzaErrorCondition::NotAcceptable,
                "you are not in this room",
            ));
            return;
        };
        if occ.role < Role::Participant {
            out.stanzas.extend(error(
                &stanza,
                StanzaErrorCondition::Forbidden,
                "you have no voice in this room",
            ));
            return;
        }
        if ctx.message_rate > 0.0 && !occ.budget.take(ctx) {
            out.stanzas.extend(error(
                &stanza,
                StanzaErrorCondition::ResourceConstraint,
                "you send messages to this room too fast: wait a moment",
            ));
            return;
        }
        let (nick, role, id) = (occ.nick.clone(), occ.role, occ.id.clone());
        let body = stanza.get_child("body", ns::CLIENT).is_some();
        if let Some(subject) = stanza.get_child("subject", ns::CLIENT) {
            if !body {
                if role != Role::Moderator && !self.config.change_subject {
                    out.stanzas.extend(error(
                        &stanza,
                        StanzaErrorCondition::Forbidden,
                        "only moderators may change the subject",
                    ));
                    return;
                }
                self.subject = Some(Subject {
                    nick: Some(nick.clone()),
                    text: subject.text(),
                });
                out.save = true;
            }
        }
        let mut message = stanza;
        while message
            .remove_child("occupant-id", NS_OCCUPANT_ID)
            .is_some()
        {}
        // XEP-0359 §4: only the room says which id it gave, and an occupant's server gives
        // none to what the room sends on (the account's archive keeps no groupchat message):
        // no `<stanza-id/>` from the sender goes on, whoever it claims gave it.
        while message.remove_child("stanza-id", NS_SID).is_some() {}
        stanza::remove_attr(&mut message, "to");
        stanza::set_attr(
            &mut message,
            xml_ncname!("from").into(),
            &self.room_jid_of(&nick),
        );
        message.append_child(
            Element::builder("occupant-id", NS_OCCUPANT_ID)
                .attr(xml_ncname!("id").into(), id)
                .build(),
        );
        let to = self
            .occupants
            .values()
            .flat_map(|viewer| viewer.sessions.iter().cloned())
            .collect();
        if self.config.logging && crate::stanza::worth_storing_in_room(&message) {
            out.archive = Some((nick.clone(), out.broadcast.len()));
        }
        out.broadcast(message.clone(), to);
        if body && self.config.history_length > 0 {
            self.history.push_back(History {
                message,
                at: ctx.now,
            });
            let keep = self.config.history_length.min(ctx.max_history);
            while self.history.len() > keep {
                self.history.pop_front();
            }
        }
    }

    /// §7.5: a private message from an occupant to `nick`, to each of its sessions.
    pub fn private_message(&mut self, from: &FullJid, nick: &str, stanza: Element, out: &mut Out) {
        use super::config::AllowPm;
        if stanza.attr("type") == Some("groupchat") {
            out.stanzas.extend(error(
                &stanza,
                StanzaErrorCondition::BadRequest,
                "a groupchat message goes to the room, not an occupant",
            ));
            return;
        }
        let Some(sender) = self.occupant_of(from.as_str()) else {
            out.stanzas.extend(error(
                &stanza,
                StanzaErrorCondition::NotAcceptable,
                "you are not in this room",
            ));
            return;
        };
        let allowed = match self.config.allow_pm {
            AllowPm::Anyone => true,
            AllowPm::Participants => sender.role >= Role::Participant,
            AllowPm::Moderators => sender.role == Role::Moderator,
            AllowPm::None => false,
        };
        if !allowed {
            out.stanzas.extend(error(
                &stanza,
                StanzaErrorCondition::Forbidden,
                "private messages are not allowed here",
            ));
            return;
        }
        let Some(target) = self.occupants.get(nick) else {
            out.stanzas.extend(error(
                &stanza,
                StanzaErrorCondition::ItemNotFound,
                "no occupant has that nickname",
            ));
            return;
        };
        let mut message = stanza;
        stanza::set_attr(
            &mut message,
            xml_ncname!("from").into(),
            &self.room_jid_of(&sender.nick),
        );
        if !message.has_child("x", NS_USER) {
            message.append_child(x_user().build());
        }
        for session in &target.sessions {
            let mut copy = message.clone();
            stanza::set_attr(&mut copy, xml_ncname!("to").into(), session.as_str());
            out.stanzas.push(copy);
        }
    }

    /// §7.8.2, §7.8.3: mediated invitations and declines in a message to the room.
    pub fn invitations(&mut self, ctx: &Ctx<'_>, from: &FullJid, stanza: &Element, out: &mut Out) {
        let Some(x) = stanza.get_child("x", NS_USER) else {
            return;
        };
        let bare = from.to_bare();
        let affiliation = self.affiliation(ctx, bare.as_str());
        for invite in x.children().filter(|c| c.is("invite", NS_USER)) {
            let Some(to) = invite.attr("to").and_then(|t| Jid::new(t).ok()) else {
                out.stanzas.extend(error(
                    stanza,
                    StanzaErrorCondition::JidMalformed,
                    "an invitation names its invitee in 'to'",
                ));
                return;
            };
            if self.occupant_of(from.as_str()).is_none() {
                out.stanzas.extend(error(
                    stanza,
                    StanzaErrorCondition::NotAcceptable,
                    "only occupants may invite",
                ));
                return;
            }
            let may_add = affiliation >= Affiliation::Admin || self.config.allow_invites;
            if self.config.members_only && !may_add {
                out.stanzas.extend(error(
                    stanza,
                    StanzaErrorCondition::Forbidden,
                    "only admins may invite into this members-only room",
                ));
                return;
            }
            let invitee = to.to_bare();
            if self.config.members_only
                && self.affiliation(ctx, invitee.as_str()) < Affiliation::Member
            {
                self.affiliations
                    .insert(invitee.to_string(), Affiliation::Member);
                out.save = true;
            }
            let mut inv =
                Element::builder("invite", NS_USER).attr(xml_ncname!("from").into(), bare.as_str());
            if let Some(reason) = invite.get_child("reason", NS_USER) {
                inv = inv.append(reason.clone());
            }
            let mut x = x_user().append(inv.build());
            if let Some(p) = &self.config.password {
                x = x.append(
                    Element::builder("password", NS_USER)
                        .append(p.as_str())
                        .build(),
                );
            }
            out.stanzas.push(
                Element::builder("message", ns::CLIENT)
                    .attr(xml_ncname!("from").into(), self.jid.as_str())
                    .attr(xml_ncname!("to").into(), to.as_str())
                    .append(x.build())
                    .append(
                        Element::builder("body", ns::CLIENT)
                            .append(format!("{bare} invites you to the room {}", self.jid))
                            .build(),
                    )
                    .build(),
            );
        }
        for decline in x.children().filter(|c| c.is("decline", NS_USER)) {
            let Some(to) = decline.attr("to").and_then(|t| Jid::new(t).ok()) else {
                continue;
            };
            let mut d = Element::builder("decline", NS_USER)
                .attr(xml_ncname!("from").into(), bare.as_str());
            if let Some(reason) = decline.get_child("reason", NS_USER) {
                d = d.append(reason.clone());
            }
            out.stanzas.push(
                Element::builder("message", ns::CLIENT)
                    .attr(xml_ncname!("from").into(), self.jid.as_str())
                    .attr(xml_ncname!("to").into(), to.as_str())
                    .append(x_user().append(d.build()).build())
                    .build(),
            );
        }
    }

    /// An IQ to `room/nick`: an XEP-0410 self-ping is answered here; others go to the
    /// occupant's first session, from the sender's occupant JID, with an id that finds the way
    /// back (results and errors to the sender's occupant JID come back here).
    pub fn occupant_iq(&mut self, from: &FullJid, nick: &str, iq: &Element, out: &mut Out) {
        let kind = iq.attr("type").unwrap_or("");
        if kind == "result" || kind == "error" {
            // An answer to a forwarded IQ: `nick` is the asker's occupant nick.
            let Some(answerer) = self.occupant_of(from.as_str()) else {
                return;
            };
            let Some((asker, id)) = iq.attr("id").and_then(decode_forwarded) else {
                return;
            };
            if self.by_session.get(&asker).map(String::as_str) != Some(nick) {
                return;
            }
            let mut back = iq.clone();
            stanza::set_attr(&mut back, xml_ncname!("id").into(), &id);
            out.stanzas
                .push(addressed(back, &self.room_jid_of(&answerer.nick), &asker));
            return;
        }
        let Some(sender) = self.occupant_of(from.as_str()) else {
            out.stanzas.extend(error(
                iq,
                StanzaErrorCondition::NotAcceptable,
                "you are not in this room",
            ));
            return;
        };
        if sender.nick == nick && iq.has_child("ping", NS_PING) {
            out.stanzas.push(stanza::iq_result(iq, None));
            return;
        }
        let Some(target) = self.occupants.get(nick) else {
            out.stanzas.extend(error(
                iq,
                StanzaErrorCondition::ItemNotFound,
                "no occupant has that nickname",
            ));
            return;
        };
        let Some(session) = target.sessions.first() else {
            return;
        };
        let id = encode_forwarded(from.as_str(), iq.attr("id").unwrap_or(""));
        let mut forwarded = addressed(
            iq.clone(),
            &self.room_jid_of(&sender.nick),
            session.as_str(),
        );
        stanza::set_attr(&mut forwarded, xml_ncname!("id").into(), &id);
        out.stanzas.push(forwarded);
    }
}

fn encode_forwarded(asker: &str, id: &str) -> String {
    let raw = format!("{asker}\n{id}");
    format!(
        "{FORWARDED}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

fn decode_forwarded(id: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id.strip_prefix(FORWARDED)?)
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (asker, id) = raw.split_once('\n')?;
    Some((asker.to_string(), id.to_string()))
}
