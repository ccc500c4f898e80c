//! XEP-0156 §3.2 rule 1 / XEP-0487 §2.2 rule 1: GET a host-meta document over verified HTTPS only — bounded body, bounded HTTPS-only redirects, connect timeouts, certificate verified for the URL's host.
//!
//! Built on hyper's connection-level HTTP/1.1 client over our own tokio-rustls stream rather
//! than hyper-util's pooled `Client`: we need to choose the TCP address (resolver overrides)
//! independently of the name the certificate is verified for, to refuse rather than follow
//! redirects, and to keep no idle connections to arbitrary remote hosts. All of that is what
//! the connection-level API gives directly, while a pooled client would need a custom
//! connector and would still hide the redirect and pooling decisions we must make. hyper
//! still does the HTTP parsing (chunked encoding, header limits), which a hand-written GET
//! would have to re-implement.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT, CONNECTION, CONTENT_LENGTH, HOST, LOCATION, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::HttpLimits;
use crate::dns::Resolver;
use crate::error::{HostMetaError, LookupError};

/// Largest response head (status line and headers) hyper buffers; hyper's own minimum is
/// 8 KiB, and host-meta responses have no reason for large headers.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// An `https://` URL split into what a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpsUrl {
    /// Host, lower case, IPv6 without brackets: the TLS server name and `Host`.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpsUrl {
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 443 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    pub(crate) fn to_url(&self) -> String {
        format!("https://{}{}", self.authority(), self.path)
    }

    /// Parse an absolute `https://` URL; any other scheme is `Err(Some(scheme))`, a
    /// malformed URL `Err(None)`.
    pub(crate) fn parse(s: &str) -> Result<Self, Option<String>> {
        let uri: http::Uri = s.parse().map_err(|_| None)?;
        let scheme = uri.scheme_str().ok_or(None)?;
        if !scheme.eq_ignore_ascii_case("https") {
            return Err(Some(scheme.to_ascii_lowercase()));
        }
        let authority = uri.authority().ok_or(None)?;
        if authority.as_str().contains('@') {
            return Err(None);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() || ServerName::try_from(host.as_str()).is_err() {
            return Err(None);
        }
        let port = port_of(authority).map_err(|_| None)?.unwrap_or(443);
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .filter(|p| p.starts_with('/'))
            .unwrap_or_else(|| "/".to_owned());
        Ok(HttpsUrl { host, port, path })
    }

    /// Resolve a `Location` header against this URL (RFC 9110 §10.2.2, RFC 3986 §5).
    fn redirect(&self, location: &str) -> Result<HttpsUrl, HostMetaError> {
        let location = location.split('#').next().unwrap_or_default().trim();
        let bad = |reason: &str| HostMetaError::BadRedirect {
            url: self.to_url(),
            reason: reason.to_owned(),
        };
        if location.is_empty() {
            return Err(bad("empty Location"));
        }
        if let Some(rest) = location.strip_prefix("//") {
            // Scheme-relative: inherits https.
            return HttpsUrl::parse(&format!("https://{rest}"))
                .map_err(|_| bad("malformed Location"));
        }
        if location.starts_with('/') {
            return Ok(HttpsUrl {
                path: location.to_owned(),
                ..self.clone()
            });
        }
        if let Some(scheme) = scheme_of(location) {
            if !scheme.eq_ignore_ascii_case("https") {
                return Err(HostMetaError::InsecureRedirect {
                    url: self.to_url(),
                    location: location.to_owned(),
                });
            }
            return HttpsUrl::parse(location).map_err(|_| bad("malformed Location"));
        }
        // A relative path: replace the last segment of ours.
        let dir = self.path.split('?').next().unwrap_or("/");
        let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
        Ok(HttpsUrl {
            path: format!("{dir}{location}"),
            ..self.clone()
        })
    }
}

/// RFC 3986 §3.1: `scheme ":"`, the scheme being a letter then letters, digits, `+-.`.
fn scheme_of(s: &str) -> Option<&str> {
    let scheme = &s[..s.find(':')?];
    let valid = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// The authority's port: `None` if absent, `Err` if not in 1..=65535. Read from the text:
/// `http::Uri` accepts any digits, and its `port()` then silently says "no port".
pub(crate) fn port_of(authority: &http::uri::Authority) -> Result<Option<u16>, ()> {
    let s = authority.as_str();
    let s = &s[s.rfind('@').map_or(0, |i| i + 1)..];
    let after_host = match s.strip_prefix('[') {
        Some(v6) => &v6[v6.find(']').ok_or(())? + 1..],
        None => s.find(':').map_or("", |i| &s[i..]),
    };
    match after_host.strip_prefix(':') {
        None if after_host.is_empty() => Ok(None),
        None => Err(()),
        Some(port) => match port.parse::<u16>() {
            Ok(0) | Err(_) => Err(()),
            Ok(n) => Ok(Some(n)),
        },
    }
}

/// Connect to this address instead of resolving `host` (a resolver override); the
/// certificate is still verified for `host`.
#[derive(Clone, Debug)]
pub(crate) struct Pin {
    pub host: String,
    pub connect_host: String,
    pub connect_port: u16,
}

/// A document and the URL it was finally served from.
pub(crate) struct Fetched {
    pub body: Bytes,
    pub url: String,
}

enum ConnectFailure {
    /// TCP failed: try the next address.
    Tcp { reason: String, timed_out: bool },
    /// TLS failed (certificate not valid for the name, handshake refused, …).
    Tls(String),
}

enum Answer {
    Body(Bytes),
    Redirect(String),
}

pub(crate) struct Fetcher {
    connector: TlsConnector,
    limits: HttpLimits,
}

impl Fetcher {
    pub(crate) fn new(tls: &rustls::ClientConfig, limits: HttpLimits) -> Self {
        let mut tls = tls.clone();
        // We speak HTTP/1.1 only; whatever ALPN the caller's config carries (it may be the
        // one used for XMPP) must not be offered to a web server.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Fetcher {
            connector: TlsConnector::from(Arc::new(tls)),
            limits,
        }
    }

    /// GET `url`, following up to `max_redirects` HTTPS-only redirects.
    pub(crate) async fn get(
        &self,
        resolver: &Resolver,
        mut url: HttpsUrl,
        pin: Option<&Pin>,
        accept: &str,
    ) -> Result<Fetched, HostMetaError> {
        let mut redirects = 0u8;
        loop {
            let stream = self.connect(resolver, &url, pin).await?;
            match self.exchange(stream, &url, accept).await? {
                Answer::Body(body) => {
                    return Ok(Fetched {
                        body,
                        url: url.to_url(),
                    })
                }
                Answer::Redirect(location) => {
                    if redirects >= self.limits.max_redirects {
                        return Err(HostMetaError::TooManyRedirects {
                            url: url.to_url(),
                            limit: self.limits.max_redirects,
                        });
                    }
                    redirects += 1;
                    let next = url.redirect(&location)?;
                    tracing::debug!(from = %url.to_url(), to = %next.to_url(), "host-meta redirect");
                    url = next;
                }
            }
        }
    }

    /// TCP to each address in turn, then TLS with the certificate verified for `url.host`.
    async fn connect(
        &self,
        resolver: &Resolver,
        url: &HttpsUrl,
        pin: Option<&Pin>,
    ) -> Result<TlsStream<TcpStream>, HostMetaError> {
        let (host, port) = match pin {
            Some(pin) if pin.host == url.host => (pin.connect_host.as_str(), pin.connect_port),
            _ => (url.host.as_str(), url.port),
        };
        let addrs =
            resolver
                .socket_addrs(host, port)
                .await
                .map_err(|e| HostMetaError::Resolve {
                    host: host.to_owned(),
                    reason: e.to_string(),
                    not_found: matches!(e, LookupError::NxDomain(_) | LookupError::NoRecords(_)),
                })?;
        let server_name =
            ServerName::try_from(url.host.clone()).map_err(|e| HostMetaError::Tls {
                server_name: url.host.clone(),
                reason: e.to_string(),
            })?;
        let mut last = ("no address".to_owned(), false);
        for addr in addrs {
            match self.connect_one(addr, server_name.clone()).await {
                Ok(stream) => return Ok(stream),
                Err(ConnectFailure::Tcp { reason, timed_out }) => {
                    tracing::debug!(%addr, %reason, "host-meta: connect failed");
                    last = (format!("{addr}: {reason}"), timed_out);
                }
                // A TLS failure is about the host (its certificate), not this address.
                Err(ConnectFailure::Tls(reason)) => {
                    return Err(HostMetaError::Tls {
                        server_name: url.host.clone(),
                        reason,
                    })
                }
            }
        }
        Err(HostMetaError::Connect {
            host: format!("{host}:{port}"),
            reason: last.0,
            timed_out: last.1,
        })
    }

    /// TCP connect and TLS handshake to one address, each bounded by `connect_timeout`.
    async fn connect_one(
        &self,
        addr: SocketAddr,
        server_name: ServerName<'static>,
    ) -> Result<TlsStream<TcpStream>, ConnectFailure> {
        let tcp = match timeout(self.limits.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                return Err(ConnectFailure::Tcp {
                    reason: e.to_string(),
                    timed_out: false,
                })
            }
            Err(_) => {
                return Err(ConnectFailure::Tcp {
                    reason: "timed out".into(),
                    timed_out: true,
                })
            }
        };
        match timeout(
            self.limits.connect_timeout,
            self.connector.connect(server_name, tcp),
        )
        .await
        {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(ConnectFailure::Tls(e.to_string())),
            // A host that accepts TCP but never completes TLS is as unreachable as one that
            // never accepts: try the next address.
            Err(_) => Err(ConnectFailure::Tcp {
                reason: "TLS handshake timed out".into(),
                timed_out: true,
            }),
        }
    }

    /// One request/response on a fresh connection.
    async fn exchange(
        &self,
        stream: TlsStream<TcpStream>,
        url: &HttpsUrl,
        accept: &str,
    ) -> Result<Answer, HostMetaError> {
        let http_err = |e: &dyn std::fmt::Display| HostMetaError::Http {
            url: url.to_url(),
            reason: e.to_string(),
        };
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| http_err(&e))?;
        let request = Request::get(url.path.as_str())
            .header(HOST, url.authority())
            .header(USER_AGENT, "weft")
            .header(ACCEPT, accept)
            // One request per connection: no keep-alive with arbitrary remote hosts.
            .header(CONNECTION, "close")
            .body(Empty::new())
            .map_err(|e| http_err(&e))?;
        let cap = self.limits.max_body_bytes;
        let work = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| http_err(&e))?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| HostMetaError::BadRedirect {
                        url: url.to_url(),
                        reason: format!("status {} without a Location", status.as_u16()),
                    })?;
                return Ok(Answer::Redirect(location.to_owned()));
            }
            if status != StatusCode::OK {
                return Err(HostMetaError::Status {
                    url: url.to_url(),
                    status: status.as_u16(),
                });
            }
            let too_large = || HostMetaError::BodyTooLarge {
                url: url.to_url(),
                limit: cap,
            };
            // Refuse early when the size is announced; otherwise count while reading.
            let announced = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if announced.is_some_and(|n| n > cap as u64) {
                return Err(too_large());
            }
            let body = Limited::new(response.into_body(), cap)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        too_large()
                    } else {
                        http_err(&e)
                    }
                })?;
            Ok(Answer::Body(body.to_bytes()))
        };
        // The connection future must be polled for the request to make progress; it is
        // driven here instead of spawned so that dropping this future (timeout) closes the
        // socket and leaves no task behind.
        let mut conn = std::pin::pin!(conn);
        let mut work = std::pin::pin!(work);
        tokio::select! {
            biased;
            answer = &mut work => answer,
            // The connection ended first (server closed): whatever was received is already
            // in the body channel, or the request fails with hyper's reason.
            _ = &mut conn => work.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HttpsUrl {
        HttpsUrl::parse("https://b.test/.well-known/host-meta.json").unwrap()
    }

    #[test]
    fn urls() {
        assert_eq!(
            HttpsUrl::parse("HTTPS://B.test:8443/x?y"),
            Ok(HttpsUrl {
                host: "b.test".into(),
                port: 8443,
                path: "/x?y".into()
            })
        );
        assert_eq!(
            HttpsUrl::parse("https://[::1]:1/").unwrap().to_url(),
            "https://[::1]:1/"
        );
        assert_eq!(
            HttpsUrl::parse("https://b.test").unwrap().to_url(),
            "https://b.test/"
        );
        assert_eq!(HttpsUrl::parse("http://b.test/"), Err(Some("http".into())));
        assert_eq!(HttpsUrl::parse("https://u@b.test/"), Err(None));
        assert_eq!(HttpsUrl::parse("https:///x"), Err(None));
        assert_eq!(HttpsUrl::parse("nonsense"), Err(None));
    }

    #[test]
    fn redirects_resolve_and_downgrades_are_refused() {
        let b = base();
        assert_eq!(
            b.redirect("/other").unwrap().to_url(),
            "https://b.test/other"
        );
        assert_eq!(
            b.redirect("host-meta.jrd#frag").unwrap().to_url(),
            "https://b.test/.well-known/host-meta.jrd"
        );
        assert_eq!(
            b.redirect("//c.test:444/h").unwrap().to_url(),
            "https://c.test:444/h"
        );
        assert_eq!(
            b.redirect("https://c.test/h").unwrap().to_url(),
            "https://c.test/h"
        );
        for insecure in [
            "http://b.test/x",
            "HTTP://b.test/x",
            "ftp://b.test/",
            "data:text/plain,x",
        ] {
            assert!(
                matches!(
                    b.redirect(insecure),
                    Err(HostMetaError::InsecureRedirect { .. })
                ),
                "{insecure}"
            );
        }
        for bad in [
            "",
            "https://",
            "//",
            "https://u:p@c.test/",
            "https://c.test:70000/",
        ] {
            assert!(
                matches!(b.redirect(bad), Err(HostMetaError::BadRedirect { .. })),
                "{bad}"
            );
        }
    }
}
