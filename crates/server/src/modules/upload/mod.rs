//! XEP-0363 HTTP File Upload: a service entity `upload.<domain>` (listed in the server's
//! disco#items, as Conversations, Gajim and Converse.js look for it) hands local accounts
//! slots — a PUT URL and a GET URL — and weft's own HTTP and HTTPS listeners take the PUT
//! and serve the GET (`http.rs`). Files go to a [`FileStore`] (by default a directory in the
//! data directory), count against their uploader's quota, and are deleted `expire_after`
//! their upload by a task that runs at start and then every so often.
//!
//! A slot is not stored: its PUT URL carries a token signed with the server's key
//! (`token.rs`), so the HTTP side verifies it alone, after a restart too.

mod http;
mod token;

use crate::compliance::Claim;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use minidom::Element;
use serde::Deserialize;
use weft_config::{ByteSize, ConfigError, HumanDuration};
use weft_storage::{FileStore, StorageError};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::http_upload::{Get, Put, SlotResult};

use super::{IqOutcome, IqRequest, Module, ModuleDef, ModuleSpec, Section};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::ns;
use crate::state::ServerState;

pub const DEF: ModuleDef = ModuleDef {
    name: "upload",
    default_enabled: true,
    spec: &SPEC,
    build,
};

pub const NS: &str = "urn:xmpp:http:upload:0";
/// The disco item name and identity name of the service.
const NAME: &str = "HTTP File Upload";
/// Where weft's listeners serve uploads; `base_url` stands for it behind a proxy.
pub const HTTP_PATH: &str = "/upload";

static SPEC: ModuleSpec = ModuleSpec {
    specs: &[Claim::xep(
        363,
        "1.2.0",
        "modules::upload: upload.<domain> on weft's own listeners; no Range requests",
    )],
    ..ModuleSpec::named("upload")
};

/// `[modules.upload]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadSettings {
    /// The service's JID is `SUBDOMAIN.<domain>` for each hosted domain.
    pub subdomain: String,
    /// Largest file accepted; larger requests get `<file-too-large/>`.
    pub max_file_size: ByteSize,
    /// Bytes one account may keep at a time; 0: no limit.
    pub quota_per_account: ByteSize,
    /// Files are deleted this long after their upload.
    pub expire_after: HumanDuration,
    /// How long a slot's PUT URL is accepted.
    pub slot_lifetime: HumanDuration,
    /// The public URL that reaches weft's `/upload` path (behind a reverse proxy), e.g.
    /// "https://files.example.org/upload". Default: https://DOMAIN:PORT/upload on the
    /// first HTTPS listener, DOMAIN the uploader's.
    pub base_url: Option<String>,
    /// Directory of the files. Default: `<data_dir>/upload`.
    pub path: Option<PathBuf>,
    /// The key that signs PUT URLs (32 characters or more; the same on every node of a
    /// cluster). Default: made once and kept in `<data_dir>/upload-secret`.
    pub secret: Option<String>,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            subdomain: "upload".into(),
            max_file_size: ByteSize(100 * 1024 * 1024),
            quota_per_account: ByteSize(1024 * 1024 * 1024),
            expire_after: HumanDuration(Duration::from_secs(30 * 86400)),
            slot_lifetime: HumanDuration(Duration::from_secs(300)),
            base_url: None,
            path: None,
            secret: None,
        }
    }
}

fn build(section: &Section) -> Result<Arc<dyn Module>, Vec<ConfigError>> {
    let mut settings: UploadSettings = section.parse()?;
    let mut problems = Vec::new();
    let label = &settings.subdomain;
    let label_ok = !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !label_ok {
        problems.push(section.error(
            "subdomain",
            "must be one DNS label: lowercase letters, digits and '-'",
        ));
    }
    if settings.max_file_size.0 == 0 {
        problems.push(section.error("max_file_size", "must be more than 0"));
    }
    let quota = settings.quota_per_account.0;
    if quota != 0 && quota < settings.max_file_size.0 {
        problems.push(section.error(
            "quota_per_account",
            format!(
                "is smaller than max_file_size ({}); 0 means no quota",
                settings.max_file_size
            ),
        ));
    }
    if settings.expire_after.0 < Duration::from_secs(1) {
        problems.push(section.error("expire_after", "must be at least 1s"));
    }
    let lifetime = settings.slot_lifetime.0;
    if lifetime < Duration::from_secs(1) || lifetime > Duration::from_secs(86400) {
        problems.push(section.error("slot_lifetime", "must be between 1s and 1d"));
    }
    if let Some(url) = &mut settings.base_url {
        let rest = url.strip_prefix("https://");
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            problems.push(section.error(
                "base_url",
                "must be an https:// URL (XEP-0363 requires TLS)",
            ));
        } else if url.contains(['?', '#', ' ']) {
            problems.push(section.error("base_url", "must have no query, fragment or space"));
        }
        while url.ends_with('/') {
            url.pop();
        }
    }
    if settings.secret.as_ref().is_some_and(|s| s.len() < 32) {
        problems.push(section.error("secret", "must be at least 32 characters"));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(Upload {
        shared: Arc::new(Shared {
            settings,
            store: OnceLock::new(),
            key: tokio::sync::OnceCell::new(),
            secret_file: OnceLock::new(),
        }),
        serving: OnceLock::new(),
    }))
}

pub struct Upload {
    shared: Arc<Shared>,
    /// Set by `start`: whether slots can be handed out (a base URL, or an HTTPS listener).
    serving: OnceLock<bool>,
}

/// What the XMPP and HTTP sides share.
struct Shared {
    settings: UploadSettings,
    store: OnceLock<Arc<dyn FileStore>>,
    /// The HMAC key of slot tokens, read or made on first use.
    key: tokio::sync::OnceCell<Vec<u8>>,
    /// Where the key is kept when not configured (set by `start`).
    secret_file: OnceLock<PathBuf>,
}

impl Shared {
    /// Deletes every file older than `expire_after` now; returns how many.
    pub async fn expire_now(&self) -> usize {
        let Some(store) = self.store() else {
            return 0;
        };
        let before = unix_now().saturating_sub(
            i64::try_from(self.settings.expire_after.0.as_secs()).unwrap_or(i64::MAX),
        );
        let ids = match store.created_before(before).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("listing expired uploads failed: {e}");
                return 0;
            }
        };
        let mut deleted = 0;
        for id in ids {
            match store.delete(&id).await {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!("deleting expired upload {id} failed: {e}"),
            }
        }
        if deleted > 0 {
            tracing::info!("deleted {deleted} expired uploads");
        }
        deleted
    }

    fn store(&self) -> Option<&Arc<dyn FileStore>> {
        self.store.get()
    }

    async fn key(&self) -> std::io::Result<&[u8]> {
        let key = self
            .key
            .get_or_try_init(|| async {
                if let Some(secret) = &self.settings.secret {
                    return Ok(secret.as_bytes().to_vec());
                }
                let Some(path) = self.secret_file.get().cloned() else {
                    return Err(std::io::Error::other("upload module not started"));
                };
                tokio::task::spawn_blocking(move || read_or_make_secret(&path))
                    .await
                    .map_err(std::io::Error::other)?
            })
            .await?;
        Ok(key)
    }

    /// Whether a file stored at `created` has expired.
    fn expired(&self, created: i64) -> bool {
        let age = unix_now().saturating_sub(created);
        u64::try_from(age).unwrap_or(0) >= self.settings.expire_after.0.as_secs()
    }
}

/// The key in `path`, made (256 random bits, hex) when it is missing or too short.
fn read_or_make_secret(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let text = text.trim();
        if text.len() >= 32 {
            return Ok(text.as_bytes().to_vec());
        }
    }
    if let Some(dir) = path.parent() {
        weft_storage::private::create_dir(dir)?;
    }
    let bytes: [u8; 32] = rand::random();
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    weft_storage::private::write_file(path, secret.as_bytes())?;
    Ok(secret.into_bytes())
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Upload {
    /// Deletes every file older than `expire_after` now; returns how many. The background
    /// task does this at start and then every tenth of `expire_after` (1 min to 1 h).
    pub async fn expire_now(&self) -> usize {
        self.shared.expire_now().await
    }

    /// The URL prefix of files for an uploader of `domain`.
    fn base_url(&self, state: &ServerState, domain: &str) -> Option<String> {
        if let Some(url) = &self.shared.settings.base_url {
            return Some(url.clone());
        }
        let port = state.config.listen.https.first()?.port();
        Some(if port == 443 {
            format!("https://{domain}{HTTP_PATH}")
        } else {
            format!("https://{domain}:{port}{HTTP_PATH}")
        })
    }

    fn disco_info(&self) -> Element {
        let form = DataForm::new(
            DataFormType::Result_,
            NS,
            vec![Field::text_single(
                "max-file-size",
                &self.shared.settings.max_file_size.0.to_string(),
            )],
        );
        DiscoInfoResult {
            node: None,
            identities: vec![Identity::new("store", "file", "en", NAME)],
            features: [ns::DISCO_INFO, ns::DISCO_ITEMS, NS]
                .into_iter()
                .map(String::from)
                .collect(),
            extensions: vec![form],
        }
        .into()
    }

    async fn slot(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        let settings = &self.shared.settings;
        // Only accounts of this server, from one of their sessions.
        let Some(from) = req.local_sender(state) else {
            return IqOutcome::error(
                StanzaErrorCondition::Forbidden,
                "only accounts of this server may upload files",
            );
        };
        if req.is_set {
            return IqOutcome::error(StanzaErrorCondition::BadRequest, "a slot request is a get");
        }
        let request = match SlotRequest::parse(req.payload) {
            Ok(request) => request,
            Err(why) => return IqOutcome::error(StanzaErrorCondition::BadRequest, why),
        };
        let max = settings.max_file_size.0;
        if request.size > max {
            // XEP-0363 §4.2.
            return IqOutcome::Error(
                StanzaError::new(StanzaErrorCondition::NotAcceptable)
                    .with_text(format!(
                        "File too large. The maximum file size is {max} bytes"
                    ))
                    .with_app_element(
                        Element::builder("file-too-large", NS)
                            .append(
                                Element::builder("max-file-size", NS)
                                    .append(max.to_string())
                                    .build(),
                            )
                            .build(),
                    ),
            );
        }
        let (Some(store), Some(base)) = (
            self.shared.store(),
            self.base_url(state, from.domain().as_str()),
        ) else {
            return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
        };
        let owner = from.to_bare().to_string();
        let quota = settings.quota_per_account.0;
        if quota > 0 {
            let used = match store.usage(&owner).await {
                Ok(used) => used,
                Err(e) => return IqOutcome::storage_failed("upload usage", e),
            };
            if used.saturating_add(request.size) > quota {
                return IqOutcome::error(
                    StanzaErrorCondition::ResourceConstraint,
                    &format!(
                        "Quota reached: {used} of {quota} bytes in use; files are deleted {} after their upload",
                        humanize(settings.expire_after.0)
                    ),
                );
            }
        }
        let key = match self.shared.key().await {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!("upload key unavailable: {e}");
                return IqOutcome::Error(StanzaError::new(
                    StanzaErrorCondition::InternalServerError,
                ));
            }
        };
        let id: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let claims = token::Claims {
            expires: unix_now()
                .saturating_add(i64::try_from(settings.slot_lifetime.0.as_secs()).unwrap_or(0)),
            size: request.size,
            content_type: request.content_type.unwrap_or_default(),
            owner,
        };
        let token = token::sign(key, &id, &request.filename, &claims);
        let get = format!("{base}/{id}/{}", urlencoding::encode(&request.filename));
        let slot = SlotResult {
            put: Put {
                url: format!("{get}?token={token}"),
                headers: Vec::new(),
            },
            get: Get { url: get },
        };
        IqOutcome::Result(Some(slot.into()))
    }
}

/// "30d", "12h", "5m" or "10s": for texts.
fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s >= 86400 && s.is_multiple_of(86400) => format!("{}d", s / 86400),
        _ if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// XEP-0363 §4.1 `<request filename size content-type/>`. Read by hand rather than with
/// xmpp-parsers, which refuses the XEP's purpose children (`<message/>`, `<profile/>`).
struct SlotRequest {
    filename: String,
    size: u64,
    content_type: Option<String>,
}

impl SlotRequest {
    fn parse(el: &Element) -> Result<SlotRequest, &'static str> {
        let filename = el
            .attr("filename")
            .ok_or("the filename attribute is missing")?;
        let size = el
            .attr("size")
            .ok_or("the size attribute is missing")?
            .trim()
            .parse::<u64>()
            .map_err(|_| "the size is not a number of bytes")?;
        // Kept intact in the URLs (percent-encoded), but never a path or a header breaker.
        let bad_name = filename.is_empty()
            || filename.len() > 255
            || filename == "."
            || filename == ".."
            || filename
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control());
        if bad_name {
            return Err(
                "the filename must be 1 to 255 bytes, without '/', '\\' or control characters",
            );
        }
        let content_type = match el.attr("content-type").map(str::trim) {
            None | Some("") => None,
            Some(ct) => {
                let valid = ct.len() <= 255
                    && ct
                        .split_once('/')
                        .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty())
                    && ct.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
                if !valid {
                    return Err("the content-type is not a media type such as image/jpeg");
                }
                Some(ct.to_string())
            }
        };
        Ok(SlotRequest {
            filename: filename.to_string(),
            size,
            content_type,
        })
    }
}

#[async_trait::async_trait]
impl Module for Upload {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn service(&self) -> Option<(&str, &str)> {
        // Listed before start too: the tables are built then. Not serving: none.
        if self.serving.get() == Some(&false) {
            return None;
        }
        Some((self.shared.settings.subdomain.as_str(), NAME))
    }

    async fn start(&self, state: &Arc<ServerState>) -> Result<(), StorageError> {
        let data_dir = &state.config.server.data_dir;
        let settings = &self.shared.settings;
        let serving = settings.base_url.is_some() || !state.config.listen.https.is_empty();
        if !serving {
            tracing::warn!(
                "XEP-0363 uploads are off: no HTTPS listener and no modules.upload.base_url"
            );
        }
        let _ = self.serving.set(serving);
        let _ = self.shared.secret_file.set(data_dir.join("upload-secret"));
        let root = settings
            .path
            .clone()
            .unwrap_or_else(|| data_dir.join("upload"));
        let store = tokio::task::spawn_blocking(move || weft_storage::DiskFileStore::open(&root))
            .await
            .map_err(|e| StorageError::Corrupt(format!("opening the upload store: {e}")))??;
        let _ = self.shared.store.set(Arc::new(store));
        // Expiry: once now, then every tenth of `expire_after` (between a minute and an hour).
        let interval = (settings.expire_after.0 / 10)
            .clamp(Duration::from_secs(60), Duration::from_secs(3600));
        let shared = self.shared.clone();
        let shutdown = state.shutdown.clone();
        state.tracker.spawn(async move {
            loop {
                shared.expire_now().await;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        });
        Ok(())
    }

    async fn iq(&self, state: &Arc<ServerState>, req: &IqRequest<'_>) -> IqOutcome {
        // Every IQ to the service's JID comes here (see `Module::service`).
        let payload = req.payload;
        if payload.is("request", NS) {
            return self.slot(state, req).await;
        }
        if payload.is("query", ns::DISCO_INFO) || payload.is("query", ns::DISCO_ITEMS) {
            if req.is_set {
                return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
            }
            if payload.attr("node").is_some() {
                return IqOutcome::Error(StanzaError::new(StanzaErrorCondition::ItemNotFound));
            }
            if payload.is("query", ns::DISCO_ITEMS) {
                return IqOutcome::Result(Some(Element::builder("query", ns::DISCO_ITEMS).build()));
            }
            return IqOutcome::Result(Some(self.disco_info()));
        }
        IqOutcome::NotMine
    }

    fn http_routes(&self) -> Option<axum::Router<Arc<ServerState>>> {
        Some(http::routes(self.shared.clone()))
    }
}
