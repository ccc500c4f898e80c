//! The HTTP side of XEP-0363 on weft's listeners: `PUT /upload/<id>/<name>?token=…` stores a
//! file (streamed to the store, exactly the size the slot allows), `GET` and `HEAD` serve it,
//! `OPTIONS` answers CORS preflights so that web clients on other origins can upload.
//!
//! Served files are the users' content: they carry `X-Content-Type-Options: nosniff`, a
//! Content-Security-Policy that lets nothing run (XEP-0363 §6), and are shown inline only
//! when they are images (not SVG), audio or video.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use weft_storage::{StorageError, StoredFile};

use super::{token, unix_now, Shared, HTTP_PATH};
use crate::state::ServerState;

/// An upload that sends nothing for this long is dropped.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);
/// What a served file may do in a browser: nothing.
const CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";
const OCTET_STREAM: &str = "application/octet-stream";

pub(super) fn routes(shared: Arc<Shared>) -> Router<Arc<ServerState>> {
    Router::new()
        .route(
            &format!("{HTTP_PATH}/{{id}}/{{filename}}"),
            axum::routing::put(put_file)
                .get(get_file)
                .head(get_file)
                .options(preflight),
        )
        .with_state(shared)
}

/// Every answer may be read by a page of any origin (XEP-0363 §5: web clients).
fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

fn answer(status: StatusCode, text: &str) -> Response {
    let mut response = (status, format!("{text}\n")).into_response();
    cors(response.headers_mut());
    response
}

async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    cors(headers);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, PUT, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

/// The media type without parameters, lowercase.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_media_type(ct: &str) -> bool {
    ct.len() <= 255
        && ct
            .split_once('/')
            .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty())
        && ct.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

async fn put_file(
    State(up): State<Arc<Shared>>,
    Path((id, filename)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let token = uri
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("token=")));
    let Some(token) = token else {
        return answer(StatusCode::FORBIDDEN, "no upload token");
    };
    let key = match up.key().await {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!("upload key unavailable: {e}");
            return answer(StatusCode::INTERNAL_SERVER_ERROR, "cannot verify uploads");
        }
    };
    let Some(claims) = token::verify(key, &id, &filename, token) else {
        return answer(StatusCode::FORBIDDEN, "invalid upload token");
    };
    if claims.expires < unix_now() {
        return answer(
            StatusCode::FORBIDDEN,
            "this upload slot has expired: ask for a new one",
        );
    }
    let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return answer(StatusCode::LENGTH_REQUIRED, "Content-Length is required");
    };
    let size = claims.size;
    if length > size || size > up.settings.max_file_size.0 {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("this slot takes {size} bytes"),
        );
    }
    if length < size {
        return answer(
            StatusCode::BAD_REQUEST,
            &format!("this slot takes {size} bytes, not {length}"),
        );
    }
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|ct| !ct.is_empty());
    // XEP-0363 §5: a type given in the slot request must be the one uploaded.
    let content_type = if claims.content_type.is_empty() {
        sent_type
            .filter(|ct| is_media_type(ct))
            .unwrap_or(OCTET_STREAM)
            .to_string()
    } else {
        if sent_type.is_some_and(|ct| essence(ct) != essence(&claims.content_type)) {
            return answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("this slot is for {}", claims.content_type),
            );
        }
        claims.content_type.clone()
    };
    let Some(store) = up.store() else {
        return answer(StatusCode::SERVICE_UNAVAILABLE, "uploads are not ready");
    };
    let file = StoredFile {
        owner: claims.owner,
        filename,
        size,
        content_type,
        created: unix_now(),
    };
    let quota = Some(up.settings.quota_per_account.0).filter(|q| *q > 0);
    let mut upload = match store.begin(&id, file, quota).await {
        Ok(upload) => upload,
        Err(StorageError::AlreadyExists) => {
            return answer(StatusCode::CONFLICT, "this slot was used already")
        }
        Err(StorageError::LimitReached) => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "your upload quota is used up",
            )
        }
        Err(e) => {
            tracing::warn!("upload failed: {e}");
            return answer(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the file");
        }
    };
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    loop {
        let chunk = match tokio::time::timeout(CHUNK_TIMEOUT, stream.next()).await {
            Err(_) => return answer(StatusCode::REQUEST_TIMEOUT, "the upload stalled"),
            Ok(None) => break,
            Ok(Some(Err(_))) => return answer(StatusCode::BAD_REQUEST, "the upload broke off"),
            Ok(Some(Ok(chunk))) => chunk,
        };
        received += chunk.len() as u64;
        if received > size {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("this slot takes {size} bytes"),
            );
        }
        if let Err(e) = upload.write(&chunk).await {
            tracing::warn!("upload failed: {e}");
            return answer(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the file");
        }
    }
    if received != size {
        return answer(
            StatusCode::BAD_REQUEST,
            &format!("this slot takes {size} bytes, not {received}"),
        );
    }
    match upload.finish().await {
        Ok(()) => answer(StatusCode::CREATED, "stored"),
        Err(StorageError::AlreadyExists) => {
            answer(StatusCode::CONFLICT, "this slot was used already")
        }
        Err(e) => {
            tracing::warn!("upload failed: {e}");
            answer(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the file")
        }
    }
}

async fn get_file(
    State(up): State<Arc<Shared>>,
    method: Method,
    Path((id, filename)): Path<(String, String)>,
) -> Response {
    let Some(store) = up.store() else {
        return answer(StatusCode::SERVICE_UNAVAILABLE, "uploads are not ready");
    };
    let found = if method == Method::HEAD {
        store.stat(&id).await.map(|f| f.map(|f| (f, None)))
    } else {
        store.open(&id).await.map(|f| f.map(|(f, r)| (f, Some(r))))
    };
    let (file, reader) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return answer(StatusCode::NOT_FOUND, "no such file"),
        Err(e) => {
            tracing::warn!("reading an upload failed: {e}");
            return answer(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file");
        }
    };
    // The name is part of the URL handed out; an expired file is gone even before the
    // next sweep deletes it.
    if file.filename != filename || up.expired(file.created) {
        return answer(StatusCode::NOT_FOUND, "no such file");
    }
    let body = match reader {
        None => Body::empty(),
        Some(reader) => Body::from_stream(futures_util::stream::unfold(
            Some(reader),
            |reader| async move {
                let mut reader = reader?;
                let mut buf = BytesMut::with_capacity(64 * 1024);
                match reader.read_buf(&mut buf).await {
                    Ok(0) => None,
                    Ok(_) => Some((Ok(buf.freeze()), Some(reader))),
                    Err(e) => Some((Err(e), None)),
                }
            },
        )),
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    cors(headers);
    let content_type =
        HeaderValue::from_str(&file.content_type).unwrap_or(HeaderValue::from_static(OCTET_STREAM));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    if let Ok(disposition) = HeaderValue::from_str(&disposition(&file)) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// `inline` for media a browser shows without running anything, else `attachment`; the
/// name as RFC 6266 has it (an ASCII fallback and the UTF-8 original).
fn disposition(file: &StoredFile) -> String {
    let ct = essence(&file.content_type);
    let media = ["image/", "audio/", "video/"]
        .iter()
        .any(|p| ct.starts_with(p));
    let kind = if media && ct != "image/svg+xml" {
        "inline"
    } else {
        "attachment"
    };
    let ascii: String = file
        .filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        urlencoding::encode(&file.filename)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, ct: &str) -> StoredFile {
        StoredFile {
            owner: "a@b".into(),
            filename: name.into(),
            size: 1,
            content_type: ct.into(),
            created: 0,
        }
    }

    #[test]
    fn only_plain_media_is_inline() {
        assert_eq!(
            disposition(&file("très cool.jpg", "image/jpeg")),
            "inline; filename=\"tr_s cool.jpg\"; filename*=UTF-8''tr%C3%A8s%20cool.jpg"
        );
        assert!(disposition(&file("a.ogg", "Audio/Ogg; codecs=opus")).starts_with("inline;"));
        assert!(disposition(&file("a.svg", "image/svg+xml")).starts_with("attachment;"));
        assert!(disposition(&file("a.html", "text/html")).starts_with("attachment;"));
        assert!(disposition(&file("\"x\".txt", "text/plain")).contains("filename=\"_x_.txt\""));
    }
}
