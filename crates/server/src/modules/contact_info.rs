//! XEP-0157 Contact Addresses for XMPP Services (v1.1.1, with 1.1.0's `status-addresses`):
//! the operator's addresses (mailto:, xmpp:, https: and other URIs) for abuse reports, the
//! administrators, feedback, sales, security, support and service status, as the
//! `http://jabber.org/network/serverinfo` XEP-0128 form of the server's disco#info.
//!
//! Off by default (`enabled = true` and at least one address turn it on). Only the categories
//! with addresses appear in the form.

use crate::compliance::Claim;
use std::sync::Arc;

use serde::Deserialize;
use weft_config::ConfigError;
use xmpp_parsers::data_forms::{DataForm, DataFormType};
use xmpp_parsers::server_info::generate_address_field;

use super::{Module, ModuleDef, ModuleSpec, Section};

pub const DEF: ModuleDef = ModuleDef {
    name: "contact_info",
    default_enabled: false,
    spec: &SPEC,
    build,
};

/// The FORM_TYPE of XEP-0157's form.
pub const FORM_TYPE: &str = "http://jabber.org/network/serverinfo";

static SPEC: ModuleSpec = ModuleSpec {
    specs: &[Claim::xep(
        157,
        "1.1.1",
        "modules::contact_info: the serverinfo form in the server's disco#info",
    )],
    ..ModuleSpec::named("contact_info")
};

/// `[modules.contact_info]`: lists of URIs per role.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub abuse: Vec<String>,
    pub admin: Vec<String>,
    pub feedback: Vec<String>,
    pub sales: Vec<String>,
    pub security: Vec<String>,
    pub support: Vec<String>,
    pub status: Vec<String>,
}

impl Settings {
    /// (settings key, form field var, addresses), in the registry's order.
    fn roles(&self) -> [(&'static str, &'static str, &[String]); 7] {
        [
            ("abuse", "abuse-addresses", &self.abuse),
            ("admin", "admin-addresses", &self.admin),
            ("feedback", "feedback-addresses", &self.feedback),
            ("sales", "sales-addresses", &self.sales),
            ("security", "security-addresses", &self.security),
            ("support", "support-addresses", &self.support),
            ("status", "status-addresses", &self.status),
        ]
    }
}

fn build(section: &Section) -> Result<Arc<dyn Module>, Vec<ConfigError>> {
    let settings: Settings = section.parse()?;
    let mut problems = Vec::new();
    for (key, _, addresses) in settings.roles() {
        for (i, address) in addresses.iter().enumerate() {
            if let Err(why) = check_uri(address) {
                problems.push(section.error(&format!("{key}[{i}]"), why));
            }
        }
    }
    if settings.roles().iter().all(|(_, _, a)| a.is_empty()) {
        problems.push(ConfigError::Invalid {
            key: section.key(),
            message: "no addresses: list some (abuse, admin, feedback, sales, security, \
                      support, status) or turn the module off"
                .into(),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let fields = settings
        .roles()
        .into_iter()
        .filter(|(_, _, addresses)| !addresses.is_empty())
        .map(|(_, var, addresses)| generate_address_field(var, addresses.to_vec()))
        .collect();
    Ok(Arc::new(ContactInfo {
        form: DataForm::new(DataFormType::Result_, FORM_TYPE, fields),
    }))
}

/// A URI (RFC 3986 §3.1): a scheme, ':' and something after it, no spaces.
fn check_uri(uri: &str) -> Result<(), String> {
    let scheme_ok = uri.split_once(':').is_some_and(|(scheme, rest)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            && !rest.is_empty()
    });
    if !scheme_ok {
        return Err(format!(
            "'{uri}' is not a URI with a scheme (mailto:, xmpp:, https:)"
        ));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{uri}' has spaces or control characters"));
    }
    Ok(())
}

pub struct ContactInfo {
    form: DataForm,
}

#[async_trait::async_trait]
impl Module for ContactInfo {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn server_info_forms(&self) -> Vec<DataForm> {
        vec![self.form.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        for good in [
            "mailto:abuse@example.org",
            "xmpp:admin@example.org?message",
            "https://status.example.org/",
            "tel:+1-201-555-0123",
        ] {
            assert_eq!(check_uri(good), Ok(()), "{good}");
        }
        for bad in [
            "abuse@example.org",
            "example.org",
            ":nothing",
            "mailto:",
            "1http://x",
            "https://x y",
            "",
        ] {
            assert!(check_uri(bad).is_err(), "{bad}");
        }
    }
}
