//! A stand-in website for federation tests: HTTPS on loopback with a certificate from the
//! test CA, serving one document at one path (a domain's host-meta) and 404 elsewhere.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TestCa;

/// Serves `body` as `content_type` at `path` over HTTPS with a certificate for `cert_for`;
/// returns the address and the serving task (abort it when done).
pub async fn https_document(
    ca: &TestCa,
    cert_for: &str,
    path: &str,
    content_type: &str,
    body: String,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let pki = ca.issue(&[cert_for.to_string()]);
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![pki.server_cert.clone()], pki.server_key())
    .expect("certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let request_line = format!("GET {path} ");
    let content_type = content_type.to_string();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut buf = vec![0u8; 4096];
            let n = tls.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let response = if request.starts_with(&request_line) {
                format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = tls.write_all(response.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    });
    (addr, task)
}
