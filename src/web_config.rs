//! `--web.config.file`: the web configuration format shared by Prometheus
//! exporters (exporter-toolkit): TLS certificate and key, an optional client
//! CA, and `basic_auth_users` with bcrypt hashes.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative paths are relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12
//! basic_auth_users:
//!   prometheus: $2y$10$...         # htpasswd -nBC 10 "" | tr -d ':\n'
//! ```

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<serde_norway::Value>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
    // Accepted for compatibility; rustls chooses ciphers and curves itself.
    cipher_suites: Option<serde_norway::Value>,
    curve_preferences: Option<serde_norway::Value>,
    prefer_server_cipher_suites: Option<bool>,
}

/// A web configuration error, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct WebConfigError {
    path: PathBuf,
    problem: String,
}

/// The checked web configuration.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// TLS for the web server, when configured.
    pub tls: Option<Arc<ServerConfig>>,
    /// Basic authentication, when configured.
    pub basic_auth: Option<Arc<BasicAuth>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("basic_auth", &self.basic_auth.is_some())
            .finish()
    }
}

impl WebConfig {
    /// Reads and checks a web configuration file.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let fail = |problem: String| WebConfigError {
            path: path.to_owned(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let file: WebConfigFile = if text.trim().is_empty() {
            WebConfigFile::default()
        } else {
            serde_norway::from_str(&text).map_err(|e| fail(e.to_string()))?
        };
        if file.http_server_config.is_some() {
            tracing::warn!("--web.config.file: http_server_config is not supported and is ignored");
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = file
            .tls_server_config
            .map(|t| tls_config(t, base).map(Arc::new))
            .transpose()
            .map_err(fail)?;
        let basic_auth = file
            .basic_auth_users
            .filter(|users| !users.is_empty())
            .map(|users| BasicAuth::new(users).map(Arc::new))
            .transpose()
            .map_err(fail)?;
        Ok(Self { tls, basic_auth })
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

fn tls_version(v: &str) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match v {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(format!("{v} is not supported; use TLS12 or TLS13")),
        other => Err(format!("unknown TLS version {other:?}")),
    }
}

fn tls_config(t: TlsFile, base: &Path) -> Result<ServerConfig, String> {
    let _ = (
        &t.cipher_suites,
        &t.curve_preferences,
        &t.prefer_server_cipher_suites,
    );
    let cert_file = resolve(
        base,
        t.cert_file
            .as_deref()
            .ok_or("tls_server_config needs cert_file")?,
    );
    let key_file = resolve(
        base,
        t.key_file
            .as_deref()
            .ok_or("tls_server_config needs key_file")?,
    );
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("cert_file {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "cert_file {} holds no certificate",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_file)
        .map_err(|e| format!("key_file {}: {e}", key_file.display()))?;

    let min = tls_version(t.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = tls_version(t.max_version.as_deref().unwrap_or("TLS13"))?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| {
                let n = u16::from(v.version);
                n >= u16::from(min.version) && n <= u16::from(max.version)
            })
            .collect();
    if versions.is_empty() {
        return Err("min_version is above max_version".into());
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?;
    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let verifier_roots = || -> Result<Arc<rustls::RootCertStore>, String> {
        let ca_file = resolve(
            base,
            t.client_ca_file
                .as_deref()
                .ok_or_else(|| format!("client_auth_type {auth_type} needs client_ca_file"))?,
        );
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&ca_file)
            .map_err(|e| format!("client_ca_file {}: {e}", ca_file.display()))?
        {
            let cert = cert.map_err(|e| format!("client_ca_file {}: {e}", ca_file.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("client_ca_file {}: {e}", ca_file.display()))?;
        }
        Ok(Arc::new(roots))
    };
    let builder = match auth_type {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                verifier_roots()?,
                provider,
            );
            if auth_type == "VerifyClientCertIfGiven" {
                verifier = verifier.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(format!(
                "client_auth_type {auth_type} (client certificates without verification) is not supported; use RequireAndVerifyClientCert or VerifyClientCertIfGiven"
            ));
        }
        other => return Err(format!("unknown client_auth_type {other:?}")),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert_file and key_file: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Users and bcrypt hashes. Verified passwords are remembered (as keyed hashes,
/// not as text) so a scrape does not pay for bcrypt each time.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A hash to check against for unknown users, so that timing does not tell
    /// which users exist.
    decoy: String,
    hasher: std::collections::hash_map::RandomState,
    verified: Mutex<HashMap<u64, String>>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Result<Self, String> {
        for (user, hash) in &users {
            if !hash.starts_with("$2") {
                return Err(format!("basic_auth_users.{user} is not a bcrypt hash"));
            }
        }
        let decoy = bcrypt::hash("decoy", 10).map_err(|e| e.to_string())?;
        Ok(Self {
            users,
            decoy,
            hasher: Default::default(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    fn key(&self, user: &str, password: &str) -> u64 {
        self.hasher.hash_one((user, password))
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&str>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let hash = self.users.get(&user);
        let key = self.key(&user, &password);
        if let Some(hash) = hash {
            let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if verified.get(&key) == Some(hash) {
                return true;
            }
        }
        let ok = bcrypt::verify(&password, hash.unwrap_or(&self.decoy)).unwrap_or(false)
            && hash.is_some();
        if ok && let Some(hash) = hash {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, hash.clone());
        }
        ok
    }
}

fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn basic_auth_checks_user_and_password() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let auth = BasicAuth::new(BTreeMap::from([("prom".to_string(), hash)])).expect("valid");
        assert!(auth.check(Some(&basic("prom", "s3cret"))));
        assert!(auth.check(Some(&basic("prom", "s3cret")))); // from the cache
        assert!(!auth.check(Some(&basic("prom", "wrong"))));
        assert!(!auth.check(Some(&basic("other", "s3cret"))));
        assert!(!auth.check(Some("Bearer x")));
        assert!(!auth.check(Some("Basic !!!")));
        assert!(!auth.check(None));
        assert!(!format!("{auth:?}").contains("$2"));
    }

    #[test]
    fn bad_files_are_rejected_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("respan-webcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let cases = [
            ("tls_server_config: {key_file: k}", "needs cert_file"),
            ("basic_auth_users: {u: plain}", "not a bcrypt hash"),
            ("tls_servr_config: {}", "unknown field"),
            (
                "tls_server_config: {cert_file: nope.crt, key_file: nope.key}",
                "nope.crt",
            ),
        ];
        for (i, (text, expected)) in cases.iter().enumerate() {
            let path = dir.join(format!("web{i}.yml"));
            std::fs::write(&path, text).expect("write");
            let err = WebConfig::load(&path).expect_err(text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.starts_with(&dir.display().to_string()), "{err}");
        }
        let path = dir.join("empty.yml");
        std::fs::write(&path, "").expect("write");
        let empty = WebConfig::load(&path).expect("empty is fine");
        assert!(empty.tls.is_none() && empty.basic_auth.is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}
