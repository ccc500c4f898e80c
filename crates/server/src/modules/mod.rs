//! Server features, one file (or folder) each. A module declares in one place, its
//! [`ModuleSpec`], the IQ namespaces it answers, the hook points it listens on, its disco
//! features; its settings come from its own `[modules.NAME]` section ([`Section`]). The
//! router and the sessions call modules only through [`Modules`].
//!
//! Adding a feature: a file here with the module and its `DEF`, one line in [`ALL`], and a
//! store trait in `weft-storage` if it keeps data (docs/architecture.md, "How to add a
//! feature").

pub mod account_set;
pub mod api;
pub mod registry;

pub mod blocking;
pub mod caps;
pub mod carbons;
pub mod contact_info;
pub mod csi;
pub mod disco;
pub mod external_services;
pub mod last;
pub mod mam;
pub mod muc;
pub mod offline;
pub mod pep;
pub mod ping;
pub mod private;
pub mod push;
pub mod roster;
pub mod session;
pub mod time;
pub mod upload;
pub mod vcard;
pub mod version;

pub use api::{
    Away, Flow, IqOutcome, IqRequest, Module, ModuleSpec, Priority, SessionHook, StanzaEvent,
    StanzaHook, StanzaText,
};
pub use registry::{ModuleDef, Modules, Section};

/// Every module weft has, in the order they are asked on a hook point of equal priority.
pub const ALL: &[ModuleDef] = &[
    disco::DEF,
    ping::DEF,
    version::DEF,
    session::DEF,
    time::DEF,
    roster::DEF,
    offline::DEF,
    private::DEF,
    vcard::DEF,
    carbons::DEF,
    blocking::DEF,
    last::DEF,
    csi::DEF,
    caps::DEF,
    mam::DEF,
    pep::DEF,
    upload::DEF,
    muc::DEF,
    external_services::DEF,
    contact_info::DEF,
    push::DEF,
];

/// The modules `config` turns on, or every problem with their settings.
pub fn load(config: &weft_config::Config) -> Result<Modules, Vec<weft_config::ConfigError>> {
    Modules::load(ALL, config)
}
