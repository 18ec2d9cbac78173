//! Registry credentials from a docker `config.json`, as mounted from a
//! `kubernetes.io/dockerconfigjson` Secret.
//!
//! Only the `auths` section is read (`credsStore`/`credHelpers` need helper
//! binaries that a Job's container does not have). An entry is keyed by
//! `host`, `host:port` or a URL (`https://index.docker.io/v1/`); keys are
//! matched on the host and port, case-insensitively, and the Docker Hub
//! spellings (`docker.io`, `index.docker.io`, `registry-1.docker.io`, the v1
//! URL) are one registry. A registry without an entry is accessed
//! anonymously.
//!
//! Secrets never leave this module in readable form: `Debug` redacts them,
//! errors never quote the file's content, and [`DockerConfig::secrets`] lets
//! callers scrub any text before printing it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use oci_client::secrets::RegistryAuth;

/// The canonical name of Docker Hub, whatever spelling a key or image uses.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_ALIASES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// Why a config.json could not be used. Messages never contain the file's
/// content (serde's messages can quote values, so only positions are kept).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed config.json: not valid JSON of the docker config form (line {line}, column {column})")]
    Json { line: usize, column: usize },
    #[error("malformed config.json: the `auth` field of the entry for {key:?} is not base64 of user:password")]
    BadAuthField { key: String },
}

/// A credential for one registry. Never printed: `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`, written by `docker login`
    /// against registries such as ACR).
    IdentityToken {
        token: String,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken { .. } => f
                .debug_struct("IdentityToken")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// The credentials of a config.json, by normalised registry host.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    by_host: BTreeMap<String, Credential>,
    /// Every secret string as it appears anywhere (decoded or base64), for scrubbing.
    secrets: Vec<String>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("by_host", &self.by_host)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawEntry>,
}

#[derive(serde::Deserialize, Default)]
struct RawEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl DockerConfig {
    /// Reads and parses a config.json file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses the text of a config.json.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            line: e.line(),
            column: e.column(),
        })?;
        let mut config = DockerConfig::default();
        // `auths` is sorted by key, so when two keys name the same registry
        // (`docker.io` and `https://index.docker.io/v1/`) the choice is stable:
        // the first key, in byte order, that holds a credential.
        for (key, entry) in raw.auths {
            config.secrets.extend(
                [&entry.auth, &entry.password, &entry.identitytoken]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .cloned(),
            );
            let Some(credential) = credential_of(&key, entry)? else {
                continue;
            };
            if let Credential::Basic { password, .. } = &credential {
                config.secrets.push(password.clone());
            }
            config
                .by_host
                .entry(normalise_registry(&key))
                .or_insert(credential);
        }
        config.secrets.retain(|s| !s.is_empty());
        config.secrets.sort();
        config.secrets.dedup();
        Ok(config)
    }

    /// The credential for a registry host (`host` or `host:port`, any Docker
    /// Hub spelling), if the config has one.
    pub fn credential_for(&self, registry: &str) -> Option<&Credential> {
        self.by_host.get(&normalise_registry(registry))
    }

    /// What to hand oci-client for a registry: Basic credentials when the
    /// config has some, anonymous otherwise.
    pub fn registry_auth_for(&self, registry: &str) -> Result<RegistryAuth, UnsupportedCredential> {
        match self.credential_for(registry) {
            None => Ok(RegistryAuth::Anonymous),
            Some(Credential::Basic { username, password }) => {
                Ok(RegistryAuth::Basic(username.clone(), password.clone()))
            }
            // oci-client sends Basic credentials to the token endpoint and
            // cannot exchange a refresh token (grant_type=refresh_token), so
            // say so rather than fail later with a confusing 401.
            Some(Credential::IdentityToken { .. }) => Err(UnsupportedCredential {
                registry: registry.to_string(),
            }),
        }
    }

    /// Every secret the config holds (passwords, tokens, raw `auth` fields),
    /// so that text from elsewhere can be scrubbed before it is shown.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// Replaces every secret of this config found in `text` by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        text
    }
}

/// A config entry this program cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the config.json entry for {registry} holds an identitytoken (OAuth2 refresh token), which is not supported; use username and password (or a registry access token as the password)")]
pub struct UnsupportedCredential {
    pub registry: String,
}

fn credential_of(key: &str, entry: RawEntry) -> Result<Option<Credential>, ConfigError> {
    // docker's own order: `auth` wins over `username`/`password`.
    if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
        let bad = || ConfigError::BadAuthField {
            key: key.to_string(),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth.trim()))
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credential::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken { token }));
    }
    match (entry.username, entry.password) {
        (Some(username), Some(password)) if !username.is_empty() => {
            Ok(Some(Credential::Basic { username, password }))
        }
        _ => Ok(None),
    }
}

/// The host (and port) a config key or image registry names, lowercased,
/// with Docker Hub's spellings folded into `docker.io`.
pub fn normalise_registry(key: &str) -> String {
    let key = key.trim();
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        DOCKER_HUB.to_string()
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn matches_host_port_and_url_keys() {
        let text = format!(
            r#"{{"auths": {{
                "registry.example.com": {{"auth": "{}"}},
                "127.0.0.1:5000": {{"username": "bob", "password": "pw2"}},
                "https://quay.io/v2/": {{"auth": "{}"}}
            }}}}"#,
            b64("alice:pw1"),
            b64("carol:pw:with:colons")
        );
        let config = DockerConfig::parse(&text).unwrap();
        assert_eq!(
            config.registry_auth_for("registry.example.com").unwrap(),
            RegistryAuth::Basic("alice".into(), "pw1".into())
        );
        assert_eq!(
            config.registry_auth_for("REGISTRY.example.com").unwrap(),
            RegistryAuth::Basic("alice".into(), "pw1".into())
        );
        assert_eq!(
            config.registry_auth_for("127.0.0.1:5000").unwrap(),
            RegistryAuth::Basic("bob".into(), "pw2".into())
        );
        assert_eq!(
            config.registry_auth_for("quay.io").unwrap(),
            RegistryAuth::Basic("carol".into(), "pw:with:colons".into())
        );
        // The port is part of the registry's identity.
        assert_eq!(
            config.registry_auth_for("127.0.0.1:5001").unwrap(),
            RegistryAuth::Anonymous
        );
        assert_eq!(
            config.registry_auth_for("127.0.0.1").unwrap(),
            RegistryAuth::Anonymous
        );
        assert_eq!(
            config.registry_auth_for("ghcr.io").unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn docker_hub_aliases_are_one_registry() {
        let text = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
            b64("hubuser:hubpw")
        );
        let config = DockerConfig::parse(&text).unwrap();
        for alias in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
        ] {
            assert_eq!(
                config.registry_auth_for(alias).unwrap(),
                RegistryAuth::Basic("hubuser".into(), "hubpw".into()),
                "{alias}"
            );
        }
        let text = format!(
            r#"{{"auths": {{"docker.io": {{"auth": "{}"}}}}}}"#,
            b64("u:p")
        );
        let config = DockerConfig::parse(&text).unwrap();
        assert!(config.credential_for("index.docker.io").is_some());
    }

    #[test]
    fn accepts_base64_without_padding_and_prefers_auth_over_username() {
        let unpadded = b64("dave:pw3").trim_end_matches('=').to_string();
        assert_ne!(
            unpadded,
            b64("dave:pw3"),
            "the test needs a padded encoding"
        );
        let text = format!(
            r#"{{"auths": {{"r.example": {{"auth": "{unpadded}", "username": "other", "password": "x"}}}}}}"#
        );
        let config = DockerConfig::parse(&text).unwrap();
        assert_eq!(
            config.registry_auth_for("r.example").unwrap(),
            RegistryAuth::Basic("dave".into(), "pw3".into())
        );
    }

    #[test]
    fn entries_without_credentials_are_anonymous() {
        let config =
            DockerConfig::parse(r#"{"auths": {"r.example": {}}, "credsStore": "desktop"}"#)
                .unwrap();
        assert_eq!(
            config.registry_auth_for("r.example").unwrap(),
            RegistryAuth::Anonymous
        );
        let config = DockerConfig::parse("{}").unwrap();
        assert_eq!(
            config.registry_auth_for("r.example").unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn identity_tokens_are_refused_clearly() {
        let config =
            DockerConfig::parse(r#"{"auths": {"acr.example": {"identitytoken": "tok-SECRET"}}}"#)
                .unwrap();
        let err = config
            .registry_auth_for("acr.example")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("acr.example") && err.contains("identitytoken"),
            "{err}"
        );
        assert!(!err.contains("tok-SECRET"), "{err}");
        assert!(!format!("{config:?}").contains("tok-SECRET"));
    }

    #[test]
    fn malformed_files_are_refused_without_quoting_them() {
        let err = DockerConfig::parse(r#"{"auths": {"r": {"auth": 12345678}}}"#).unwrap_err();
        assert!(matches!(err, ConfigError::Json { .. }));
        assert!(!err.to_string().contains("12345678"), "{err}");
        let err =
            DockerConfig::parse(r#"{"auths": {"r.example": {"auth": "%%%not-base64-secret"}}}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("r.example") && err.contains("base64"), "{err}");
        assert!(!err.contains("not-base64-secret"), "{err}");
        let err = DockerConfig::parse(&format!(
            r#"{{"auths": {{"r": {{"auth": "{}"}}}}}}"#,
            b64("nocolon")
        ))
        .unwrap_err();
        assert!(matches!(err, ConfigError::BadAuthField { .. }));
        assert!(matches!(
            DockerConfig::parse("not json"),
            Err(ConfigError::Json { .. })
        ));
    }

    #[test]
    fn debug_and_redact_hide_every_secret() {
        let raw_auth = b64("erin:hunter2-secret");
        let text = format!(
            r#"{{"auths": {{"a.example": {{"auth": "{raw_auth}"}}, "b.example": {{"username": "frank", "password": "pw-b-secret"}}}}}}"#
        );
        let config = DockerConfig::parse(&text).unwrap();
        let debug = format!(
            "{config:?} {:?}",
            config.credential_for("a.example").unwrap()
        );
        for secret in ["hunter2-secret", "pw-b-secret", raw_auth.as_str()] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(
            debug.contains("erin") && debug.contains("<redacted>"),
            "{debug}"
        );
        let scrubbed = config.redact(&format!(
            "oops hunter2-secret and pw-b-secret and {raw_auth}"
        ));
        assert_eq!(scrubbed, "oops <redacted> and <redacted> and <redacted>");
        // oci-client's own Debug of the credential is redacted too.
        let auth = config.registry_auth_for("b.example").unwrap();
        assert!(!format!("{auth:?}").contains("pw-b-secret"));
    }

    #[test]
    fn normalises_keys() {
        assert_eq!(
            normalise_registry("https://Registry.Example.com:5000/v2/"),
            "registry.example.com:5000"
        );
        assert_eq!(
            normalise_registry("http://127.0.0.1:5000"),
            "127.0.0.1:5000"
        );
        assert_eq!(normalise_registry("registry-1.docker.io"), "docker.io");
    }
}
