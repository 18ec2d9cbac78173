//! The registry I/O of `merge`, over oci-client, with its errors sorted into
//! the few problems a user can act on.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::TryStreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};

use super::index::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use super::limits::{
    read_at_most, realm_refusal, size_words, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES,
};
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

/// oci-clients with the credentials of a config.json. An insecure registry
/// (`--insecure-registry`) is spoken to as the builders do (containers/image
/// `docker_client.go` detectProperties, BuildKit's `insecure` + `http`
/// hosts): HTTPS without verifying the certificate, and plain HTTP when it
/// does not answer HTTPS. Every other registry gets verified HTTPS only.
pub struct Registries {
    /// Verified HTTPS, and plain HTTP for the insecure registries.
    client: Client,
    /// HTTPS without certificate checks, for insecure registries only.
    unverified: Client,
    /// Plain HTTP requests of our own (manifests, read with a cap; the
    /// token realm check), verified and unverified as the two above.
    http: reqwest::Client,
    http_unverified: reqwest::Client,
    insecure: Vec<String>,
    /// Insecure registries found to answer HTTPS (true) or not (false).
    answers_https: Mutex<HashMap<String, bool>>,
    /// Registries whose token realm was checked, and the refusal if any.
    realms: Mutex<HashMap<String, Option<Problem>>>,
    config: DockerConfig,
}

impl Registries {
    pub fn new(config: DockerConfig, insecure_registries: Vec<String>) -> Self {
        let settings = |protocol, accept_invalid_certificates| ClientConfig {
            protocol,
            accept_invalid_certificates,
            connect_timeout: Some(std::time::Duration::from_secs(15)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            ..Default::default()
        };
        let client = Client::new(settings(
            ClientProtocol::HttpsExcept(insecure_registries.clone()),
            false,
        ));
        let unverified = Client::new(settings(ClientProtocol::Https, true));
        let http = |accept_invalid_certificates| {
            reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(15))
                .read_timeout(std::time::Duration::from_secs(120))
                .tls_danger_accept_invalid_certs(accept_invalid_certificates)
                // A redirect to another host would take the credentials along.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client")
        };
        Registries {
            client,
            unverified,
            http: http(false),
            http_unverified: http(true),
            insecure: insecure_registries,
            answers_https: Mutex::new(HashMap::new()),
            realms: Mutex::new(HashMap::new()),
            config,
        }
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.insecure.iter().any(|r| r == registry)
    }

    /// The scheme and HTTP client `client_for` chose for a registry.
    fn route(&self, registry: &str) -> (&'static str, &reqwest::Client) {
        let answers_https = self
            .answers_https
            .lock()
            .expect("not poisoned")
            .get(registry)
            .copied();
        match answers_https {
            Some(true) => ("https", &self.http_unverified),
            Some(false) => ("http", &self.http),
            None => ("https", &self.http),
        }
    }

    /// The client for the registry of `reference`, holding its
    /// credentials: every call below goes through it, so no request can go
    /// out before its registry's credentials are known.
    async fn client_for(&self, reference: &Reference) -> Result<&Client, Problem> {
        let registry = reference.resolve_registry();
        let auth = self
            .config
            .registry_auth_for(registry)
            .map_err(|e| Problem::Credentials(e.to_string()))?;
        let insecure = self.is_insecure(registry);
        let client = if insecure && self.https(reference, &auth).await {
            &self.unverified
        } else {
            &self.client
        };
        if !matches!(auth, RegistryAuth::Anonymous) && !insecure {
            self.check_realm(registry).await?;
        }
        client.store_auth_if_needed(registry, &auth).await;
        Ok(client)
    }

    /// Refuses a registry whose token realm is not HTTPS before any request
    /// could carry its credentials there; asked once per registry.
    async fn check_realm(&self, registry: &str) -> Result<(), Problem> {
        if let Some(known) = self.realms.lock().expect("not poisoned").get(registry) {
            return known.clone().map_or(Ok(()), Err);
        }
        // An unreachable registry is reported by the call that follows.
        let challenge = match self
            .http
            .get(format!("https://{registry}/v2/"))
            .send()
            .await
        {
            Ok(answer) => answer
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            Err(_) => return Ok(()),
        };
        let refusal = challenge.and_then(|c| realm_refusal(registry, &c, false));
        self.realms
            .lock()
            .expect("not poisoned")
            .insert(registry.to_string(), refusal.clone());
        refusal.map_or(Ok(()), Err)
    }

    /// Whether an insecure registry answers HTTPS (any HTTP answer counts;
    /// only a failure to connect or to talk TLS means plain HTTP), asked
    /// once per registry.
    async fn https(&self, reference: &Reference, auth: &RegistryAuth) -> bool {
        let registry = reference.resolve_registry().to_string();
        if let Some(known) = self
            .answers_https
            .lock()
            .expect("not poisoned")
            .get(&registry)
        {
            return *known;
        }
        self.unverified.store_auth_if_needed(&registry, auth).await;
        let answer = self
            .unverified
            .fetch_manifest_digest(reference, &RegistryAuth::Anonymous)
            .await;
        let https = !matches!(answer, Err(OciDistributionError::RequestError(_)));
        self.answers_https
            .lock()
            .expect("not poisoned")
            .insert(registry, https);
        https
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

    /// Fetches a manifest or index by tag or digest, read with a cap of
    /// [`MAX_MANIFEST_BYTES`] as it streams; the digest is verified.
    /// oci-client reads a manifest whole before anything can look at its
    /// size, so this request is our own, with oci-client's token.
    pub async fn fetch_manifest(&self, reference: &Reference) -> Result<RawManifest, Problem> {
        let client = self.client_for(reference).await?;
        let registry = reference.resolve_registry();
        let auth = self
            .config
            .registry_auth_for(registry)
            .map_err(|e| Problem::Credentials(e.to_string()))?;
        let token = client
            .auth(reference, &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| self.problem(reference, e))?;
        let (scheme, http) = self.route(registry);
        let wanted = reference.digest().or(reference.tag()).unwrap_or("latest");
        let url = format!(
            "{scheme}://{registry}/v2/{}/manifests/{wanted}",
            reference.repository()
        );
        let mut request = http.get(&url).header(
            reqwest::header::ACCEPT,
            super::index::ACCEPTED_MANIFEST_TYPES.join(", "),
        );
        request = match (token, &auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            (None, _) => request,
        };
        let answer = request
            .send()
            .await
            .map_err(|e| self.problem(reference, OciDistributionError::RequestError(e)))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(self.problem(
                reference,
                OciDistributionError::ServerError {
                    code: status.as_u16(),
                    url,
                    message: format!("manifest {wanted} of {}", reference.repository()),
                },
            ));
        }
        let declared = answer.content_length();
        let what = format!("the manifest {wanted} of {}", reference.repository());
        let bytes =
            read_at_most(answer.bytes_stream(), declared, MAX_MANIFEST_BYTES, &what).await?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if reference.digest().is_some_and(|d| d != digest) {
            return Err(Problem::Other(format!(
                "content does not match its digest: {what} hashes to {digest}"
            )));
        }
        let media_type = declared_media_type(&bytes)?;
        Ok(RawManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Fetches an image config of `size` bytes (its descriptor's word, at
    /// most [`MAX_CONFIG_BYTES`]) into memory, reading no more than that;
    /// the digest is verified.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &str,
        size: u64,
    ) -> Result<Vec<u8>, Problem> {
        if size > MAX_CONFIG_BYTES {
            return Err(Problem::Unsupported(format!(
                "the image config {digest} declares {size} bytes, more than {} (the merge reads no more)",
                size_words(MAX_CONFIG_BYTES)
            )));
        }
        let stream = self
            .client_for(reference)
            .await?
            .pull_blob_stream(reference, digest)
            .await
            .map_err(|e| self.problem(reference, e))?;
        // The verifying stream fails at its end when the digest differs.
        let what = format!("the image config {digest}");
        read_at_most(stream, None, size, &what).await
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

    /// The client for `target`'s registry when its repository lacks blob
    /// `digest`; None when it has it.
    async fn client_lacking(
        &self,
        target: &Reference,
        digest: &str,
    ) -> Result<Option<&Client>, Problem> {
        let to = self.client_for(target).await?;
        let exists = to
            .blob_exists(target, digest)
            .await
            .map_err(|e| self.problem(target, e))?;
        Ok((!exists).then_some(to))
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
        let Some(to) = self.client_lacking(target, digest).await? else {
            return Ok(());
        };
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

    /// Makes blob `digest` present in `target`, streamed from `file` (which
    /// the caller verified hashes to it): nothing when the registry has it.
    pub async fn push_file_blob(
        &self,
        target: &Reference,
        digest: &str,
        size: u64,
        file: std::fs::File,
    ) -> Result<(), Problem> {
        use tokio::io::AsyncReadExt as _;
        const CHUNK: usize = 1024 * 1024;
        let Some(to) = self.client_lacking(target, digest).await? else {
            return Ok(());
        };
        let file = tokio::fs::File::from_std(file).take(size);
        let stream = futures::stream::try_unfold(file, |mut file| async move {
            let mut chunk = vec![0u8; CHUNK];
            let read = file.read(&mut chunk).await?;
            if read == 0 {
                return Ok(None);
            }
            chunk.truncate(read);
            Ok(Some((bytes::Bytes::from(chunk), file)))
        })
        .map_err(OciDistributionError::IoError);
        to.push_blob_stream(target, stream, digest, Some(size))
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
        // oci-client's HEAD of a blob answers a refusal as a status error.
        OciDistributionError::RequestError(e)
            if e.status()
                .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403) =>
        {
            unauthorized()
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
