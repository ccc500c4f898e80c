//! XEP-0045 §10.2 room configuration: the room's settings and the `muc#roomconfig` data form
//! that shows and changes them, and the `muc#roominfo` form of disco#info (§6.4). No I/O.

use minidom::Element;
use rxml::xml_ncname;
use serde::{Deserialize, Serialize};

use super::room::Role;

pub const NS_DATA: &str = "jabber:x:data";
pub const FORM_CONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
pub const FORM_INFO: &str = "http://jabber.org/protocol/muc#roominfo";

/// Who may send private messages to occupants (`muc#roomconfig_allowpm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowPm {
    Anyone,
    Participants,
    Moderators,
    None,
}

impl AllowPm {
    fn as_str(self) -> &'static str {
        match self {
            AllowPm::Anyone => "anyone",
            AllowPm::Participants => "participants",
            AllowPm::Moderators => "moderators",
            AllowPm::None => "none",
        }
    }

    fn parse(s: &str) -> Option<AllowPm> {
        Some(match s {
            "anyone" => AllowPm::Anyone,
            "participants" => AllowPm::Participants,
            "moderators" => AllowPm::Moderators,
            "none" => AllowPm::None,
            _ => return None,
        })
    }
}

/// A set of roles (§5.1), for the list-multi fields `muc#roomconfig_presencebroadcast` and
/// `muc#roomconfig_getmemberlist`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSet {
    pub moderator: bool,
    pub participant: bool,
    pub visitor: bool,
}

impl RoleSet {
    pub const ALL: RoleSet = RoleSet {
        moderator: true,
        participant: true,
        visitor: true,
    };

    pub fn contains(self, role: Role) -> bool {
        match role {
            Role::Moderator => self.moderator,
            Role::Participant => self.participant,
            Role::Visitor => self.visitor,
            Role::None => false,
        }
    }

    fn values(self) -> Vec<&'static str> {
        [
            (self.moderator, "moderator"),
            (self.participant, "participant"),
            (self.visitor, "visitor"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }

    fn parse(var: &str, values: &[String]) -> Result<RoleSet, String> {
        let mut set = RoleSet {
            moderator: false,
            participant: false,
            visitor: false,
        };
        for v in values {
            match v.as_str() {
                "moderator" => set.moderator = true,
                "participant" => set.participant = true,
                "visitor" => set.visitor = true,
                other => return Err(format!("{var}: '{other}' is not a role")),
            }
        }
        Ok(set)
    }
}

/// A room's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    pub language: String,
    /// Kept when the last occupant leaves (and across restarts).
    pub persistent: bool,
    /// Listed in the service's disco#items.
    pub public: bool,
    pub members_only: bool,
    /// Only occupants with voice (participants and moderators) may send to everyone.
    pub moderated: bool,
    /// Needed to enter, when set.
    pub password: Option<String>,
    /// Everyone sees occupants' real JIDs (non-anonymous), else only moderators do.
    pub whois_anyone: bool,
    /// Participants may change the subject, not only moderators.
    pub change_subject: bool,
    /// Participants may invite others (into a members-only room, as members).
    pub allow_invites: bool,
    pub allow_pm: AllowPm,
    /// Occupants at most (0: no limit but the service's).
    pub max_users: usize,
    /// Messages kept for the discussion history sent on entering.
    pub history_length: usize,
    /// Messages to everyone go to the room's archive (XEP-0313).
    pub logging: bool,
    /// The roles whose presence the others get (`muc#roomconfig_presencebroadcast`); an
    /// occupant always gets its own.
    pub presence_broadcast: RoleSet,
    /// The roles whose occupants may get the member list besides members, admins and owners
    /// (`muc#roomconfig_getmemberlist`, §7.11).
    pub get_member_list: RoleSet,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            language: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: None,
            whois_anyone: false,
            change_subject: false,
            allow_invites: false,
            allow_pm: AllowPm::Anyone,
            max_users: 0,
            history_length: 20,
            logging: true,
            presence_broadcast: RoleSet::ALL,
            get_member_list: RoleSet {
                moderator: true,
                participant: false,
                visitor: false,
            },
        }
    }
}

/// A data form field (XEP-0004); no label when `label` is empty. The room's other forms
/// (registration, voice requests) use it too.
pub(super) fn field(var: &str, kind: &str, label: &str, values: &[&str]) -> Element {
    let mut b = Element::builder("field", NS_DATA)
        .attr(xml_ncname!("var").into(), var)
        .attr(xml_ncname!("type").into(), kind);
    if !label.is_empty() {
        b = b.attr(xml_ncname!("label").into(), label);
    }
    for v in values {
        b = b.append(Element::builder("value", NS_DATA).append(*v).build());
    }
    b.build()
}

fn with_options(mut f: Element, options: &[(&str, &str)]) -> Element {
    for (label, value) in options {
        f.append_child(
            Element::builder("option", NS_DATA)
                .attr(xml_ncname!("label").into(), *label)
                .append(Element::builder("value", NS_DATA).append(*value).build())
                .build(),
        );
    }
    f
}

/// The options of a list of roles.
const ROLES: &[(&str, &str)] = &[
    ("Moderator", "moderator"),
    ("Participant", "participant"),
    ("Visitor", "visitor"),
];

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

/// The configuration form (§10.2), filled with the room's settings and owner/admin lists.
pub fn form(
    config: &RoomConfig,
    owners: &[String],
    admins: &[String],
    max_history: usize,
) -> Element {
    let history = config.history_length.to_string();
    let max_users = if config.max_users == 0 {
        "none".to_string()
    } else {
        config.max_users.to_string()
    };
    let owners: Vec<&str> = owners.iter().map(String::as_str).collect();
    let admins: Vec<&str> = admins.iter().map(String::as_str).collect();
    let fields = vec![
        field("FORM_TYPE", "hidden", "", &[FORM_CONFIG]),
        field(
            "muc#roomconfig_roomname",
            "text-single",
            "Name",
            &[&config.name],
        ),
        field(
            "muc#roomconfig_roomdesc",
            "text-single",
            "Description",
            &[&config.description],
        ),
        field(
            "muc#roomconfig_lang",
            "text-single",
            "Language",
            &[&config.language],
        ),
        field(
            "muc#roomconfig_persistentroom",
            "boolean",
            "Persistent (kept when empty)",
            &[flag(config.persistent)],
        ),
        field(
            "muc#roomconfig_publicroom",
            "boolean",
            "Listed in the directory",
            &[flag(config.public)],
        ),
        field(
            "muc#roomconfig_membersonly",
            "boolean",
            "Members only",
            &[flag(config.members_only)],
        ),
        field(
            "muc#roomconfig_moderatedroom",
            "boolean",
            "Moderated (visitors need voice)",
            &[flag(config.moderated)],
        ),
        field(
            "muc#roomconfig_passwordprotectedroom",
            "boolean",
            "Password required",
            &[flag(config.password.is_some())],
        ),
        field(
            "muc#roomconfig_roomsecret",
            "text-private",
            "Password",
            &[config.password.as_deref().unwrap_or("")],
        ),
        with_options(
            field(
                "muc#roomconfig_whois",
                "list-single",
                "Who may see real JIDs",
                &[if config.whois_anyone {
                    "anyone"
                } else {
                    "moderators"
                }],
            ),
            &[("Moderators only", "moderators"), ("Anyone", "anyone")],
        ),
        field(
            "muc#roomconfig_changesubject",
            "boolean",
            "Participants may change the subject",
            &[flag(config.change_subject)],
        ),
        field(
            "muc#roomconfig_allowinvites",
            "boolean",
            "Participants may invite",
            &[flag(config.allow_invites)],
        ),
        with_options(
            field(
                "muc#roomconfig_allowpm",
                "list-single",
                "Who may send private messages",
                &[config.allow_pm.as_str()],
            ),
            &[
                ("Anyone", "anyone"),
                ("Participants", "participants"),
                ("Moderators", "moderators"),
                ("Nobody", "none"),
            ],
        ),
        with_options(
            field(
                "muc#roomconfig_maxusers",
                "list-single",
                "Occupants at most",
                &[&max_users],
            ),
            &[
                ("10", "10"),
                ("20", "20"),
                ("30", "30"),
                ("50", "50"),
                ("100", "100"),
                ("500", "500"),
                ("No limit", "none"),
            ],
        ),
        field(
            "muc#maxhistoryfetch",
            "text-single",
            &format!("Messages of history (at most {max_history})"),
            &[&history],
        ),
        field(
            "muc#roomconfig_enablelogging",
            "boolean",
            "Archive messages (XEP-0313)",
            &[flag(config.logging)],
        ),
        with_options(
            field(
                "muc#roomconfig_presencebroadcast",
                "list-multi",
                "Roles whose presence is broadcast",
                &config.presence_broadcast.values(),
            ),
            ROLES,
        ),
        with_options(
            field(
                "muc#roomconfig_getmemberlist",
                "list-multi",
                "Roles that may get the member list (besides members)",
                &config.get_member_list.values(),
            ),
            ROLES,
        ),
        field("muc#roomconfig_roomowners", "jid-multi", "Owners", &owners),
        field("muc#roomconfig_roomadmins", "jid-multi", "Admins", &admins),
    ];
    let mut x = Element::builder("x", NS_DATA)
        .attr(xml_ncname!("type").into(), "form")
        .append(
            Element::builder("title", NS_DATA)
                .append("Room configuration")
                .build(),
        )
        .build();
    for f in fields {
        x.append_child(f);
    }
    x
}

/// What a submitted configuration form changes: the new settings, and the owner and admin
/// lists when the form names them.
pub struct Submitted {
    pub config: RoomConfig,
    pub owners: Option<Vec<String>>,
    pub admins: Option<Vec<String>>,
}

/// Applies a submitted form (§10.2) to `current`; fields it leaves out keep their value.
pub fn apply(current: &RoomConfig, x: &Element, max_history: usize) -> Result<Submitted, String> {
    let mut c = current.clone();
    let mut owners = None;
    let mut admins = None;
    let mut password_wanted = None;
    for f in x.children().filter(|f| f.is("field", NS_DATA)) {
        let Some(var) = f.attr("var") else { continue };
        let values: Vec<String> = f
            .children()
            .filter(|v| v.is("value", NS_DATA))
            .map(|v| v.text())
            .collect();
        let one = values.first().map(String::as_str).unwrap_or("");
        let boolean = || -> Result<bool, String> {
            match one {
                "1" | "true" => Ok(true),
                "0" | "false" | "" => Ok(false),
                other => Err(format!("{var}: '{other}' is not a boolean")),
            }
        };
        match var {
            "FORM_TYPE" if one != FORM_CONFIG => {
                return Err(format!("FORM_TYPE must be {FORM_CONFIG}"));
            }
            "muc#roomconfig_roomname" => c.name = one.to_string(),
            "muc#roomconfig_roomdesc" => c.description = one.to_string(),
            "muc#roomconfig_lang" => c.language = one.to_string(),
            "muc#roomconfig_persistentroom" => c.persistent = boolean()?,
            "muc#roomconfig_publicroom" => c.public = boolean()?,
            "muc#roomconfig_membersonly" => c.members_only = boolean()?,
            "muc#roomconfig_moderatedroom" => c.moderated = boolean()?,
            "muc#roomconfig_passwordprotectedroom" => password_wanted = Some(boolean()?),
            "muc#roomconfig_roomsecret" => {
                c.password = (!one.is_empty()).then(|| one.to_string());
            }
            "muc#roomconfig_whois" => {
                c.whois_anyone = match one {
                    "anyone" => true,
                    "moderators" | "" => false,
                    other => return Err(format!("{var}: '{other}' is not anyone or moderators")),
                }
            }
            "muc#roomconfig_changesubject" => c.change_subject = boolean()?,
            "muc#roomconfig_allowinvites" => c.allow_invites = boolean()?,
            "muc#roomconfig_allowpm" => {
                c.allow_pm = AllowPm::parse(one).ok_or_else(|| format!("{var}: '{one}'"))?
            }
            "muc#roomconfig_maxusers" => {
                c.max_users = match one {
                    "none" | "" | "0" => 0,
                    n => n
                        .parse()
                        .map_err(|_| format!("{var}: '{n}' is not a number"))?,
                }
            }
            "muc#maxhistoryfetch" | "muc#roomconfig_historylength" => {
                let n: usize = one
                    .parse()
                    .map_err(|_| format!("{var}: '{one}' is not a number"))?;
                c.history_length = n.min(max_history);
            }
            "muc#roomconfig_enablelogging" => c.logging = boolean()?,
            "muc#roomconfig_presencebroadcast" => {
                c.presence_broadcast = RoleSet::parse(var, &values)?
            }
            "muc#roomconfig_getmemberlist" => c.get_member_list = RoleSet::parse(var, &values)?,
            "muc#roomconfig_roomowners" => owners = Some(values.clone()),
            "muc#roomconfig_roomadmins" => admins = Some(values.clone()),
            // Fields of other servers' forms that clients echo back: ignored.
            _ => {}
        }
    }
    if password_wanted == Some(false) {
        c.password = None;
    } else if password_wanted == Some(true) && c.password.is_none() {
        return Err("a password-protected room needs muc#roomconfig_roomsecret".into());
    }
    Ok(Submitted {
        config: c,
        owners,
        admins,
    })
}

/// The `muc#roominfo` form of the room's disco#info (§6.4).
pub fn info_form(
    config: &RoomConfig,
    occupants: usize,
    subject: &str,
    avatar: Option<&str>,
) -> Element {
    let count = occupants.to_string();
    let mut x = Element::builder("x", NS_DATA)
        .attr(xml_ncname!("type").into(), "result")
        .build();
    for f in [
        field("FORM_TYPE", "hidden", "", &[FORM_INFO]),
        field(
            "muc#roomconfig_roomname",
            "text-single",
            "Name",
            &[&config.name],
        ),
        field(
            "muc#roominfo_description",
            "text-single",
            "Description",
            &[&config.description],
        ),
        field(
            "muc#roominfo_occupants",
            "text-single",
            "Occupants",
            &[&count],
        ),
        field("muc#roominfo_subject", "text-single", "Subject", &[subject]),
        field(
            "muc#roominfo_lang",
            "text-single",
            "Language",
            &[&config.language],
        ),
        field(
            "muc#roomconfig_changesubject",
            "boolean",
            "Participants may change the subject",
            &[flag(config.change_subject)],
        ),
    ] {
        x.append_child(f);
    }
    if let Some(hash) = avatar {
        // XEP-0486: the room's avatar hash in its disco#info.
        x.append_child(field(
            "muc#roominfo_avatarhash",
            "text-multi",
            "Avatar hash",
            &[hash],
        ));
    }
    x
}

/// The room's disco#info features (§6.4, §17.3), with XEP-0313's when it archives.
pub fn features(config: &RoomConfig) -> Vec<&'static str> {
    let archive: &[&'static str] = if config.logging {
        &[
            "urn:xmpp:mam:2",
            "urn:xmpp:mam:2#extended",
            "urn:xmpp:sid:0",
        ]
    } else {
        &[]
    };
    let mut f = vec![
        if config.persistent {
            "muc_persistent"
        } else {
            "muc_temporary"
        },
        if config.public {
            "muc_public"
        } else {
            "muc_hidden"
        },
        if config.members_only {
            "muc_membersonly"
        } else {
            "muc_open"
        },
        if config.moderated {
            "muc_moderated"
        } else {
            "muc_unmoderated"
        },
        if config.whois_anyone {
            "muc_nonanonymous"
        } else {
            "muc_semianonymous"
        },
        if config.password.is_some() {
            "muc_passwordprotected"
        } else {
            "muc_unsecured"
        },
    ];
    f.extend_from_slice(archive);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_submitted_as_shown_changes_nothing() {
        let config = RoomConfig {
            name: "Coven".into(),
            password: Some("cauldron".into()),
            max_users: 30,
            presence_broadcast: RoleSet {
                moderator: true,
                participant: false,
                visitor: false,
            },
            get_member_list: RoleSet::ALL,
            ..RoomConfig::default()
        };
        let mut x = form(&config, &["a@x".into()], &[], 50);
        x.set_attr(
            rxml::Namespace::NONE,
            xml_ncname!("type").into(),
            "submit".to_string(),
        );
        let back = apply(&RoomConfig::default(), &x, 50).unwrap();
        assert_eq!(back.config, config);
        assert_eq!(back.owners.as_deref(), Some(&["a@x".to_string()][..]));
        assert_eq!(back.admins.as_deref(), Some(&[][..]));
    }

    #[test]
    fn presence_broadcast_and_member_list_access_are_lists_of_roles() {
        let defaults = RoomConfig::default();
        assert_eq!(defaults.presence_broadcast, RoleSet::ALL);
        assert!(defaults.get_member_list.contains(Role::Moderator));
        assert!(!defaults.get_member_list.contains(Role::Participant));
        let x: Element = "<x xmlns='jabber:x:data' type='submit'>\
            <field var='muc#roomconfig_presencebroadcast'><value>moderator</value>\
            <value>visitor</value></field>\
            <field var='muc#roomconfig_getmemberlist'/></x>"
            .parse()
            .unwrap();
        let c = apply(&defaults, &x, 50).unwrap().config;
        assert!(c.presence_broadcast.contains(Role::Moderator));
        assert!(!c.presence_broadcast.contains(Role::Participant));
        assert!(c.presence_broadcast.contains(Role::Visitor));
        assert!(!c.presence_broadcast.contains(Role::None));
        // An empty list: nobody but admins, owners and members.
        assert_eq!(c.get_member_list.values(), Vec::<&str>::new());
        // The form shows what was set, with the three roles to choose from.
        let form = form(&c, &[], &[], 50);
        let f = form
            .children()
            .find(|f| f.attr("var") == Some("muc#roomconfig_presencebroadcast"))
            .unwrap();
        assert_eq!(f.attr("type"), Some("list-multi"));
        let values: Vec<String> = f
            .children()
            .filter(|v| v.is("value", NS_DATA))
            .map(|v| v.text())
            .collect();
        assert_eq!(values, ["moderator", "visitor"]);
        assert_eq!(f.children().filter(|o| o.is("option", NS_DATA)).count(), 3);
        // A stored room from before these fields gets the defaults.
        let old: RoomConfig = serde_json::from_str(r#"{"name":"Old"}"#).unwrap();
        assert_eq!(old.presence_broadcast, RoleSet::ALL);
        assert_eq!(old.get_member_list, defaults.get_member_list);
    }

    #[test]
    fn bad_values_are_refused() {
        let x: Element = "<x xmlns='jabber:x:data' type='submit'>\
            <field var='muc#roomconfig_persistentroom'><value>maybe</value></field></x>"
            .parse()
            .unwrap();
        assert!(apply(&RoomConfig::default(), &x, 50).is_err());
        let x: Element = "<x xmlns='jabber:x:data' type='submit'>\
            <field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field></x>"
            .parse()
            .unwrap();
        assert!(apply(&RoomConfig::default(), &x, 50).is_err());
        let x: Element = "<x xmlns='jabber:x:data' type='submit'>\
            <field var='muc#roomconfig_presencebroadcast'><value>owner</value></field></x>"
            .parse()
            .unwrap();
        assert!(apply(&RoomConfig::default(), &x, 50).is_err());
    }
}
