//! The pubsub requests a PEP service answers (XEP-0060, the subset of XEP-0163 §7): publish,
//! retract, items, create; and for the owner configure, default, delete, purge. Also the
//! service's disco (nodes as items, node info).

use std::sync::Arc;

use jid::{BareJid, Jid};
use minidom::Element;
use rxml::xml_ncname;
use weft_storage::{PepItem, StorageError};
use xmpp_parsers::data_forms::{DataForm, DataFormType};
use xmpp_parsers::pubsub::owner::{Owner, Payload as OwnerPayload};
use xmpp_parsers::pubsub::pubsub::{Items, PubSub};

use super::node_config::FormProblem;
use super::{
    is_subscriber, items_event, Access, Event, NodeConfig, Pep, NS_ERRORS, NS_EVENT, NS_OWNER,
    NS_PUBSUB,
};
use crate::error::{StanzaError, StanzaErrorCondition as Cond};
use crate::modules::api::account_parts;
use crate::modules::{IqOutcome, IqRequest};
use crate::ns;
use crate::state::ServerState;

type Answer = Result<Option<Element>, StanzaError>;

fn error(condition: Cond, app: Option<&'static str>, text: &str) -> StanzaError {
    let e = StanzaError::new(condition).with_text(text);
    match app {
        Some(name) => e.with_app_condition(name, NS_ERRORS),
        None => e,
    }
}

fn storage(e: StorageError) -> StanzaError {
    tracing::warn!("PEP storage failed: {e}");
    StanzaError::new(Cond::InternalServerError)
}

/// A node's configuration; `item-not-found` when the account has no such node.
async fn existing_node(
    state: &ServerState,
    owner: &BareJid,
    node: &str,
) -> Result<NodeConfig, StanzaError> {
    let (domain, user) = account_parts(owner);
    match state.storage.pep.pep_node(domain, user, node).await {
        Ok(Some(stored)) => Ok(NodeConfig::decode(&stored)),
        Ok(None) => Err(error(Cond::ItemNotFound, None, "no such node")),
        Err(e) => Err(storage(e)),
    }
}

fn unsupported(feature: &'static str) -> StanzaError {
    StanzaError::new(Cond::FeatureNotImplemented).with_app_element(
        Element::builder("unsupported", NS_ERRORS)
            .attr(xml_ncname!("feature").into(), feature)
            .build(),
    )
}

pub(super) async fn handle(pep: &Pep, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
    // Accounts are PEP services; the server itself is none (XEP-0163 §1).
    if req.to.node().is_none() {
        return IqOutcome::NotMine;
    }
    let owner = req.to.to_bare();
    let answer = if req.payload.is("pubsub", NS_PUBSUB) {
        match PubSub::try_from(req.payload.clone()) {
            Ok(request) => pubsub(pep, state, req, &owner, request).await,
            Err(e) => Err(error(Cond::BadRequest, None, &format!("{e}"))),
        }
    } else if req.payload.is("pubsub", NS_OWNER) {
        if !req.from_owner() {
            Err(error(
                Cond::Forbidden,
                None,
                "only the account owns its PEP nodes",
            ))
        } else {
            match Owner::try_from(req.payload.clone()) {
                Ok(request) => owner_request(pep, state, req, &owner, request.payload).await,
                Err(e) => Err(error(Cond::BadRequest, None, &format!("{e}"))),
            }
        }
    } else {
        return IqOutcome::NotMine;
    };
    match answer {
        Ok(payload) => IqOutcome::Result(payload),
        Err(e) => IqOutcome::Error(e),
    }
}

fn need(req: &IqRequest<'_>, set: bool) -> Result<(), StanzaError> {
    if req.is_set == set {
        return Ok(());
    }
    Err(error(
        Cond::BadRequest,
        None,
        if set {
            "this request is an IQ set"
        } else {
            "this request is an IQ get"
        },
    ))
}

fn owner_only(req: &IqRequest<'_>) -> Result<(), StanzaError> {
    if req.from_owner() {
        return Ok(());
    }
    Err(error(
        Cond::Forbidden,
        None,
        "only the account publishes to its PEP nodes",
    ))
}

async fn pubsub(
    pep: &Pep,
    state: &Arc<ServerState>,
    req: &IqRequest<'_>,
    owner: &BareJid,
    request: PubSub,
) -> Answer {
    match request {
        PubSub::Publish {
            publish,
            publish_options,
        } => {
            need(req, true)?;
            owner_only(req)?;
            let node = publish.node.0;
            let mut items = publish.items.into_iter();
            let (item, None) = (items.next(), items.next()) else {
                return Err(error(
                    Cond::BadRequest,
                    Some("invalid-payload"),
                    "one item per publish",
                ));
            };
            let (id, payload) = match item {
                Some(item) => (item.id.map(|i| i.0), item.payload),
                None => (None, None),
            };
            let options = publish_options.and_then(|o| o.form);
            let publication = Publication {
                node: &node,
                id,
                payload,
                options: options.as_ref(),
                on_behalf: None,
            };
            let id = pep.publish(state, owner, req.from, publication).await?;
            Ok(Some(
                Element::builder("pubsub", NS_PUBSUB)
                    .append(
                        Element::builder("publish", NS_PUBSUB)
                            .attr(xml_ncname!("node").into(), node)
                            .append(
                                Element::builder("item", NS_PUBSUB)
                                    .attr(xml_ncname!("id").into(), id)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            ))
        }
        PubSub::Retract(retract) => {
            need(req, true)?;
            owner_only(req)?;
            let node = retract.node.0;
            let ids: Vec<String> = retract
                .items
                .into_iter()
                .filter_map(|i| i.id.map(|id| id.0))
                .collect();
            if ids.is_empty() {
                return Err(error(
                    Cond::BadRequest,
                    Some("item-required"),
                    "name the item to retract",
                ));
            }
            pep.retract(state, owner, &node, &ids, retract.notify)
                .await?;
            Ok(None)
        }
        PubSub::Items(items) => {
            need(req, false)?;
            items_of(state, req, owner, items).await
        }
        PubSub::Create { create, configure } => {
            need(req, true)?;
            owner_only(req)?;
            let Some(node) = create.node.map(|n| n.0) else {
                return Err(error(
                    Cond::NotAcceptable,
                    Some("nodeid-required"),
                    "PEP nodes have names",
                ));
            };
            let mut config = NodeConfig::default();
            if let Some(form) = configure.and_then(|c| c.form) {
                apply(&mut config, &form)?;
            }
            pep.create(state, owner, &node, &config).await?;
            Ok(None)
        }
        PubSub::Subscriptions(_) => {
            need(req, false)?;
            // Subscriptions to PEP nodes come from presence and caps, none are explicit.
            Ok(Some(
                Element::builder("pubsub", NS_PUBSUB)
                    .append(Element::builder("subscriptions", NS_PUBSUB).build())
                    .build(),
            ))
        }
        PubSub::Affiliations(_) => {
            need(req, false)?;
            let mut list = Element::builder("affiliations", NS_PUBSUB);
            if req.from_owner() {
                let (domain, user) = account_parts(owner);
                let nodes = state
                    .storage
                    .pep
                    .pep_nodes(domain, user)
                    .await
                    .map_err(storage)?;
                for (node, _) in nodes {
                    list = list.append(
                        Element::builder("affiliation", NS_PUBSUB)
                            .attr(xml_ncname!("node").into(), node)
                            .attr(xml_ncname!("affiliation").into(), "owner")
                            .build(),
                    );
                }
            }
            Ok(Some(
                Element::builder("pubsub", NS_PUBSUB)
                    .append(list.build())
                    .build(),
            ))
        }
        PubSub::Subscribe { .. } | PubSub::Unsubscribe(_) | PubSub::Subscription(_) => {
            Err(unsupported("subscribe"))
        }
        PubSub::Default(_) => Err(error(Cond::BadRequest, None, "default is an owner request")),
    }
}

fn apply(config: &mut NodeConfig, form: &DataForm) -> Result<(), StanzaError> {
    if form.type_ == DataFormType::Cancel {
        return Ok(());
    }
    config
        .apply(form)
        .map_err(|FormProblem::Unsupported(what)| {
            error(
                Cond::NotAcceptable,
                None,
                &format!("unsupported configuration: {what}"),
            )
        })
}

/// XEP-0060 §6.5: items of a node, for whoever its access model admits.
async fn items_of(
    state: &Arc<ServerState>,
    req: &IqRequest<'_>,
    owner: &BareJid,
    request: Items,
) -> Answer {
    let node = request.node.0;
    let (domain, user) = account_parts(owner);
    let store = &state.storage.pep;
    let config = existing_node(state, owner, &node).await?;
    may_read(state, req, owner, &config).await?;
    let wanted: Vec<String> = request
        .items
        .into_iter()
        .filter_map(|i| i.id.map(|id| id.0))
        .collect();
    let last = match (wanted.is_empty(), request.max_items) {
        (true, Some(n)) => Some(n as usize),
        _ => None,
    };
    let mut items = store
        .pep_items(domain, user, &node, last)
        .await
        .map_err(storage)?;
    if !wanted.is_empty() {
        items.retain(|i| wanted.contains(&i.id));
    }
    let mut list = Element::builder("items", NS_PUBSUB).attr(xml_ncname!("node").into(), node);
    // Newest first, as Prosody and ejabberd give them.
    for item in items.iter().rev() {
        list = list.append(item_element(item, NS_PUBSUB));
    }
    Ok(Some(
        Element::builder("pubsub", NS_PUBSUB)
            .append(list.build())
            .build(),
    ))
}

fn item_element(item: &PepItem, namespace: &str) -> Element {
    let mut el =
        Element::builder("item", namespace).attr(xml_ncname!("id").into(), item.id.as_str());
    if let Ok(payload) = item.payload.parse::<Element>() {
        el = el.append(payload);
    }
    el.build()
}

/// §6.1.3 / §6.5.9: the access model's word on the requester.
async fn may_read(
    state: &Arc<ServerState>,
    req: &IqRequest<'_>,
    owner: &BareJid,
    config: &NodeConfig,
) -> Result<(), StanzaError> {
    if req.from_owner() {
        return Ok(());
    }
    match config.access_model {
        Access::Open => Ok(()),
        Access::Presence => {
            if is_subscriber(state, owner, &req.from.to_bare()).await {
                Ok(())
            } else {
                Err(error(
                    Cond::NotAuthorized,
                    Some("presence-subscription-required"),
                    "the node is for contacts subscribed to the owner's presence",
                ))
            }
        }
        Access::Whitelist => Err(error(
            Cond::NotAllowed,
            Some("closed-node"),
            "the node is the owner's alone",
        )),
    }
}

async fn owner_request(
    pep: &Pep,
    state: &Arc<ServerState>,
    req: &IqRequest<'_>,
    owner: &BareJid,
    request: OwnerPayload,
) -> Answer {
    let (domain, user) = account_parts(owner);
    let store = &state.storage.pep;
    let wrap = |child: Element| Some(Element::builder("pubsub", NS_OWNER).append(child).build());
    match request {
        OwnerPayload::Default { .. } => {
            need(req, false)?;
            let form = NodeConfig::default().to_form(DataFormType::Form);
            Ok(wrap(
                Element::builder("default", NS_OWNER)
                    .append(Element::from(form))
                    .build(),
            ))
        }
        OwnerPayload::Configure { node, form } => {
            let Some(node) = node.map(|n| n.0) else {
                return Err(error(
                    Cond::BadRequest,
                    Some("nodeid-required"),
                    "name the node",
                ));
            };
            let mut config = existing_node(state, owner, &node).await?;
            if !req.is_set {
                return Ok(wrap(
                    Element::builder("configure", NS_OWNER)
                        .attr(xml_ncname!("node").into(), node)
                        .append(Element::from(config.to_form(DataFormType::Form)))
                        .build(),
                ));
            }
            let Some(form) = form else {
                return Err(error(
                    Cond::BadRequest,
                    None,
                    "the configuration form is missing",
                ));
            };
            apply(&mut config, &form)?;
            let kept = config.max_items.resolve(pep.settings.max_items);
            store
                .configure_pep_node(domain, user, &node, &config.encode(), kept)
                .await
                .map_err(storage)?;
            Ok(None)
        }
        OwnerPayload::Delete { node, .. } => {
            need(req, true)?;
            pep.delete(state, owner, &node.0).await?;
            Ok(None)
        }
        OwnerPayload::Purge { node } => {
            need(req, true)?;
            let config = existing_node(state, owner, &node.0).await?;
            store
                .purge_pep_node(domain, user, &node.0)
                .await
                .map_err(storage)?;
            let event = Event {
                payload: Element::builder("purge", NS_EVENT)
                    .attr(xml_ncname!("node").into(), node.0.as_str())
                    .build(),
                node: node.0,
            };
            pep.notify(state, owner, &config, event).await;
            Ok(None)
        }
        OwnerPayload::Affiliations { node, .. } => {
            if req.is_set {
                return Err(unsupported("modify-affiliations"));
            }
            existing_node(state, owner, &node.0).await?;
            Ok(wrap(
                Element::builder("affiliations", NS_OWNER)
                    .attr(xml_ncname!("node").into(), node.0)
                    .append(
                        Element::builder("affiliation", NS_OWNER)
                            .attr(xml_ncname!("jid").into(), owner.as_str())
                            .attr(xml_ncname!("affiliation").into(), "owner")
                            .build(),
                    )
                    .build(),
            ))
        }
        OwnerPayload::Subscriptions { node, .. } => {
            if req.is_set {
                return Err(unsupported("manage-subscriptions"));
            }
            Ok(wrap(
                Element::builder("subscriptions", NS_OWNER)
                    .attr(xml_ncname!("node").into(), node.0)
                    .build(),
            ))
        }
    }
}

/// One item to publish.
pub struct Publication<'a> {
    pub node: &'a str,
    /// The item's id; one is made when none is given.
    pub id: Option<String>,
    pub payload: Option<Element>,
    /// The client's publish-options: preconditions on an existing node, the configuration
    /// of a new one.
    pub options: Option<&'a DataForm>,
    /// For the server's own publishes (conversions): the configuration of a node it
    /// creates (an existing node keeps its own); no conversion follows them.
    pub on_behalf: Option<NodeConfig>,
}

impl Pep {
    /// Publishes one item to `owner`'s node (created when missing), stores it and notifies;
    /// returns the item's id. Also the way the server publishes on an account's behalf
    /// (XEP-0398 avatars, XEP-0402 bookmarks from their legacy forms).
    pub async fn publish(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
        publisher: &Jid,
        publication: Publication<'_>,
    ) -> Result<String, StanzaError> {
        let Publication {
            node,
            id,
            payload,
            options,
            on_behalf,
        } = publication;
        if node.is_empty() {
            return Err(error(
                Cond::BadRequest,
                Some("nodeid-required"),
                "name the node",
            ));
        }
        // Before anything is created: a refused item leaves no node behind.
        let payload_xml = payload.as_ref().map(String::from).unwrap_or_default();
        if payload_xml.len() > self.settings.max_item_size.as_usize() {
            return Err(error(
                Cond::NotAcceptable,
                Some("payload-too-big"),
                &format!(
                    "larger than {} bytes",
                    self.settings.max_item_size.as_usize()
                ),
            ));
        }
        let (domain, user) = account_parts(owner);
        let store = &state.storage.pep;
        let stored = store.pep_node(domain, user, node).await.map_err(storage)?;
        let new_node = stored.is_none();
        let config = match stored {
            Some(stored) => {
                let config = NodeConfig::decode(&stored);
                if let Some(options) = options {
                    if !config.meets(options, self.settings.max_items) {
                        return Err(error(
                            Cond::Conflict,
                            Some("precondition-not-met"),
                            "the node's configuration differs from the publish-options",
                        ));
                    }
                }
                config
            }
            None => {
                let mut config = on_behalf.clone().unwrap_or_default();
                if let Some(options) = options {
                    config
                        .apply(options)
                        .map_err(|FormProblem::Unsupported(what)| {
                            error(
                                Cond::Conflict,
                                Some("precondition-not-met"),
                                &format!("unsupported publish-option {what}"),
                            )
                        })?;
                }
                config
            }
        };
        if payload_xml.is_empty() && (config.persist_items || config.deliver_payloads) {
            return Err(error(
                Cond::BadRequest,
                Some("payload-required"),
                "the item has no payload",
            ));
        }
        if new_node {
            self.create(state, owner, node, &config).await?;
        }
        let id = id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        let item = PepItem {
            id: id.clone(),
            publisher: publisher.to_string(),
            payload: payload_xml,
        };
        if config.persist_items {
            let kept = config.max_items.resolve(self.settings.max_items);
            store
                .publish_pep_item(domain, user, node, &item, kept)
                .await
                .map_err(storage)?;
        }
        let event = items_event(node, &item, config.deliver_payloads);
        self.notify(state, owner, &config, event).await;
        if on_behalf.is_none() {
            // Boxed: a conversion publishes in turn (on the server's behalf, so only once).
            Box::pin(self.convert_published(state, owner, node, payload.as_ref())).await;
        }
        Ok(id)
    }

    /// Creates a node; `conflict` when it exists.
    pub(super) async fn create(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
        node: &str,
        config: &NodeConfig,
    ) -> Result<(), StanzaError> {
        let (domain, user) = account_parts(owner);
        let store = &state.storage.pep;
        let count = store.pep_nodes(domain, user).await.map_err(storage)?.len();
        if count >= self.settings.max_nodes {
            return Err(error(
                Cond::NotAllowed,
                Some("max-nodes-exceeded"),
                &format!("at most {} nodes per account", self.settings.max_nodes),
            ));
        }
        match store
            .create_pep_node(domain, user, node, &config.encode())
            .await
        {
            Ok(()) => {}
            Err(StorageError::AlreadyExists) => {
                return Err(error(Cond::Conflict, None, "the node exists"))
            }
            Err(e) => return Err(storage(e)),
        }
        self.has_nodes(owner);
        Ok(())
    }

    /// Removes items (each must exist) and tells who hears of the node when asked to.
    pub(super) async fn retract(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
        node: &str,
        ids: &[String],
        notify: bool,
    ) -> Result<(), StanzaError> {
        let (domain, user) = account_parts(owner);
        let store = &state.storage.pep;
        let config = existing_node(state, owner, node).await?;
        for id in ids {
            if !store
                .retract_pep_item(domain, user, node, id)
                .await
                .map_err(storage)?
            {
                return Err(error(Cond::ItemNotFound, None, "no such item"));
            }
        }
        if notify || config.notify_retract {
            let mut items =
                Element::builder("items", NS_EVENT).attr(xml_ncname!("node").into(), node);
            for id in ids {
                items = items.append(
                    Element::builder("retract", NS_EVENT)
                        .attr(xml_ncname!("id").into(), id.as_str())
                        .build(),
                );
            }
            let event = Event {
                node: node.to_string(),
                payload: items.build(),
            };
            self.notify(state, owner, &config, event).await;
        }
        Ok(())
    }

    /// Deletes a node with its items and tells who heard of it (§8.4).
    pub(super) async fn delete(
        &self,
        state: &Arc<ServerState>,
        owner: &BareJid,
        node: &str,
    ) -> Result<(), StanzaError> {
        let (domain, user) = account_parts(owner);
        let store = &state.storage.pep;
        let config = existing_node(state, owner, node).await?;
        if config.notify_delete {
            let event = Event {
                node: node.to_string(),
                payload: Element::builder("delete", NS_EVENT)
                    .attr(xml_ncname!("node").into(), node)
                    .build(),
            };
            self.notify(state, owner, &config, event).await;
        }
        store
            .delete_pep_node(domain, user, node)
            .await
            .map_err(storage)?;
        if store
            .pep_nodes(domain, user)
            .await
            .map_err(storage)?
            .is_empty()
        {
            self.has_no_nodes(owner);
        }
        Ok(())
    }
}

/// disco#items of an account (its nodes the requester may read) and disco#info of one node.
pub(super) async fn disco(state: &Arc<ServerState>, req: &IqRequest<'_>) -> Option<IqOutcome> {
    let owner = req.to.to_bare();
    let (domain, user) = account_parts(&owner);
    let store = &state.storage.pep;
    let node = req.payload.attr("node");
    let info = req.payload.is("query", ns::DISCO_INFO);
    let outcome = async {
        if let Some(node) = node {
            let config = existing_node(state, &owner, node).await?;
            may_read(state, req, &owner, &config).await?;
            if !info {
                let items = store
                    .pep_items(domain, user, node, None)
                    .await
                    .map_err(storage)?;
                let mut query = Element::builder("query", ns::DISCO_ITEMS)
                    .attr(xml_ncname!("node").into(), node);
                for item in items.iter().rev() {
                    query = query.append(
                        Element::builder("item", ns::DISCO_ITEMS)
                            .attr(xml_ncname!("jid").into(), owner.as_str())
                            .attr(xml_ncname!("name").into(), item.id.as_str())
                            .build(),
                    );
                }
                return Ok(query.build());
            }
            return Ok(Element::builder("query", ns::DISCO_INFO)
                .attr(xml_ncname!("node").into(), node)
                .append(
                    Element::builder("identity", ns::DISCO_INFO)
                        .attr(xml_ncname!("category").into(), "pubsub")
                        .attr(xml_ncname!("type").into(), "leaf")
                        .build(),
                )
                .append(
                    Element::builder("feature", ns::DISCO_INFO)
                        .attr(xml_ncname!("var").into(), NS_PUBSUB)
                        .build(),
                )
                .append(Element::from(config.meta_data(owner.as_str())))
                .build());
        }
        // The account's items: its nodes the requester may read.
        let nodes = store.pep_nodes(domain, user).await.map_err(storage)?;
        let mut query = Element::builder("query", ns::DISCO_ITEMS);
        let mut subscribed = None;
        for (node, config) in nodes {
            let config = NodeConfig::decode(&config);
            let visible = req.from_owner()
                || match config.access_model {
                    Access::Open => true,
                    Access::Whitelist => false,
                    Access::Presence => {
                        if subscribed.is_none() {
                            subscribed =
                                Some(is_subscriber(state, &owner, &req.from.to_bare()).await);
                        }
                        subscribed == Some(true)
                    }
                };
            if visible {
                query = query.append(
                    Element::builder("item", ns::DISCO_ITEMS)
                        .attr(xml_ncname!("jid").into(), owner.as_str())
                        .attr(xml_ncname!("node").into(), node)
                        .build(),
                );
            }
        }
        Ok(query.build())
    }
    .await;
    Some(match outcome {
        Ok(payload) => IqOutcome::Result(Some(payload)),
        Err(e) => IqOutcome::Error(e),
    })
}
