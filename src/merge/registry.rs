//! The registry I/O of `merge`, over oci-client, with its errors sorted into
//! the few problems a user can act on.

use futures::TryStreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::index::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::merge::credentials::DockerConfig;

/// What went wrong with one source or target, in words a user can act on.
/// Never holds a credential: oci-client's errors carry URLs and registry
/// messages, not request headers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("unauthorized: registry {registry} refused {}", if *.with_credentials { "the credentials that --registry-config has for it" } else { "anonymous access (no credentials for it in --registry-config)" })]
    Unauthorized {
        registry: String,
        with_credentials: bool,
    },
    #[error("registry {registry} unreachable: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error("wrong platform: the image is {actual}")]
    WrongPlatform { actual: String },
    #[error("the index has no entry for this platform; it has: {available}")]
    NotInIndex { available: String },
    #[error("unsupported manifest: {0}")]
    Unsupported(String),
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("{0}")]
    Other(String),
}

/// A manifest as stored, with the media type its body declares.
#[derive(Clone, Debug)]
pub struct RawManifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// An oci-client with the credentials of a config.json and the plain-HTTP
/// registries.
pub struct Registries {
    client: Client,
    config: DockerConfig,
}

impl Registries {
    pub fn new(config: DockerConfig, insecure_registries: Vec<String>) -> Self {
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure_registries),
            connect_timeout: Some(std::time::Duration::from_secs(15)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            ..Default::default()
        });
        Registries { client, config }
    }

    /// The client, holding the credentials for the registry of
    /// `reference`: every call below goes through it, so no request can go
    /// out before its registry's credentials are known.
    async fn client_for(&self, reference: &Reference) -> Result<&Client, Problem> {
        let registry = reference.resolve_registry();
        let auth = self
            .config
            .registry_auth_for(registry)
            .map_err(|e| Problem::Credentials(e.to_string()))?;
        self.client.store_auth_if_needed(registry, &auth).await;
        Ok(&self.client)
    }

    fn has_credentials(&self, reference: &Reference) -> bool {
        !matches!(
            self.config.registry_auth_for(reference.resolve_registry()),
            Ok(RegistryAuth::Anonymous)
        )
    }

    fn problem(&self, reference: &Reference, error: OciDistributionError) -> Problem {
        classify(
            reference.resolve_registry(),
            self.has_credentials(reference),
            error,
        )
    }

    /// Fetches a manifest or index by tag or digest (the digest is verified).
    pub async fn fetch_manifest(&self, reference: &Reference) -> Result<RawManifest, Problem> {
        let (bytes, digest) = self
            .client_for(reference)
            .await?
            .pull_manifest_raw(
                reference,
                &RegistryAuth::Anonymous,
                super::index::ACCEPTED_MANIFEST_TYPES,
            )
            .await
            .map_err(|e| self.problem(reference, e))?;
        let media_type = declared_media_type(&bytes)?;
        Ok(RawManifest {
            digest,
            media_type,
            bytes: bytes.to_vec(),
        })
    }

    /// Fetches a small blob (an image config) into memory; the digest is verified.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<Vec<u8>, Problem> {
        let mut out = Vec::new();
        self.client_for(reference)
            .await?
            .pull_blob(reference, digest, &mut out)
            .await
            .map_err(|e| self.problem(reference, e))?;
        Ok(out)
    }

    /// True when the target tag is readable or absent: the registry answers
    /// and accepts our credentials. (Push rights show only when pushing.)
    pub async fn probe(&self, reference: &Reference) -> Result<(), Problem> {
        match self
            .client_for(reference)
            .await?
            .fetch_manifest_digest(reference, &RegistryAuth::Anonymous)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.problem(reference, e) {
                Problem::NotFound(_) => Ok(()),
                problem => Err(problem),
            },
        }
    }

    /// Makes blob `digest` present in the target repository: nothing when it
    /// is there, a cross-repository mount on the same registry, else a
    /// streamed copy (when the mount is refused, or across registries).
    pub async fn ensure_blob(
        &self,
        source: &Reference,
        target: &Reference,
        digest: &str,
        size: u64,
    ) -> Result<(), Problem> {
        let to = self.client_for(target).await?;
        let exists = to
            .blob_exists(target, digest)
            .await
            .map_err(|e| self.problem(target, e))?;
        if exists {
            return Ok(());
        }
        if source.resolve_registry() == target.resolve_registry()
            && to.mount_blob(target, source, digest).await.is_ok()
        {
            return Ok(());
        }
        let stream = self
            .client_for(source)
            .await?
            .pull_blob_stream(source, digest)
            .await
            .map_err(|e| self.problem(source, e))?;
        to.push_blob_stream(
            target,
            stream.map_err(OciDistributionError::from),
            digest,
            Some(size),
        )
        .await
        .map_err(|e| self.problem(target, e))?;
        Ok(())
    }

    /// Pushes manifest bytes as they are, under the tag or digest of `target`.
    pub async fn push_manifest(
        &self,
        target: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), Problem> {
        let content_type = media_type
            .parse()
            .map_err(|_| Problem::Unsupported(format!("media type {media_type:?}")))?;
        self.client_for(target)
            .await?
            .push_manifest_raw(target, bytes.to_vec(), content_type)
            .await
            .map_err(|e| self.problem(target, e))?;
        Ok(())
    }
}

/// The media type a manifest body declares; bodies without one (allowed by
/// the OCI spec) are told apart by their fields. Pure, so it is fuzzed.
pub fn declared_media_type(bytes: &[u8]) -> Result<String, Problem> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Versioned {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let versioned: Versioned = serde_json::from_slice(bytes)
        .map_err(|e| Problem::Unsupported(format!("the manifest is not valid JSON ({e})")))?;
    let media_type = match (versioned.media_type, versioned.manifests, versioned.config) {
        (Some(media_type), _, _) => media_type,
        (None, Some(_), _) => OCI_INDEX.to_string(),
        (None, None, Some(_)) => OCI_MANIFEST.to_string(),
        (None, None, None) => {
            return Err(Problem::Unsupported(
                "no mediaType, manifests or config".into(),
            ))
        }
    };
    if [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].contains(&media_type.as_str()) {
        Ok(media_type)
    } else {
        Err(Problem::Unsupported(format!("media type {media_type}")))
    }
}

/// Sorts an oci-client error into a [`Problem`].
fn classify(registry: &str, with_credentials: bool, error: OciDistributionError) -> Problem {
    let unauthorized = || Problem::Unauthorized {
        registry: registry.to_string(),
        with_credentials,
    };
    match error {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes = &envelope.errors;
            if codes.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NameUnknown
                )
            }) {
                let message = codes
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                Problem::NotFound(message)
            } else if codes
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                unauthorized()
            } else {
                Problem::Other(envelope.to_string())
            }
        }
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => unauthorized(),
        OciDistributionError::ServerError {
            code: 404, message, ..
        } => Problem::NotFound(message),
        OciDistributionError::ServerError { code, message, .. } => Problem::Other(format!(
            "registry {registry} answered HTTP {code}: {}",
            message.trim()
        )),
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            Problem::Unreachable {
                registry: registry.to_string(),
                detail: error_chain(&e),
            }
        }
        OciDistributionError::RequestError(e) => {
            Problem::Other(format!("registry {registry}: {}", error_chain(&e)))
        }
        OciDistributionError::DigestError(e) => {
            Problem::Other(format!("content does not match its digest: {e}"))
        }
        other => Problem::Other(other.to_string()),
    }
}

/// An error and its causes, innermost last ("… : Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_media_types_of_bodies_without_one() {
        assert_eq!(
            declared_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            OCI_INDEX
        );
        assert_eq!(
            declared_media_type(br#"{"schemaVersion":2,"config":{},"layers":[]}"#).unwrap(),
            OCI_MANIFEST
        );
        assert_eq!(
            declared_media_type(
                format!(r#"{{"mediaType":"{DOCKER_LIST}","manifests":[]}}"#).as_bytes()
            )
            .unwrap(),
            DOCKER_LIST
        );
        assert!(matches!(
            declared_media_type(
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}"#
            ),
            Err(Problem::Unsupported(_))
        ));
    }

    #[test]
    fn sorts_http_errors() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "http://r/v2/x".into(),
            message: "m".into(),
        };
        assert!(matches!(
            classify("r", true, server(401)),
            Problem::Unauthorized {
                with_credentials: true,
                ..
            }
        ));
        assert!(matches!(
            classify("r", false, server(403)),
            Problem::Unauthorized {
                with_credentials: false,
                ..
            }
        ));
        assert!(matches!(
            classify("r", false, server(404)),
            Problem::NotFound(_)
        ));
        assert!(matches!(
            classify("r", false, server(500)),
            Problem::Other(_)
        ));
        let unauthorized = classify(
            "r:5000",
            false,
            OciDistributionError::UnauthorizedError { url: "u".into() },
        );
        assert!(
            unauthorized
                .to_string()
                .contains("registry r:5000 refused anonymous access"),
            "{unauthorized}"
        );
    }
}
