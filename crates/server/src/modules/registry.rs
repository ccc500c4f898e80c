//! The loaded modules and the tables built from their specs once at start: which module
//! answers which IQ namespace, who listens on each hook point in which order, the disco
//! features. The router asks these tables; a hook point nobody listens on costs one check.

use std::collections::HashMap;
use std::sync::Arc;

use jid::FullJid;
use serde::de::DeserializeOwned;
use weft_config::{Config, ConfigError};

use super::api::{
    Away, Flow, IqOutcome, IqRequest, Module, ModuleSpec, Priority, SessionHook, StanzaEvent,
    StanzaHook,
};
use crate::state::ServerState;

/// Makes a module from its settings section, or says every thing wrong with them.
pub type BuildModule = fn(&Section) -> Result<Arc<dyn Module>, Vec<ConfigError>>;

/// How to make one module from its config section.
pub struct ModuleDef {
    pub name: &'static str,
    /// Off unless its section says `enabled = true` (for modules not every server wants).
    pub default_enabled: bool,
    /// What it declares, known without building it (`weft compliance --doap`).
    pub spec: &'static ModuleSpec,
    pub build: BuildModule,
}

/// A module's `[modules.NAME]` section, without its `enabled` key.
pub struct Section {
    name: &'static str,
    table: toml::Table,
}

impl Section {
    /// The section as the module's typed settings (`deny_unknown_fields` and `default` on
    /// the struct); every wrong key is reported with its full path.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Vec<ConfigError>> {
        match weft_config::deserialize_all::<T>(self.table.clone(), &self.key()) {
            (Some(settings), problems) if problems.is_empty() => Ok(settings),
            (_, problems) => Err(problems),
        }
    }

    /// The section's key path, `modules.NAME`.
    pub fn key(&self) -> String {
        format!("modules.{}", self.name)
    }

    /// An error about one of the section's keys.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: format!("{}.{key}", self.key()),
            message: message.into(),
        }
    }
}

/// The modules of a running server and the dispatch tables built from them.
pub struct Modules {
    loaded: Vec<Arc<dyn Module>>,
    iq: HashMap<&'static str, Arc<dyn Module>>,
    stanza: [Vec<Arc<dyn Module>>; StanzaHook::ALL.len()],
    session: [Vec<Arc<dyn Module>>; SessionHook::ALL.len()],
    server_features: Vec<&'static str>,
    account_features: Vec<&'static str>,
    account_identities: Vec<(&'static str, &'static str)>,
    stream_features: Vec<(&'static str, &'static str)>,
    /// XEP-0128 forms of the server's disco#info ([`Module::server_info_forms`]).
    server_forms: Vec<minidom::Element>,
    /// XEP-0115 caps of the server, computed once from the features and forms above.
    caps: minidom::Element,
    /// (namespace, name) of a client's top-level non-stanza element → its module.
    nonzas: HashMap<(&'static str, &'static str), Arc<dyn Module>>,
    /// Modules that are service entities on subdomains ([`Module::service`]).
    services: Vec<Arc<dyn Module>>,
    /// Modules that want [`Module::away_delivery`].
    away: Vec<Arc<dyn Module>>,
}

impl Modules {
    /// Builds the enabled modules of `defs` from `config.modules`; every problem (unknown
    /// sections, wrong keys, two modules claiming one IQ namespace) is reported.
    pub fn load(defs: &[ModuleDef], config: &Config) -> Result<Modules, Vec<ConfigError>> {
        let mut problems = Vec::new();
        for name in config.modules.keys() {
            if !defs.iter().any(|d| d.name == name) {
                let known: Vec<&str> = defs.iter().map(|d| d.name).collect();
                problems.push(ConfigError::Invalid {
                    key: format!("modules.{name}"),
                    message: format!("no such module (known: {})", known.join(", ")),
                });
            }
        }
        let mut loaded = Vec::new();
        for def in defs {
            let (enabled, section) = match split_section(def, config.modules.get(def.name)) {
                Ok(found) => found,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            if !enabled {
                continue;
            }
            match (def.build)(&section) {
                Ok(module) => loaded.push(module),
                Err(mut errors) => problems.append(&mut errors),
            }
        }
        let modules = Modules::from_loaded(loaded).map_err(|e| vec![e]);
        match modules {
            Ok(m) if problems.is_empty() => Ok(m),
            Ok(_) => Err(problems),
            Err(mut e) => {
                problems.append(&mut e);
                Err(problems)
            }
        }
    }

    /// The tables for modules already built.
    pub fn from_loaded(loaded: Vec<Arc<dyn Module>>) -> Result<Modules, ConfigError> {
        let mut iq: HashMap<&'static str, Arc<dyn Module>> = HashMap::new();
        let mut stanza: [Vec<(Priority, Arc<dyn Module>)>; StanzaHook::ALL.len()] =
            Default::default();
        let mut session: [Vec<(Priority, Arc<dyn Module>)>; SessionHook::ALL.len()] =
            Default::default();
        let mut server_features = Vec::new();
        let mut account_features = Vec::new();
        let mut account_identities = Vec::new();
        let mut stream_features = Vec::new();
        let mut nonzas = HashMap::new();
        let mut forms: Vec<xmpp_parsers::data_forms::DataForm> = Vec::new();
        for module in &loaded {
            let spec = module.spec();
            for (name, ns) in spec.nonzas {
                nonzas.insert((*ns, *name), module.clone());
            }
            for ns in spec.iq {
                if let Some(other) = iq.insert(ns, module.clone()) {
                    return Err(ConfigError::Invalid {
                        key: format!("modules.{}", spec.name),
                        message: format!(
                            "answers IQs in {ns} like module {}: turn one of them off",
                            other.spec().name
                        ),
                    });
                }
            }
            for (hook, priority) in spec.stanza_hooks {
                stanza[hook.index()].push((*priority, module.clone()));
            }
            for (hook, priority) in spec.session_hooks {
                session[hook.index()].push((*priority, module.clone()));
            }
            server_features.extend_from_slice(spec.server_features);
            account_features.extend_from_slice(spec.account_features);
            account_identities.extend_from_slice(spec.account_identities);
            stream_features.extend_from_slice(spec.stream_features);
            for form in module.server_info_forms() {
                // XEP-0128 §2 (and XEP-0115 §5.4): one form per FORM_TYPE.
                if forms.iter().any(|f| f.form_type() == form.form_type()) {
                    return Err(ConfigError::Invalid {
                        key: format!("modules.{}", spec.name),
                        message: format!(
                            "adds a disco#info form {:?} another module adds: turn one of them off",
                            form.form_type().unwrap_or_default()
                        ),
                    });
                }
                forms.push(form);
            }
        }
        // Stable: modules of equal priority keep the order of the module list.
        let ordered = |mut v: Vec<(Priority, Arc<dyn Module>)>| {
            v.sort_by_key(|(p, _)| *p);
            v.into_iter().map(|(_, m)| m).collect::<Vec<_>>()
        };
        for features in [&mut server_features, &mut account_features] {
            features.sort_unstable();
            features.dedup();
        }
        let caps = super::disco::caps_element(&server_features, &forms);
        let server_forms = forms.into_iter().map(minidom::Element::from).collect();
        let services = loaded
            .iter()
            .filter(|m| m.service().is_some())
            .cloned()
            .collect();
        let away = loaded
            .iter()
            .filter(|m| m.spec().away_deliveries)
            .cloned()
            .collect();
        Ok(Modules {
            away,
            services,
            server_forms,
            caps,
            nonzas,
            loaded,
            iq,
            stanza: stanza.map(ordered),
            session: session.map(ordered),
            server_features,
            account_features,
            account_identities,
            stream_features,
        })
    }

    /// Starts every module (see [`Module::start`]).
    pub async fn start(&self, state: &Arc<ServerState>) -> Result<(), weft_storage::StorageError> {
        for module in &self.loaded {
            module.start(state).await?;
        }
        Ok(())
    }

    /// Tells every module the server begins to stop (see [`Module::stopping`]).
    pub async fn stopping(&self, state: &Arc<ServerState>) {
        for module in &self.loaded {
            module.stopping(state).await;
        }
    }

    /// Tells every module the server stops (see [`Module::stop`]).
    pub async fn stop(&self, state: &Arc<ServerState>) {
        for module in &self.loaded {
            module.stop(state).await;
        }
    }

    /// The specifications the loaded modules implement (see `crate::compliance`).
    pub fn specs(&self) -> impl Iterator<Item = &'static [crate::compliance::Claim]> + '_ {
        self.loaded.iter().map(|m| m.spec().specs)
    }

    /// Names of the loaded modules, in load order.
    pub fn names(&self) -> Vec<&'static str> {
        self.loaded.iter().map(|m| m.spec().name).collect()
    }

    /// Whether any module listens on `hook`.
    #[inline]
    pub fn wants(&self, hook: StanzaHook) -> bool {
        !self.stanza[hook.index()].is_empty()
    }

    /// Whether any module listens on `hook`.
    #[inline]
    pub fn wants_session(&self, hook: SessionHook) -> bool {
        !self.session[hook.index()].is_empty()
    }

    /// Whether any module wants [`Module::away_delivery`].
    #[inline]
    pub fn wants_away(&self) -> bool {
        !self.away.is_empty()
    }

    /// Tells the modules that want it of a stanza handed to the session `jid` while its
    /// client is away (see [`Module::away_delivery`]).
    pub fn away_delivery(
        &self,
        state: &Arc<ServerState>,
        jid: &FullJid,
        stanza: &minidom::Element,
        away: Away,
    ) {
        for module in &self.away {
            module.away_delivery(state, jid, stanza, away);
        }
    }

    /// Whether any module on `hook` wants the stanzas concerning `account` (a bare JID).
    #[inline]
    pub fn concerned(&self, hook: StanzaHook, account: &str) -> bool {
        self.stanza[hook.index()]
            .iter()
            .any(|m| m.concerns(hook, account))
    }

    /// Whether any module on the hook for `kind` to a local account wants a room's copies to
    /// `account` (see [`Module::concerns_room_copies`]).
    #[inline]
    pub fn concerned_by_room_copies(&self, kind: crate::stanza::Kind, account: &str) -> bool {
        self.stanza[StanzaHook::to_local(kind).index()]
            .iter()
            .any(|m| m.concerns_room_copies(kind, account))
    }

    /// Passes a stanza concerning `account` through every module on `hook` that it concerns,
    /// in priority order, until one is done with it.
    pub async fn stanza(
        &self,
        state: &Arc<ServerState>,
        hook: StanzaHook,
        account: &str,
        mut event: StanzaEvent<'_>,
    ) -> Flow {
        for module in &self.stanza[hook.index()] {
            if !module.concerns(hook, account) {
                continue;
            }
            let StanzaEvent {
                stanza,
                kind,
                from,
                to,
                to_sender,
                text,
            } = event;
            if !module.spec().keeps_text {
                // It may change the stanza without knowing of the text.
                *text = None;
            }
            let next = StanzaEvent {
                stanza,
                kind,
                from,
                to,
                to_sender: &mut *to_sender,
                text: &mut *text,
            };
            match module.stanza(state, hook, next).await {
                Flow::Continue(stanza) => {
                    event = StanzaEvent {
                        stanza,
                        kind,
                        from,
                        to,
                        to_sender,
                        text,
                    }
                }
                done => return done,
            }
        }
        Flow::Continue(event.stanza)
    }

    /// Tells every module on `hook`, in priority order.
    pub async fn session(&self, state: &Arc<ServerState>, hook: SessionHook, jid: &FullJid) {
        for module in &self.session[hook.index()] {
            module.session(state, hook, jid).await;
        }
    }

    /// The module answering IQs in `ns`, if any; for a service's JID, that service.
    pub async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        if !self.services.is_empty() && req.to.node().is_none() {
            if let Some(service) = self.service(state, req.to.domain().as_str()) {
                return service.iq(state, req).await;
            }
        }
        match self.iq.get(req.payload.ns().as_str()) {
            Some(module) => module.iq(state, req).await,
            None => IqOutcome::NotMine,
        }
    }

    /// The module that is the service entity `domain` (`LABEL.hosted-domain`), if any.
    pub fn service(&self, state: &ServerState, domain: &str) -> Option<&Arc<dyn Module>> {
        if self.services.is_empty() || state.is_local_domain(domain) {
            return None;
        }
        self.services.iter().find(|m| {
            m.service().is_some_and(|(label, _)| {
                domain
                    .strip_prefix(label)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|parent| state.is_local_domain(parent))
            })
        })
    }

    /// The service entities of the hosted `domain`, as (JID, name), for its disco#items.
    pub fn service_items(&self, domain: &str) -> Vec<(String, String)> {
        self.services
            .iter()
            .filter_map(|m| m.service())
            .map(|(label, name)| (format!("{label}.{domain}"), name.to_string()))
            .collect()
    }

    /// The HTTP routes of every module.
    pub fn http_routes(&self) -> Vec<axum::Router<Arc<ServerState>>> {
        self.loaded.iter().filter_map(|m| m.http_routes()).collect()
    }

    /// The loaded module of type `T`, if it is on.
    pub fn find<T: Module>(&self) -> Option<&T> {
        self.loaded.iter().find_map(|m| {
            let any: &dyn std::any::Any = m.as_ref();
            any.downcast_ref::<T>()
        })
    }

    /// disco#info features of the server's JID.
    pub fn server_features(&self) -> &[&'static str] {
        &self.server_features
    }

    /// XEP-0128 forms of the server's disco#info.
    pub fn server_forms(&self) -> &[minidom::Element] {
        &self.server_forms
    }

    /// A bound client's non-stanza element: `None` when no module handles it, else what to
    /// send back.
    pub async fn nonza(
        &self,
        state: &Arc<ServerState>,
        jid: &FullJid,
        element: &minidom::Element,
    ) -> Option<Vec<minidom::Element>> {
        let ns = element.ns();
        let module = self.nonzas.get(&(ns.as_str(), element.name()))?;
        Some(module.nonza(state, jid, element).await)
    }

    /// The server's XEP-0115 `<c/>` for its stream features.
    pub fn caps(&self) -> &minidom::Element {
        &self.caps
    }

    /// Elements for the post-authentication stream features.
    pub fn stream_features(&self) -> &[(&'static str, &'static str)] {
        &self.stream_features
    }

    /// disco#info features of an account's bare JID.
    pub fn account_features(&self) -> &[&'static str] {
        &self.account_features
    }

    /// disco#info identities of an account's bare JID besides account/registered.
    pub fn account_identities(&self) -> &[(&'static str, &'static str)] {
        &self.account_identities
    }

    /// The first module's answer to a disco query on an account's items or nodes (see
    /// [`Module::account_disco`]).
    pub async fn account_disco(
        &self,
        state: &Arc<ServerState>,
        req: &IqRequest<'_>,
    ) -> Option<IqOutcome> {
        for module in &self.loaded {
            if let Some(answer) = module.account_disco(state, req).await {
                return Some(answer);
            }
        }
        None
    }
}

/// Whether the module is on, and its section without the `enabled` key.
fn split_section(
    def: &ModuleDef,
    value: Option<&toml::Value>,
) -> Result<(bool, Section), ConfigError> {
    let key = format!("modules.{}", def.name);
    let mut table = match value {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => {
            return Err(ConfigError::Invalid {
                key,
                message: "must be a table ([modules.NAME] with its settings)".into(),
            })
        }
    };
    let enabled = match table.remove("enabled") {
        None => def.default_enabled,
        Some(toml::Value::Boolean(b)) => b,
        Some(_) => {
            return Err(ConfigError::Invalid {
                key: format!("{key}.enabled"),
                message: "must be true or false".into(),
            })
        }
    };
    Ok((
        enabled,
        Section {
            name: def.name,
            table,
        },
    ))
}
