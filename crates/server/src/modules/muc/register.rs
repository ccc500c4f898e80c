//! XEP-0045 §7.10 registering with a room (`jabber:iq:register` with the `muc#register` form):
//! the user becomes a member and its nick is reserved; §7.12 the reserved nick on disco#info
//! node `x-roomuser-item`; §9.5 reserved nicks set by admins on the member list. Nobody else
//! may enter with a reserved nick (§7.2.8) or take it by a nick change. No I/O.

use jid::FullJid;
use minidom::Element;
use rxml::xml_ncname;

use super::config::{self, NS_DATA};
use super::room::{Affiliation, Ctx, Out, Room, Why};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;

pub const NS_REGISTER: &str = "jabber:iq:register";
pub const FORM_REGISTER: &str = "http://jabber.org/protocol/muc#register";
/// §7.12: the disco#info node of one's reserved nick.
pub const NODE_ROOMUSER: &str = "x-roomuser-item";

fn refuse(condition: StanzaErrorCondition, text: &str) -> StanzaError {
    StanzaError::new(condition).with_text(text)
}

impl Room {
    /// The bare JID that reserved `nick`, if one did.
    pub fn reserved_by(&self, nick: &str) -> Option<&str> {
        self.nicks
            .iter()
            .find(|(_, n)| n.as_str() == nick)
            .map(|(bare, _)| bare.as_str())
    }

    /// `nick` as the resource of an occupant JID (RFC 7622 resourceprep), if it is one.
    pub fn valid_nick(&self, nick: &str) -> Option<String> {
        if nick.is_empty() {
            return None;
        }
        let full = FullJid::new(&format!("{}/{nick}", self.jid)).ok()?;
        Some(full.resource().as_str().to_owned())
    }

    /// Refuses `nick` to `bare` when someone else reserved it (§7.12).
    pub fn check_reserved(&self, nick: &str, bare: &str) -> Result<(), StanzaError> {
        match self.reserved_by(nick) {
            Some(holder) if holder != bare => Err(refuse(
                StanzaErrorCondition::Conflict,
                "that nickname is reserved by another user (XEP-0045 §7.12)",
            )),
            _ => Ok(()),
        }
    }

    /// `nick` normalised, if `bare` may reserve it: valid, and nobody else holds it, reserved
    /// or in the room.
    pub fn nick_for(&self, bare: &str, nick: &str) -> Result<String, StanzaError> {
        let nick = self.valid_nick(nick).ok_or_else(|| {
            refuse(
                StanzaErrorCondition::BadRequest,
                "that nickname is not a valid occupant JID resource",
            )
        })?;
        self.check_reserved(&nick, bare)?;
        if self
            .occupants
            .get(&nick)
            .is_some_and(|o| o.bare.as_str() != bare)
        {
            return Err(refuse(
                StanzaErrorCondition::Conflict,
                "another occupant uses that nickname",
            ));
        }
        Ok(nick)
    }

    /// Who may register: not outcasts, and in a members-only room only those affiliated
    /// already (registering would let anyone in otherwise).
    fn may_register(&self, affiliation: Affiliation) -> Result<(), StanzaError> {
        if affiliation == Affiliation::Outcast {
            return Err(refuse(
                StanzaErrorCondition::NotAllowed,
                "you are banned from this room",
            ));
        }
        if self.config.members_only && affiliation < Affiliation::Member {
            return Err(refuse(
                StanzaErrorCondition::NotAllowed,
                "this room is for members only: an admin adds members (XEP-0045 §7.10)",
            ));
        }
        Ok(())
    }

    /// §7.10: the registration form, or the nick already registered.
    pub fn register_get(&self, ctx: &Ctx<'_>, from: &FullJid) -> Result<Element, StanzaError> {
        let bare = from.to_bare();
        self.may_register(self.affiliation(ctx, bare.as_str()))?;
        let mut q = Element::builder("query", NS_REGISTER);
        if let Some(nick) = self.nicks.get(bare.as_str()) {
            q = q
                .append(Element::builder("registered", NS_REGISTER).build())
                .append(
                    Element::builder("username", NS_REGISTER)
                        .append(nick.as_str())
                        .build(),
                );
            return Ok(q.build());
        }
        let form = Element::builder("x", NS_DATA)
            .attr(xml_ncname!("type").into(), "form")
            .append(
                Element::builder("title", NS_DATA)
                    .append("Room registration")
                    .build(),
            )
            .append(
                Element::builder("instructions", NS_DATA)
                    .append(
                        "Registering makes you a member of the room and reserves your nickname.",
                    )
                    .build(),
            )
            .append(config::field("FORM_TYPE", "hidden", "", &[FORM_REGISTER]))
            .append(
                Element::builder("field", NS_DATA)
                    .attr(xml_ncname!("var").into(), "muc#register_roomnick")
                    .attr(xml_ncname!("type").into(), "text-single")
                    .attr(xml_ncname!("label").into(), "Nickname")
                    .append(Element::builder("required", NS_DATA).build())
                    .build(),
            )
            .build();
        Ok(q.append(form).build())
    }

    /// §7.10: a submitted registration form reserves the nick and makes an unaffiliated user
    /// a member; `<remove/>` drops the reservation and a membership that came with it.
    pub fn register_set(
        &mut self,
        ctx: &Ctx<'_>,
        from: &FullJid,
        query: &Element,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        let bare = from.to_bare();
        let affiliation = self.affiliation(ctx, bare.as_str());
        if query.has_child("remove", NS_REGISTER) {
            if self.nicks.remove(bare.as_str()).is_some() {
                out.save = true;
            }
            if affiliation == Affiliation::Member && self.affiliations.contains_key(bare.as_str()) {
                self.set_affiliation(ctx, bare.as_str(), Affiliation::None, &Why::default(), out);
            }
            return Ok(());
        }
        self.may_register(affiliation)?;
        let bad = |text: &str| refuse(StanzaErrorCondition::BadRequest, text);
        let x = query
            .get_child("x", NS_DATA)
            .filter(|x| x.attr("type") == Some("submit"))
            .ok_or_else(|| bad("submit the muc#register form"))?;
        let value = |var: &str| {
            x.children()
                .filter(|f| f.is("field", NS_DATA) && f.attr("var") == Some(var))
                .find_map(|f| f.get_child("value", NS_DATA).map(|v| v.text()))
        };
        if value("FORM_TYPE").as_deref() != Some(FORM_REGISTER) {
            return Err(bad(
                "FORM_TYPE must be http://jabber.org/protocol/muc#register",
            ));
        }
        let nick = value("muc#register_roomnick")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("muc#register_roomnick is required"))?;
        let nick = self.nick_for(bare.as_str(), &nick)?;
        self.nicks.insert(bare.to_string(), nick);
        out.save = true;
        if affiliation < Affiliation::Member {
            self.set_affiliation(
                ctx,
                bare.as_str(),
                Affiliation::Member,
                &Why::default(),
                out,
            );
        }
        Ok(())
    }

    /// §7.12: disco#info on node `x-roomuser-item`: the asker's reserved nick as the name of
    /// a conference/text identity, or an empty answer.
    pub fn reserved_nick_info(&self, from: &FullJid) -> Element {
        let mut q = Element::builder("query", ns::DISCO_INFO)
            .attr(xml_ncname!("node").into(), NODE_ROOMUSER)
            .build();
        if let Some(nick) = self.nicks.get(from.to_bare().as_str()) {
            q.append_child(
                Element::builder("identity", ns::DISCO_INFO)
                    .attr(xml_ncname!("category").into(), "conference")
                    .attr(xml_ncname!("type").into(), "text")
                    .attr(xml_ncname!("name").into(), nick.as_str())
                    .build(),
            );
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::muc::config::RoomConfig;
    use crate::modules::muc::room::Saved;

    fn ctx() -> Ctx<'static> {
        Ctx {
            now: std::time::SystemTime::now(),
            admins: &[],
            max_history: 50,
            max_occupants: 100,
            user_rooms: 0,
            max_rooms_per_user: 0,
            message_rate: 0.0,
            message_burst: 1.0,
            archived: false,
        }
    }

    fn submit(nick: &str) -> Element {
        format!(
            "<query xmlns='{NS_REGISTER}'><x xmlns='{NS_DATA}' type='submit'>\
             <field var='FORM_TYPE'><value>{FORM_REGISTER}</value></field>\
             <field var='muc#register_roomnick'><value>{nick}</value></field></x></query>"
        )
        .parse()
        .unwrap()
    }

    #[test]
    fn a_registration_reserves_the_nick_makes_a_member_and_is_saved() {
        let mut room = Room::new("coven@conference.x".parse().unwrap(), RoomConfig::default());
        let hag: FullJid = "hag@x/pda".parse().unwrap();
        let crone: FullJid = "crone@x/desk".parse().unwrap();
        let mut out = Out::default();
        room.register_set(&ctx(), &hag, &submit("thirdwitch"), &mut out)
            .unwrap();
        assert!(out.save);
        assert_eq!(room.affiliation(&ctx(), "hag@x"), Affiliation::Member);
        assert_eq!(room.reserved_by("thirdwitch"), Some("hag@x"));
        let e = room
            .register_set(&ctx(), &crone, &submit("thirdwitch"), &mut Out::default())
            .unwrap_err();
        assert_eq!(e.condition, StanzaErrorCondition::Conflict);
        assert!(room.check_reserved("thirdwitch", "crone@x").is_err());
        assert!(room.check_reserved("thirdwitch", "hag@x").is_ok());
        let e = room
            .register_set(&ctx(), &crone, &submit(""), &mut Out::default())
            .unwrap_err();
        assert_eq!(e.condition, StanzaErrorCondition::BadRequest);

        let json = serde_json::to_string(&room.saved()).unwrap();
        let back = Room::restore(room.jid.clone(), serde_json::from_str(&json).unwrap());
        assert_eq!(back.reserved_by("thirdwitch"), Some("hag@x"));
        // A room saved before reservations existed has none.
        let old: Saved =
            serde_json::from_str(r#"{"config":{},"affiliations":{},"subject":null,"secret":"s"}"#)
                .unwrap();
        assert!(old.nicks.is_empty());

        let remove: Element = format!("<query xmlns='{NS_REGISTER}'><remove/></query>")
            .parse()
            .unwrap();
        room.register_set(&ctx(), &hag, &remove, &mut Out::default())
            .unwrap();
        assert_eq!(room.reserved_by("thirdwitch"), None);
        assert_eq!(room.affiliation(&ctx(), "hag@x"), Affiliation::None);
    }
}
