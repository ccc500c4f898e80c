//! What weft implements, declared next to the code that implements it, and what that makes of
//! XEP-0479 (Compliance Suites 2023). Modules declare their specifications in their
//! [`ModuleSpec`](crate::modules::ModuleSpec) (`specs`); what the server core implements
//! outside modules (streams, TLS, transports, federation, stream management) is declared in
//! [`CORE`] here. `weft compliance` prints the suite's table for a configuration's modules,
//! and `weft compliance --doap` the DOAP file the repository ships (`weft.doap`), so that
//! neither can say more than the code does.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A specification: an RFC or a XEP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Spec {
    Rfc(u16),
    Xep(u16),
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Spec::Rfc(n) => write!(f, "RFC {n}"),
            Spec::Xep(n) => write!(f, "XEP-{n:04}"),
        }
    }
}

/// How much of a specification is implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    Complete,
    /// Implemented with the gaps the note names.
    Partial,
}

/// One specification weft implements.
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    pub spec: Spec,
    /// The version of the specification implemented (XEPs; empty for RFCs).
    pub version: &'static str,
    pub support: Support,
    /// Where it lives and, for partial support, what is missing.
    pub note: &'static str,
}

impl Claim {
    pub const fn xep(n: u16, version: &'static str, note: &'static str) -> Claim {
        Claim {
            spec: Spec::Xep(n),
            version,
            support: Support::Complete,
            note,
        }
    }

    pub const fn rfc(n: u16, note: &'static str) -> Claim {
        Claim {
            spec: Spec::Rfc(n),
            version: "",
            support: Support::Complete,
            note,
        }
    }

    /// The same claim, partial.
    pub const fn partial(self) -> Claim {
        Claim {
            support: Support::Partial,
            ..self
        }
    }
}

/// What the server core implements, whatever modules are loaded.
pub const CORE: &[Claim] = &[
    Claim::rfc(6120, "streams, SASL, resource binding, stanza routing; TCP with STARTTLS"),
    Claim::rfc(7590, "TLS 1.2 and 1.3 through rustls, on every transport"),
    Claim::rfc(7395, "c2s over WebSocket (subprotocol xmpp), including see-other-uri"),
    Claim::rfc(5802, "SCRAM-SHA-1 and SCRAM-SHA-256, with -PLUS channel binding"),
    Claim::rfc(9266, "tls-exporter channel binding for SCRAM-*-PLUS"),
    Claim::xep(368, "1.1.0", "Direct TLS listeners for c2s and s2s"),
    Claim::xep(156, "1.4.0", "host-meta (XML and JSON) on the HTTP listeners"),
    Claim::xep(198, "1.6.3", "session::sm: acks, resumption onto any transport, offline for what a lost session never delivered; not across a restart"),
    Claim::xep(203, "2.0", "delay stamps on offline and archived messages"),
    Claim::xep(220, "1.1.1", "dialback, when a peer's certificate does not authenticate it"),
    Claim::xep(178, "1.2", "SASL EXTERNAL between servers"),
    Claim::xep(468, "0.1.0", "server-to-server over WebSocket, both directions"),
    Claim::xep(124, "1.11", "framing::bosh, http::bosh: long polling with wait/hold/requests, rid window with retransmission of kept responses, acks, polling and inactivity limits, terminate conditions, CORS; no pause, no report/time, no Content-Encoding").partial(),
    Claim::xep(206, "1.4", "c2s over BOSH at /http-bind: the same negotiation and session as TCP and WebSocket (SASL, xmpp:restart, bind, stream management with resumption onto any transport); stream errors as remote-stream-error"),
    Claim::xep(114, "1.6", "component: external components (jabber:component:accept) on listen.component, routed and federated under their own domains; XEP-0225 is not implemented"),
];

/// The categories of XEP-0479.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Core,
    Web,
    Im,
    Mobile,
    AvCalling,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Core,
        Category::Web,
        Category::Im,
        Category::Mobile,
        Category::AvCalling,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Core => "Core",
            Category::Web => "Web",
            Category::Im => "IM",
            Category::Mobile => "Mobile",
            Category::AvCalling => "A/V Calling",
        }
    }
}

/// One line of XEP-0479's server table: these specifications, all of them, for the category
/// at Advanced Server only, or at both levels.
struct Requirement {
    category: Category,
    advanced_only: bool,
    specs: &'static [Spec],
}

const fn req(category: Category, advanced_only: bool, specs: &'static [Spec]) -> Requirement {
    Requirement {
        category,
        advanced_only,
        specs,
    }
}

use Category::*;
use Spec::{Rfc, Xep};

/// XEP-0479 v0.1.0, §2 to §7, server side (see ../shared/specs/xep-0479-summary.md).
const SUITE: &[Requirement] = &[
    req(Core, false, &[Rfc(6120), Rfc(7590), Xep(30), Xep(114)]),
    req(Core, true, &[Xep(368), Xep(115), Xep(163)]),
    req(Web, false, &[Rfc(7395), Xep(124), Xep(206)]),
    req(
        Im,
        false,
        &[Rfc(6121), Xep(54), Xep(280), Xep(45), Xep(249), Xep(363)],
    ),
    req(
        Im,
        true,
        &[
            Xep(398),
            Xep(153),
            Xep(191),
            Xep(48),
            Xep(402),
            Xep(410),
            Xep(223),
            Xep(49),
            Xep(198),
            Xep(313),
        ],
    ),
    req(Mobile, false, &[Xep(198), Xep(352)]),
    req(Mobile, true, &[Xep(357)]),
    req(AvCalling, false, &[Xep(215)]),
];

/// A category at one level: met, or the specifications still missing.
pub struct Verdict {
    pub category: Category,
    pub server: Vec<Spec>,
    pub advanced: Vec<Spec>,
}

/// Every claim of the core and of `modules` (each spec once, the fullest support first).
pub fn claims<'a>(modules: impl IntoIterator<Item = &'a [Claim]>) -> Vec<Claim> {
    let mut by_spec: BTreeMap<Spec, Claim> = BTreeMap::new();
    for claim in CORE.iter().chain(modules.into_iter().flatten()) {
        by_spec
            .entry(claim.spec)
            .and_modify(|c| {
                if c.support == Support::Partial && claim.support == Support::Complete {
                    *c = *claim;
                }
            })
            .or_insert(*claim);
    }
    by_spec.into_values().collect()
}

/// XEP-0479 per category for these claims (a partial claim counts, as in the peers' DOAP).
pub fn suite(claims: &[Claim]) -> Vec<Verdict> {
    let has = |s: &Spec| claims.iter().any(|c| c.spec == *s);
    Category::ALL
        .iter()
        .map(|&category| {
            let missing = |advanced: bool| {
                let mut m: Vec<Spec> = SUITE
                    .iter()
                    .filter(|r| r.category == category && (advanced || !r.advanced_only))
                    .flat_map(|r| r.specs.iter().copied())
                    .filter(|s| !has(s))
                    .collect();
                m.sort();
                m.dedup();
                m
            };
            Verdict {
                category,
                server: missing(false),
                advanced: missing(true),
            }
        })
        .collect()
}

/// The table `weft compliance` prints.
pub fn report(claims: &[Claim]) -> String {
    let mut out = String::from(
        "XEP-0479 (Compliance Suites 2023), server side:\n\ncategory     Server / Advanced Server\n",
    );
    let level = |missing: &[Spec]| {
        if missing.is_empty() {
            "met".to_string()
        } else {
            let names: Vec<String> = missing.iter().map(Spec::to_string).collect();
            format!("not met, missing {}", names.join(", "))
        }
    };
    for v in suite(claims) {
        let _ = writeln!(
            out,
            "{:<12} Server: {}",
            v.category.name(),
            level(&v.server)
        );
        let _ = writeln!(out, "{:<12} Advanced Server: {}", "", level(&v.advanced));
    }
    out.push_str("\nimplemented:\n");
    for c in claims {
        let support = match c.support {
            Support::Complete => "complete",
            Support::Partial => "partial",
        };
        let version = if c.version.is_empty() {
            String::new()
        } else {
            format!(" {}", c.version)
        };
        let _ = writeln!(out, "  {}{version} ({support}): {}", c.spec, c.note);
    }
    out
}

/// The DOAP description (the XMPP ecosystem's convention, with the xmpp-doap vocabulary for
/// supported XEPs), from `claims`.
pub fn doap(claims: &[Claim]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!-- Generated by `weft compliance --doap` from the specifications the code declares\n\
         (crates/server/src/compliance.rs and every module's spec); do not edit by hand. -->\n\
         <Project xmlns=\"http://usefulinc.com/ns/doap#\"\n\
         \x20        xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"\n\
         \x20        xmlns:xmpp=\"https://linkmauve.fr/ns/xmpp-doap#\">\n\
         \x20 <name>weft</name>\n\
         \x20 <shortdesc>An XMPP server for the web: RFC 7395 WebSocket and TCP, for clients and federation</shortdesc>\n\
         \x20 <programming-language>Rust</programming-language>\n\
         \x20 <category rdf:resource=\"https://linkmauve.fr/ns/xmpp-doap#category-server\"/>\n",
    );
    for c in claims {
        match c.spec {
            Spec::Rfc(n) => {
                let _ = writeln!(
                    out,
                    "  <implements rdf:resource=\"https://www.rfc-editor.org/info/rfc{n}\"/>"
                );
            }
            Spec::Xep(n) => {
                let status = match c.support {
                    Support::Complete => "complete",
                    Support::Partial => "partial",
                };
                let _ = write!(
                    out,
                    "  <implements>\n    <xmpp:SupportedXep>\n      \
                     <xmpp:xep rdf:resource=\"https://xmpp.org/extensions/xep-{n:04}.html\"/>\n      \
                     <xmpp:version>{}</xmpp:version>\n      \
                     <xmpp:status>{status}</xmpp:status>\n      \
                     <xmpp:note>{}</xmpp:note>\n    </xmpp:SupportedXep>\n  </implements>\n",
                    weft_xml::escape_text(c.version),
                    weft_xml::escape_text(c.note)
                );
            }
        }
    }
    out.push_str("</Project>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_is_met_only_with_every_required_spec() {
        let core_only = claims([]);
        let verdicts = suite(&core_only);
        let core = &verdicts[0];
        assert_eq!(core.category, Category::Core);
        assert_eq!(core.server, [Spec::Xep(30)]);
        assert!(core.advanced.contains(&Spec::Xep(163)));
        let mut all: Vec<Claim> = core_only.clone();
        for spec in [30, 114, 115, 163] {
            all.push(Claim::xep(spec, "1", "").partial());
        }
        let core = &suite(&all)[0];
        assert!(core.server.is_empty() && core.advanced.is_empty());
        // Mobile: SM is core; CSI missing.
        assert_eq!(suite(&core_only)[3].server, [Spec::Xep(352)]);
    }

    #[test]
    fn a_complete_claim_wins_over_a_partial_one() {
        let partial = [Claim::xep(313, "1", "a").partial()];
        let complete = [Claim::xep(313, "1", "b")];
        let merged = claims([&partial[..], &complete[..]]);
        let c = merged.iter().find(|c| c.spec == Spec::Xep(313)).unwrap();
        assert_eq!((c.support, c.note), (Support::Complete, "b"));
        assert!(doap(&merged).contains("xep-0313.html"));
    }
}
