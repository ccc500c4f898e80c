//! A PEP node's configuration (XEP-0060 §16.4 `pubsub#node_config`, the subset XEP-0163
//! services use): the data forms it is read from and shown as, the publish-options
//! precondition check (§7.1.5), and its stored form (JSON).

use serde::{Deserialize, Serialize};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};

pub const FORM_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
#[cfg(test)]
pub const FORM_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
pub const FORM_META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";

/// Who may read a node's items and get its notifications (XEP-0060 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone, on any server (OMEMO bundles and device lists).
    Open,
    /// Contacts subscribed to the owner's presence ('from' or 'both'): the PEP default.
    Presence,
    /// The owner alone (XEP-0223 private data; no member list is kept).
    Whitelist,
}

impl Access {
    fn parse(s: &str) -> Option<Access> {
        match s {
            "open" => Some(Access::Open),
            "presence" => Some(Access::Presence),
            "whitelist" => Some(Access::Whitelist),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::Presence => "presence",
            Access::Whitelist => "whitelist",
        }
    }
}

/// `pubsub#max_items`: a number, or `max` (XEP-0060 §16.4.4: the service's own limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaxItems {
    Count(usize),
    Max,
}

impl MaxItems {
    fn parse(s: &str) -> Option<MaxItems> {
        if s == "max" {
            return Some(MaxItems::Max);
        }
        s.parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .map(MaxItems::Count)
    }

    /// The number of items kept, under the service's `limit`.
    pub fn resolve(self, limit: usize) -> usize {
        match self {
            MaxItems::Count(n) => n.min(limit),
            MaxItems::Max => limit,
        }
    }

    fn show(self) -> String {
        match self {
            MaxItems::Count(n) => n.to_string(),
            MaxItems::Max => "max".into(),
        }
    }
}

/// When the last item goes to a new subscriber or contact coming online.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendLast {
    Never,
    OnSub,
    OnSubAndPresence,
}

impl SendLast {
    fn parse(s: &str) -> Option<SendLast> {
        match s {
            "never" => Some(SendLast::Never),
            "on_sub" => Some(SendLast::OnSub),
            "on_sub_and_presence" => Some(SendLast::OnSubAndPresence),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SendLast::Never => "never",
            SendLast::OnSub => "on_sub",
            SendLast::OnSubAndPresence => "on_sub_and_presence",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    pub access_model: Access,
    pub max_items: MaxItems,
    pub persist_items: bool,
    pub send_last_published_item: SendLast,
    pub deliver_notifications: bool,
    pub deliver_payloads: bool,
    pub notify_retract: bool,
    pub notify_delete: bool,
    pub title: String,
    /// The payload namespace (`pubsub#type`).
    pub payload_type: String,
}

impl Default for NodeConfig {
    /// XEP-0163 §4's defaults: presence access, the last item kept and sent to contacts
    /// coming online.
    fn default() -> Self {
        NodeConfig {
            access_model: Access::Presence,
            max_items: MaxItems::Count(1),
            persist_items: true,
            send_last_published_item: SendLast::OnSubAndPresence,
            deliver_notifications: true,
            deliver_payloads: true,
            notify_retract: true,
            notify_delete: true,
            title: String::new(),
            payload_type: String::new(),
        }
    }
}

/// Why a form could not be applied.
#[derive(Debug, PartialEq, Eq)]
pub enum FormProblem {
    /// A field this service does not know or a value it does not take.
    Unsupported(String),
}

impl NodeConfig {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored configuration; one that cannot be read counts as the default (and is said).
    pub fn decode(stored: &str) -> NodeConfig {
        serde_json::from_str(stored).unwrap_or_else(|e| {
            tracing::warn!("unreadable PEP node configuration, using the default: {e}");
            NodeConfig::default()
        })
    }

    /// Sets the form's fields (a node_config submission or publish-options).
    pub fn apply(&mut self, form: &DataForm) -> Result<(), FormProblem> {
        for field in &form.fields {
            let Some(var) = field.var.as_deref() else {
                continue;
            };
            if var == "FORM_TYPE" {
                continue;
            }
            let value = field.values.first().map(String::as_str).unwrap_or("");
            let bad = || FormProblem::Unsupported(format!("{var} = {value}"));
            match var {
                "pubsub#access_model" => {
                    self.access_model = Access::parse(value).ok_or_else(bad)?
                }
                "pubsub#max_items" => self.max_items = MaxItems::parse(value).ok_or_else(bad)?,
                "pubsub#persist_items" => self.persist_items = boolean(value).ok_or_else(bad)?,
                "pubsub#send_last_published_item" => {
                    self.send_last_published_item = SendLast::parse(value).ok_or_else(bad)?
                }
                "pubsub#deliver_notifications" => {
                    self.deliver_notifications = boolean(value).ok_or_else(bad)?
                }
                "pubsub#deliver_payloads" => {
                    self.deliver_payloads = boolean(value).ok_or_else(bad)?
                }
                "pubsub#notify_retract" => self.notify_retract = boolean(value).ok_or_else(bad)?,
                "pubsub#notify_delete" => self.notify_delete = boolean(value).ok_or_else(bad)?,
                "pubsub#title" => self.title = value.to_string(),
                "pubsub#type" => self.payload_type = value.to_string(),
                // Only the owner publishes to a PEP node.
                "pubsub#publish_model" if value == "publishers" => {}
                _ => return Err(bad()),
            }
        }
        Ok(())
    }

    /// XEP-0060 §7.1.5: whether the node's configuration already is what the publish-options
    /// ask for; `max_items` compares as resolved under `limit` (`max` is the limit).
    pub fn meets(&self, options: &DataForm, limit: usize) -> bool {
        let mut wanted = self.clone();
        if wanted.apply(options).is_err() {
            return false;
        }
        let resolved = |c: &NodeConfig| c.max_items.resolve(limit);
        resolved(&wanted) == resolved(self) && {
            wanted.max_items = self.max_items;
            wanted == *self
        }
    }

    /// The configuration form (XEP-0060 §8.2), of type `form` for the owner to fill in, or
    /// `result` for the default configuration.
    pub fn to_form(&self, kind: DataFormType) -> DataForm {
        let list = |var: &str, value: &str, options: &[&str]| {
            let mut f = Field::new(var, FieldType::ListSingle).with_value(value);
            f.options = options
                .iter()
                .map(|o| Option_ {
                    label: None,
                    value: (*o).to_string(),
                })
                .collect();
            f
        };
        let flag = |var: &str, on: bool| {
            Field::new(var, FieldType::Boolean).with_value(if on { "true" } else { "false" })
        };
        DataForm::new(
            kind,
            FORM_NODE_CONFIG,
            vec![
                list(
                    "pubsub#access_model",
                    self.access_model.as_str(),
                    &["open", "presence", "whitelist"],
                ),
                Field::text_single("pubsub#max_items", &self.max_items.show()),
                flag("pubsub#persist_items", self.persist_items),
                list(
                    "pubsub#send_last_published_item",
                    self.send_last_published_item.as_str(),
                    &["never", "on_sub", "on_sub_and_presence"],
                ),
                flag("pubsub#deliver_notifications", self.deliver_notifications),
                flag("pubsub#deliver_payloads", self.deliver_payloads),
                flag("pubsub#notify_retract", self.notify_retract),
                flag("pubsub#notify_delete", self.notify_delete),
                list("pubsub#publish_model", "publishers", &["publishers"]),
                Field::text_single("pubsub#title", &self.title),
                Field::text_single("pubsub#type", &self.payload_type),
            ],
        )
    }

    /// XEP-0060 §5.4's meta-data form, for disco#info on the node.
    pub fn meta_data(&self, owner: &str) -> DataForm {
        DataForm::new(
            DataFormType::Result_,
            FORM_META_DATA,
            vec![
                Field::new("pubsub#owner", FieldType::JidSingle).with_value(owner),
                Field::text_single("pubsub#access_model", self.access_model.as_str()),
                Field::text_single("pubsub#title", &self.title),
                Field::text_single("pubsub#type", &self.payload_type),
                Field::text_single("pubsub#max_items", &self.max_items.show()),
            ],
        )
    }
}

/// An xs:boolean.
fn boolean(s: &str) -> Option<bool> {
    match s {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(fields: &[(&str, &str)]) -> DataForm {
        DataForm::new(
            DataFormType::Submit,
            FORM_PUBLISH_OPTIONS,
            fields
                .iter()
                .map(|(k, v)| Field::text_single(k, v))
                .collect(),
        )
    }

    #[test]
    fn publish_options_preconditions() {
        let mut c = NodeConfig::default();
        assert!(c.meets(&options(&[]), 256));
        assert!(c.meets(&options(&[("pubsub#access_model", "presence")]), 256));
        assert!(!c.meets(&options(&[("pubsub#access_model", "open")]), 256));
        assert!(c.meets(&options(&[("pubsub#persist_items", "1")]), 256));
        assert!(!c.meets(&options(&[("pubsub#unknown", "x")]), 256));
        c.apply(&options(&[("pubsub#max_items", "max")])).unwrap();
        assert_eq!(c.max_items.resolve(256), 256);
        // `max` and the limit itself are the same configuration.
        assert!(c.meets(&options(&[("pubsub#max_items", "256")]), 256));
        assert!(!c.meets(&options(&[("pubsub#max_items", "10")]), 256));
        assert!(c.apply(&options(&[("pubsub#max_items", "0")])).is_err());
        assert!(c
            .apply(&options(&[("pubsub#access_model", "roster")]))
            .is_err());
        assert_eq!(NodeConfig::decode(&c.encode()), c);
    }
}
