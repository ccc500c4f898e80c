//! Checking a certificate and key before serving with them (`weft config check`, and the
//! generated self-signed certificate's renewal): readable, parsable, the key belongs to the
//! certificate, currently valid, and valid for the configured domains (RFC 6125 §6.4: DNS names
//! of the subjectAltName, a wildcard covering one leftmost label).

use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::tls::{crypto_provider, read_certs, read_key};

/// A certificate expiring sooner than this is worth a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// One thing found wrong with a certificate or key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFinding {
    /// The configuration key it is about (`tls.cert` or `tls.key`).
    pub key: &'static str,
    pub message: String,
    /// The server cannot (or should not) serve with it; otherwise a warning.
    pub fatal: bool,
}

/// Everything wrong with the pair at `cert` and `key` for serving `domains`.
pub fn check_pair(cert: &Path, key: &Path, domains: &[String]) -> Vec<CertFinding> {
    let mut found = Vec::new();
    let fatal = |key, e: anyhow::Error| CertFinding {
        key,
        message: format!("{e:#}"),
        fatal: true,
    };
    let certs = read_certs(cert)
        .map_err(|e| found.push(fatal("tls.cert", e)))
        .ok();
    let private = read_key(key)
        .map_err(|e| found.push(fatal("tls.key", e)))
        .ok();
    let Some(certs) = certs else { return found };
    if let Some(private) = private {
        if !keys_match(&certs, private) {
            found.push(CertFinding {
                key: "tls.key",
                message: format!(
                    "the key in {} does not belong to the certificate in {}",
                    key.display(),
                    cert.display()
                ),
                fatal: true,
            });
        }
    }
    found.extend(check_certificate(&certs[0], domains, SystemTime::now()));
    found
}

/// Does `key` belong to the end-entity certificate of `certs`?
fn keys_match(certs: &[CertificateDer<'static>], key: PrivateKeyDer<'static>) -> bool {
    let Ok(signing) = crypto_provider().key_provider.load_private_key(key) else {
        return false;
    };
    rustls::sign::CertifiedKey::new(certs.to_vec(), signing)
        .keys_match()
        .is_ok()
}

/// Validity period and names of one end-entity certificate.
fn check_certificate(
    cert: &CertificateDer<'_>,
    domains: &[String],
    now: SystemTime,
) -> Vec<CertFinding> {
    let finding = |message: String, fatal| CertFinding {
        key: "tls.cert",
        message,
        fatal,
    };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return vec![finding("the certificate is not valid X.509".into(), true)];
    };
    let mut out = Vec::new();
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let validity = parsed.validity();
    if validity.not_after.timestamp() < now_secs {
        out.push(finding(
            format!("the certificate expired on {}", validity.not_after),
            true,
        ));
    } else if validity.not_after.timestamp() < now_secs + EXPIRY_WARNING.as_secs() as i64 {
        out.push(finding(
            format!("the certificate expires on {}", validity.not_after),
            false,
        ));
    }
    if validity.not_before.timestamp() > now_secs {
        out.push(finding(
            format!(
                "the certificate is not valid before {}",
                validity.not_before
            ),
            true,
        ));
    }
    let names = dns_names(cert);
    for domain in domains {
        if !names.iter().any(|n| name_matches(n, domain)) {
            let listed = if names.is_empty() {
                "no DNS names".to_string()
            } else {
                names.join(", ")
            };
            out.push(finding(
                format!(
                    "the certificate is not valid for {domain} (it names {listed}): clients \
                     will refuse it and federation peers will not verify it"
                ),
                true,
            ));
        }
    }
    out
}

/// Whether `cert` (PEM file) covers every domain; false when it cannot be read.
pub fn covers(cert: &Path, domains: &[String]) -> bool {
    let Ok(certs) = read_certs(cert) else {
        return false;
    };
    let names = dns_names(&certs[0]);
    domains
        .iter()
        .all(|d| names.iter().any(|n| name_matches(n, d)))
}

/// The subjectAltName DNS names of a certificate, lowercased.
fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// RFC 6125 §6.4.3: exact match, or `*.rest` matching one label followed by `rest`.
fn name_matches(pattern: &str, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern.trim_end_matches('.');
    if let Some(rest) = pattern.strip_prefix("*.") {
        return domain
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == rest);
    }
    pattern == domain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, names: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let tag = names.join("+");
        let (c, k) = (
            dir.join(format!("{tag}.crt")),
            dir.join(format!("{tag}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn names_and_wildcards() {
        assert!(name_matches("example.org", "example.org"));
        assert!(name_matches("*.example.org", "conference.example.org"));
        assert!(!name_matches("*.example.org", "example.org"));
        assert!(!name_matches("*.example.org", "a.b.example.org"));
        assert!(!name_matches("example.org", "example.com"));
    }

    #[test]
    fn a_good_pair_passes_and_every_fault_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), &["a.test", "*.a.test"]);
        let domains = vec!["a.test".to_string(), "muc.a.test".to_string()];
        assert_eq!(check_pair(&cert, &key, &domains), vec![]);
        assert!(covers(&cert, &domains));

        let (_, other_key) = pair(dir.path(), &["b.test"]);
        let found = check_pair(&cert, &other_key, &["b.test".to_string()]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].key == "tls.key" && found[0].message.contains("does not belong"));
        assert!(found[1].key == "tls.cert" && found[1].message.contains("not valid for b.test"));

        let missing = dir.path().join("missing.pem");
        let found = check_pair(&missing, &missing, &domains);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found
            .iter()
            .all(|f| f.fatal && f.message.contains("missing.pem")));
    }
}
