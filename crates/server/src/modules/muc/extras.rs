//! XEP-0045 §8.6 voice requests, and room vCards for room avatars (XEP-0486 with XEP-0054 and
//! XEP-0153): a visitor asks moderators for voice through a `muc#request` form; owners set the
//! room's vCard, whose photo hash occupants learn from the room's presence. No I/O.

use minidom::Element;
use rxml::xml_ncname;
use sha1::Digest;

use super::config::{self, NS_DATA};
use super::room::{error, Affiliation, Ctx, Out, Role, Room};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;

pub const FORM_REQUEST: &str = "http://jabber.org/protocol/muc#request";
pub const NS_VCARD: &str = "vcard-temp";
const NS_VCARD_UPDATE: &str = "vcard-temp:x:update";
/// The largest room vCard kept (its photo inline).
const MAX_VCARD: usize = 256 * 1024;

fn form_values(x: &Element) -> Vec<(String, String)> {
    x.children()
        .filter(|f| f.is("field", NS_DATA))
        .filter_map(|f| {
            let var = f.attr("var")?.to_string();
            let value = f
                .get_child("value", NS_DATA)
                .map(|v| v.text())
                .unwrap_or_default();
            Some((var, value))
        })
        .collect()
}

fn field(var: &str, kind: &str, label: &str, value: &str) -> Element {
    config::field(var, kind, label, &[value])
}

/// The `muc#request` form of a message to the room, if it carries one.
pub fn request_form(message: &Element) -> Option<&Element> {
    message.children().find(|x| {
        x.is("x", NS_DATA)
            && form_values(x)
                .iter()
                .any(|(var, v)| var == "FORM_TYPE" && v == FORM_REQUEST)
    })
}

impl Room {
    /// §8.6: a visitor's request goes to every moderator as a form to approve; a moderator's
    /// approval (the form submitted with `muc#request_allow`) gives the visitor voice.
    pub fn voice_request(
        &mut self,
        ctx: &Ctx<'_>,
        from: &jid::FullJid,
        message: &Element,
        out: &mut Out,
    ) {
        let Some(x) = request_form(message) else {
            return;
        };
        let Some(sender) = self.occupant_of(from.as_str()) else {
            out.stanzas.extend(error(
                message,
                StanzaErrorCondition::NotAcceptable,
                "you are not in this room",
            ));
            return;
        };
        let values = form_values(x);
        let value = |name: &str| {
            values
                .iter()
                .find(|(v, _)| v == name)
                .map(|(_, v)| v.as_str())
        };
        if sender.role == Role::Moderator {
            // An approval (or a denial, when request_allow is false).
            if !matches!(value("muc#request_allow"), Some("1" | "true")) {
                return;
            }
            let Some(nick) = value("muc#roomnick").map(str::to_owned) else {
                out.stanzas.extend(error(
                    message,
                    StanzaErrorCondition::BadRequest,
                    "the approval names no muc#roomnick",
                ));
                return;
            };
            if self
                .occupants
                .get(&nick)
                .is_some_and(|o| o.role == Role::Visitor)
            {
                self.set_role(ctx, &nick, Role::Participant, &[], out);
            }
            return;
        }
        if sender.role != Role::Visitor {
            return; // Voice already.
        }
        let (nick, real) = (sender.nick.clone(), sender.bare.to_string());
        let request = Element::builder("x", NS_DATA)
            .attr(xml_ncname!("type").into(), "form")
            .append(
                Element::builder("title", NS_DATA)
                    .append("Voice request")
                    .build(),
            )
            .append(config::field("FORM_TYPE", "hidden", "", &[FORM_REQUEST]))
            .append(field(
                "muc#role",
                "list-single",
                "Requested role",
                "participant",
            ))
            .append(field("muc#jid", "jid-single", "User ID", &real))
            .append(field("muc#roomnick", "text-single", "Room nickname", &nick))
            .append(field(
                "muc#request_allow",
                "boolean",
                "Grant voice to this person?",
                "false",
            ))
            .build();
        let moderators: Vec<String> = self
            .occupants
            .values()
            .filter(|o| o.role == Role::Moderator)
            .flat_map(|o| o.sessions.iter().map(|s| s.to_string()))
            .collect();
        for to in moderators {
            out.stanzas.push(
                Element::builder("message", ns::CLIENT)
                    .attr(xml_ncname!("from").into(), self.jid.as_str())
                    .attr(xml_ncname!("to").into(), to)
                    .append(request.clone())
                    .build(),
            );
        }
    }

    /// The room's vCard (XEP-0054 on the room's JID): stored or empty, for anyone.
    pub fn vcard_get(&self) -> Element {
        self.vcard
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| Element::builder("vCard", NS_VCARD).build())
    }

    /// Owners set the room's vCard; occupants get the room's presence with the new photo hash
    /// (XEP-0486) and a 104 (the room's configuration changed).
    pub fn vcard_set(
        &mut self,
        ctx: &Ctx<'_>,
        from: &jid::FullJid,
        vcard: &Element,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        if self.affiliation(ctx, from.to_bare().as_str()) != Affiliation::Owner {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden)
                .with_text("only owners set the room's vCard"));
        }
        let text = String::from(vcard);
        if text.len() > MAX_VCARD {
            return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)
                .with_text("the vCard is too large"));
        }
        self.vcard = Some(text);
        out.save = true;
        let hash = self.avatar_hash().unwrap_or_default();
        for (session, _) in self.sessions() {
            out.stanzas.push(
                Element::builder("presence", ns::CLIENT)
                    .attr(xml_ncname!("from").into(), self.jid.as_str())
                    .attr(xml_ncname!("to").into(), session.as_str())
                    .append(
                        Element::builder("x", NS_VCARD_UPDATE)
                            .append(
                                Element::builder("photo", NS_VCARD_UPDATE)
                                    .append(hash.as_str())
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            );
        }
        self.notify_config_change(out);
        Ok(())
    }

    /// SHA-1 of the vCard's photo (XEP-0153), when it has one.
    pub fn avatar_hash(&self) -> Option<String> {
        use base64::Engine;
        let vcard: Element = self.vcard.as_deref()?.parse().ok()?;
        let binval = vcard
            .get_child("PHOTO", NS_VCARD)?
            .get_child("BINVAL", NS_VCARD)?
            .text();
        let clean: String = binval.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(clean)
            .ok()?;
        let digest = sha1::Sha1::digest(&bytes);
        Some(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}
