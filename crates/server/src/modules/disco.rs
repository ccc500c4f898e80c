//! XEP-0030 Service Discovery: disco#info and disco#items for the server and for accounts.

use crate::compliance::Claim;
use std::sync::Arc;

use minidom::Element;
use rxml::xml_ncname;
use xmpp_parsers::data_forms::DataForm;

use super::{IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "disco",
    default_enabled: true,
    spec: &SPEC,
    build: |_| Ok(Arc::new(Disco)),
};

static SPEC: ModuleSpec = ModuleSpec {
    iq: &[ns::DISCO_INFO, ns::DISCO_ITEMS],
    server_features: &[ns::DISCO_INFO, ns::DISCO_ITEMS],
    account_features: &[ns::DISCO_INFO],
    specs: &[
        Claim::xep(30, "2.5.0", "modules::disco: info and items of the server, its services and accounts"),
        Claim::xep(115, "1.6.0", "modules::disco: the server's own capabilities in its stream features; clients' capabilities are not yet read or cached").partial(),
    ],
    ..ModuleSpec::named("disco")
};

/// The server's disco identity: (category, type, name).
pub const SERVER_IDENTITY: (&str, &str, &str) = ("server", "im", "weft");

/// XEP-0115 entity capabilities.
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// The caps node: where the software comes from.
const CAPS_NODE: &str = "https://github.com/weft-xmpp/weft";

/// XEP-0115 §5.1: the verification string of the server's identity, `features` and XEP-0128
/// `forms`, SHA-1, base64.
pub fn caps_ver(features: &[&str], forms: &[DataForm]) -> String {
    let (category, kind, name) = SERVER_IDENTITY;
    ver_of(&format!("{category}/{kind}//{name}<"), features, forms)
}

/// The SHA-1 verification string (base64) of [`verification_string`].
fn ver_of(identities: &str, features: &[&str], forms: &[DataForm]) -> String {
    use base64::Engine;
    use sha1::Digest;
    let s = verification_string(identities, features, forms);
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()))
}

/// XEP-0115 §5.1 S after the identities (`identities`, already in their S form): the features
/// sorted, each followed by '<'; then each form by FORM_TYPE, its FORM_TYPE, then its other
/// fields by var, each var followed by its sorted values, everything followed by '<'. Also
/// what clients' answers are checked with (modules::caps).
pub(crate) fn verification_string(
    identities: &str,
    features: &[&str],
    forms: &[DataForm],
) -> String {
    let mut s = identities.to_string();
    let mut sorted: Vec<&str> = features.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for f in sorted {
        s.push_str(f);
        s.push('<');
    }
    // §5.4 3.6: a form without a hidden FORM_TYPE is left out.
    let mut forms: Vec<(&str, &DataForm)> = forms
        .iter()
        .filter_map(|f| Some((f.form_type()?, f)))
        .collect();
    forms.sort_by_key(|(form_type, _)| *form_type);
    for (form_type, form) in forms {
        s.push_str(form_type);
        s.push('<');
        let mut fields: Vec<_> = form
            .fields
            .iter()
            .filter(|f| !f.is_form_type(&form.type_))
            .collect();
        fields.sort_by_key(|f| f.var.as_deref().unwrap_or_default());
        for field in fields {
            s.push_str(field.var.as_deref().unwrap_or_default());
            s.push('<');
            let mut values: Vec<&str> = field.values.iter().map(String::as_str).collect();
            values.sort_unstable();
            for v in values {
                s.push_str(v);
                s.push('<');
            }
        }
    }
    s
}

/// The `<c/>` element servers put in their stream features (XEP-0115 §6.3).
pub fn caps_element(features: &[&str], forms: &[DataForm]) -> Element {
    Element::builder("c", NS_CAPS)
        .attr(xml_ncname!("hash").into(), "sha-1")
        .attr(xml_ncname!("node").into(), CAPS_NODE)
        .attr(xml_ncname!("ver").into(), caps_ver(features, forms))
        .build()
}

/// Answers from the features every loaded module declares.
pub struct Disco;

#[async_trait::async_trait]
impl Module for Disco {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        if req.payload.name() != "query" {
            return IqOutcome::NotMine;
        }
        if req.is_set {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        }
        let info = req.payload.is("query", ns::DISCO_INFO);
        let node = req.payload.attr("node");
        // An account's items and nodes belong to the modules that keep them (PEP).
        if req.to.node().is_some() && (node.is_some() || !info) {
            if let Some(answer) = state.modules.account_disco(state, req).await {
                return answer;
            }
        }
        if node.is_some() {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::ItemNotFound));
        }
        if !info {
            let mut items = Element::builder("query", ns::DISCO_ITEMS);
            // XEP-0030 §4.1: the server lists the services on its subdomains.
            if req.to.node().is_none() {
                let domain = req.to.domain().as_str();
                for (jid, name) in state.modules.service_items(domain) {
                    items = items.append(item(&jid, Some(&name)));
                }
                // XEP-0114 components, as Prosody and ejabberd list them.
                for (jid, name) in state.components.disco_items(state, domain) {
                    items = items.append(item(&jid, name.as_deref()));
                }
            }
            return IqOutcome::Result(Some(items.build()));
        }
        let mut query = Element::builder("query", ns::DISCO_INFO);
        let features = if req.to.node().is_none() {
            query = query.append(identity(
                SERVER_IDENTITY.0,
                SERVER_IDENTITY.1,
                SERVER_IDENTITY.2,
            ));
            state.modules.server_features()
        } else {
            // XEP-0030 §3.1 for an account: the account identity.
            query = query.append(identity("account", "registered", ""));
            for (category, kind) in state.modules.account_identities() {
                query = query.append(identity(category, kind, ""));
            }
            state.modules.account_features()
        };
        for feature in features {
            query = query.append(feature_el(feature));
        }
        if req.to.node().is_none() {
            // XEP-0128 extended information (XEP-0157 contact addresses).
            query = query.append_all(state.modules.server_forms().iter().cloned());
        }
        IqOutcome::Result(Some(query.build()))
    }
}

fn item(jid: &str, name: Option<&str>) -> Element {
    let mut b = Element::builder("item", ns::DISCO_ITEMS).attr(xml_ncname!("jid").into(), jid);
    if let Some(name) = name {
        b = b.attr(xml_ncname!("name").into(), name);
    }
    b.build()
}

fn identity(category: &str, kind: &str, name: &str) -> Element {
    let mut b = Element::builder("identity", ns::DISCO_INFO)
        .attr(xml_ncname!("category").into(), category)
        .attr(xml_ncname!("type").into(), kind);
    if !name.is_empty() {
        b = b.attr(xml_ncname!("name").into(), name);
    }
    b.build()
}

fn feature_el(var: &str) -> Element {
    Element::builder("feature", ns::DISCO_INFO)
        .attr(xml_ncname!("var").into(), var)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 §5.2's worked example, with its identity instead of ours, checks the
    /// algorithm; ours must follow the same rules.
    #[test]
    fn caps_verification_string() {
        use base64::Engine;
        use sha1::Digest;
        let example = "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<";
        let ver = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(example));
        assert_eq!(ver, "QgayPKawpkPSDYmwT/WM94uAlu0=");
        // Order and duplicates of the features do not change it.
        assert_eq!(caps_ver(&["b", "a", "a"], &[]), caps_ver(&["a", "b"], &[]));
        assert_ne!(caps_ver(&["a"], &[]), caps_ver(&["a", "b"], &[]));
    }

    /// XEP-0115 §5.3's complex example: two identities, four features and a XEP-0128 form.
    #[test]
    fn caps_verification_string_with_forms() {
        use xmpp_parsers::data_forms::{DataFormType, Field, FieldType};
        let form = DataForm::new(
            DataFormType::Result_,
            "urn:xmpp:dataforms:softwareinfo",
            vec![
                Field::new("software_version", FieldType::TextSingle).with_value("0.11"),
                Field::new("ip_version", FieldType::TextMulti)
                    .with_value("ipv6")
                    .with_value("ipv4"),
                Field::new("os", FieldType::TextSingle).with_value("Mac"),
                Field::new("os_version", FieldType::TextSingle).with_value("10.5.1"),
                Field::new("software", FieldType::TextSingle).with_value("Psi"),
            ],
        );
        let features = [
            "http://jabber.org/protocol/muc",
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
        ];
        // The XEP prints the names' spaces as &#160; for layout; its ver is of plain spaces.
        let identities = "client/pc/el/\u{3a8} 0.11<client/pc/en/Psi 0.11<";
        assert_eq!(
            ver_of(identities, &features, std::slice::from_ref(&form)),
            "q07IKJEyjvHSyhy//CH0CxmKi8w="
        );
        // A form changes the server's ver; one without a FORM_TYPE is left out.
        assert_ne!(caps_ver(&features, &[form]), caps_ver(&features, &[]));
        let untyped = DataForm {
            type_: DataFormType::Result_,
            title: None,
            instructions: None,
            fields: vec![Field::text_single("a", "b")],
        };
        assert_eq!(caps_ver(&features, &[untyped]), caps_ver(&features, &[]));
    }
}
