//! Who the CQL backend logs in as and how its connections are encrypted:
//! [`CqlSecurity`] (a user name and [`Password`] for the cluster's
//! `PasswordAuthenticator`; TLS verified against a CA file or the system's
//! roots, optionally for one server name), the rustls client configuration
//! built from it (ring, the workspace's crypto provider), and
//! [`redact_uri`] for anything that may print a storage URI.
//!
//! This module must never reveal a password (its `Debug` and `Display`
//! print `***`, and [`scrub`] removes it from driver messages), and never
//! accept a server certificate that does not chain to the configured
//! roots: there is no "accept any certificate" mode.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::StorageError;

/// A password: compared and cloned like a string, printed as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password itself, for the driver's login only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A login for the cluster's `PasswordAuthenticator` (SASL PLAIN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlCredentials {
    /// The role to log in as (not a secret: it appears in errors and logs).
    pub username: String,
    pub password: Password,
}

/// TLS to every node: the server's certificate must chain to `ca_file`
/// (or, without one, to the system's roots) and name the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CqlTls {
    /// PEM file of the CA certificate(s) to trust; `None` = the system's.
    pub ca_file: Option<PathBuf>,
    /// The name (DNS name or IP address) every node's certificate must
    /// carry; `None` = each node's own IP address (the driver connects to
    /// nodes by address, so their certificates then need IP SANs).
    pub server_name: Option<String>,
}

/// Login and encryption of the CQL backend; the default is neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CqlSecurity {
    pub credentials: Option<CqlCredentials>,
    pub tls: Option<CqlTls>,
}

/// `scheme://user:password@rest` → `scheme://***@rest`, for a storage
/// setting that may carry credentials (even a malformed one: everything up
/// to the last `@` is hidden). Text without `://` and `@` is returned as is.
pub fn redact_uri(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, after)) => format!("{scheme}://***@{after}"),
            None => uri.to_owned(),
        },
        None if uri.contains('@') => "***".to_owned(),
        None => uri.to_owned(),
    }
}

/// `text` with every occurrence of the password replaced by `***` (a
/// server or driver message should never quote it; this makes sure).
pub(crate) fn scrub(text: String, password: Option<&Password>) -> String {
    match password {
        Some(p) if !p.0.is_empty() && text.contains(&p.0) => text.replace(&p.0, "***"),
        _ => text,
    }
}

fn tls_setup(reason: String) -> StorageError {
    StorageError::Refused(format!("CQL TLS could not be set up: {reason}"))
}

/// The rustls client configuration for `tls`: the trusted roots, and the
/// server name checked in place of each node's address when one is set.
pub(crate) fn client_config(tls: &CqlTls) -> Result<Arc<ClientConfig>, StorageError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_setup(format!("cannot read the CA file {shown}: {e}")))?;
            if certs.is_empty() {
                return Err(tls_setup(format!(
                    "the CA file {shown} holds no PEM certificate"
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| tls_setup(format!("a certificate in {shown} is unusable: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(tls_setup(
                    "no CA file is set and the system has no CA certificates \
                     (set PARKME_CQL_CA_FILE or ca= in the URI)"
                        .into(),
                ));
            }
        }
    }
    let roots = Arc::new(roots);
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_setup(e.to_string()))?;
    let config = match &tls.server_name {
        None => builder.with_root_certificates(roots).with_no_client_auth(),
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|_| tls_setup(format!("{name:?} is not a DNS name or IP address")))?;
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| tls_setup(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NamedServer { inner, name }))
                .with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// The standard WebPKI verification (chain to the roots, validity,
/// signatures), for one configured name instead of the node's address.
#[derive(Debug)]
struct NamedServer {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _node_address: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_prints_as_stars() {
        let p = Password::new("hunter2-very-secret");
        assert_eq!(format!("{p:?}"), "***");
        assert_eq!(format!("{p}"), "***");
        let c = CqlCredentials {
            username: "parkme".into(),
            password: p.clone(),
        };
        let shown = format!(
            "{c:?} {:?}",
            CqlSecurity {
                credentials: Some(c.clone()),
                tls: None,
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("parkme"), "{shown}");
        assert_eq!(p.expose(), "hunter2-very-secret");
    }

    #[test]
    fn redaction_hides_everything_before_the_last_at() {
        assert_eq!(
            redact_uri("scylla://u:p@ss@h1:9042,h2/ks?tls=true"),
            "scylla://***@h1:9042,h2/ks?tls=true"
        );
        assert_eq!(redact_uri("scylla://h/ks"), "scylla://h/ks");
        assert_eq!(redact_uri("scyla://u:pw@h/ks"), "scyla://***@h/ks");
        assert_eq!(redact_uri("u:pw@h"), "***");
        assert_eq!(redact_uri("embedded"), "embedded");
    }

    #[test]
    fn scrub_removes_the_password_from_a_message() {
        let p = Password::new("s3cret");
        assert_eq!(
            scrub("bad login s3cret for u".into(), Some(&p)),
            "bad login *** for u"
        );
        assert_eq!(scrub("nothing".into(), Some(&Password::new(""))), "nothing");
    }

    #[test]
    fn an_unreadable_or_empty_ca_file_is_a_tls_error() {
        let missing = CqlTls {
            ca_file: Some("/nonexistent/parkme-ca.pem".into()),
            server_name: None,
        };
        let e = client_config(&missing).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("TLS") && e.contains("CA file")),
            "{e:?}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = client_config(&CqlTls {
            ca_file: Some(empty),
            server_name: None,
        })
        .err()
        .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("no PEM certificate")),
            "{e:?}"
        );
    }
}
