//! Registry mirrors for base-image pulls, set by the operator's admin
//! (`--registry-mirror docker.io=https://mirror.internal`), and the builder
//! configuration that applies them: buildkitd.toml `[registry."host"]
//! mirrors` (docs/buildkitd.toml.md) and containers-registries.conf(5)
//! `[[registry]]` with `[[registry.mirror]]`. The text is the admin's, yet
//! validated: it ends up inside TOML files, so only host names, ports and
//! path components pass (no quote, bracket or white space can).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The longest mirror flag value.
const MAX_MIRROR_LENGTH: usize = 512;

/// One mirror of one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryMirror {
    /// The registry whose pulls it serves, `host[:port]` (`docker.io`).
    pub registry: String,
    /// `host[:port][/path]`, as both builders want it (no scheme).
    pub location: String,
    /// Plain HTTP (`http://`): the mirror's host is marked insecure.
    pub http: bool,
}

/// Why a `--registry-mirror` value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MirrorError {
    #[error("expected REGISTRY=URL, e.g. docker.io=https://mirror.internal")]
    Form,
    #[error("longer than {MAX_MIRROR_LENGTH} characters")]
    TooLong,
    #[error("the registry {0:?} is not a host[:port]")]
    Registry(String),
    #[error("the mirror {0:?} must start with https:// or http://")]
    Scheme(String),
    #[error("the mirror {0:?} is not a host[:port][/path] (no user, query or fragment)")]
    Location(String),
}

impl FromStr for RegistryMirror {
    type Err = MirrorError;

    fn from_str(text: &str) -> Result<Self, MirrorError> {
        if text.len() > MAX_MIRROR_LENGTH {
            return Err(MirrorError::TooLong);
        }
        let (registry, url) = text.split_once('=').ok_or(MirrorError::Form)?;
        if !is_host_port(registry) {
            return Err(MirrorError::Registry(registry.to_string()));
        }
        let (http, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (true, rest)
        } else {
            return Err(MirrorError::Scheme(url.to_string()));
        };
        let rest = rest.trim_end_matches('/');
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path_ok = path.is_empty() || path.split('/').all(is_path_component);
        if !is_host_port(host) || !path_ok {
            return Err(MirrorError::Location(url.to_string()));
        }
        Ok(RegistryMirror {
            registry: registry.to_string(),
            location: rest.to_string(),
            http,
        })
    }
}

impl fmt::Display for RegistryMirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.http { "http" } else { "https" };
        write!(f, "{}={scheme}://{}", self.registry, self.location)
    }
}

impl RegistryMirror {
    /// The mirror's `host[:port]`.
    fn host(&self) -> &str {
        self.location.split('/').next().unwrap_or(&self.location)
    }
}

/// `host` or `host:port`, as the repository grammar spells a registry.
fn is_host_port(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    port_ok && host.len() <= 253 && host.split('.').all(label_ok)
}

fn is_path_component(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// What one registry host's section of a builder configuration says.
#[derive(Default)]
struct HostSettings {
    mirrors: Vec<String>,
    insecure: bool,
}

/// Settings per registry host: the mirrors, and which hosts are plain
/// HTTP or unverified (`insecure`, plus each `http://` mirror).
fn hosts(mirrors: &[RegistryMirror], insecure: &[String]) -> BTreeMap<String, HostSettings> {
    let mut hosts: BTreeMap<String, HostSettings> = BTreeMap::new();
    for mirror in mirrors {
        let settings = hosts.entry(mirror.registry.clone()).or_default();
        if !settings.mirrors.contains(&mirror.location) {
            settings.mirrors.push(mirror.location.clone());
        }
        if mirror.http {
            hosts.entry(mirror.host().to_string()).or_default().insecure = true;
        }
    }
    for host in insecure {
        hosts.entry(host.clone()).or_default().insecure = true;
    }
    hosts
}

/// buildkitd.toml: one `[registry."host"]` table per host (TOML refuses a
/// table twice, so each host's settings are gathered first). `insecure`
/// hosts may be plain HTTP or unverified HTTPS (`http` and `insecure`).
/// Empty when there is nothing to say.
pub fn buildkitd_toml(mirrors: &[RegistryMirror], insecure: &[String]) -> String {
    let mut toml = String::new();
    for (host, settings) in hosts(mirrors, insecure) {
        toml.push_str(&format!("[registry.\"{host}\"]\n"));
        if !settings.mirrors.is_empty() {
            let list: Vec<String> = settings
                .mirrors
                .iter()
                .map(|m| format!("\"{m}\""))
                .collect();
            toml.push_str(&format!("  mirrors = [{}]\n", list.join(", ")));
        }
        if settings.insecure {
            toml.push_str("  http = true\n  insecure = true\n");
        }
    }
    toml
}

/// registries.conf tables: a `[[registry]]` per host, its mirrors as
/// `[[registry.mirror]]` (tried in order, then the registry itself).
pub fn registries_conf_tables(mirrors: &[RegistryMirror], insecure: &[String]) -> String {
    let insecure_mirror = |location: &str| {
        let host = location.split('/').next().unwrap_or(location);
        mirrors.iter().any(|m| m.http && m.host() == host) || insecure.iter().any(|h| h == host)
    };
    let mut conf = String::new();
    for (host, settings) in hosts(mirrors, insecure) {
        conf.push_str(&format!(
            "\n[[registry]]\nprefix = \"{host}\"\nlocation = \"{host}\"\n"
        ));
        if settings.insecure {
            conf.push_str("insecure = true\n");
        }
        for mirror in &settings.mirrors {
            conf.push_str(&format!("\n[[registry.mirror]]\nlocation = \"{mirror}\"\n"));
            if insecure_mirror(mirror) {
                conf.push_str("insecure = true\n");
            }
        }
    }
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(text: &str) -> RegistryMirror {
        text.parse().unwrap()
    }

    #[test]
    fn flags_parse_into_host_and_scheme() {
        assert_eq!(
            mirror("docker.io=https://mirror.internal/"),
            RegistryMirror {
                registry: "docker.io".into(),
                location: "mirror.internal".into(),
                http: false
            }
        );
        let plain = mirror("ghcr.io=http://127.0.0.1:5000/proxy/ghcr");
        assert_eq!(plain.location, "127.0.0.1:5000/proxy/ghcr");
        assert!(plain.http);
        assert_eq!(
            plain.to_string(),
            "ghcr.io=http://127.0.0.1:5000/proxy/ghcr"
        );
    }

    #[test]
    fn anything_that_could_break_out_of_a_toml_string_is_refused() {
        for bad in [
            "docker.io",
            "docker.io=mirror.internal",
            "docker.io=ftp://mirror.internal",
            "docker.io=https://user:pw@mirror.internal",
            "docker.io=https://mirror.internal?x=1",
            "docker.io=https://mirror\".internal",
            "docker.io=https://mirror.internal/a b",
            "docker.io=https://mirror.internal/A",
            "dock\"er.io=https://mirror.internal",
            "docker.io=https://mirror.internal:99999999",
            "=https://mirror.internal",
            "docker.io=https://",
        ] {
            assert!(bad.parse::<RegistryMirror>().is_err(), "{bad}");
        }
        assert_eq!(
            "docker.io=https://user:pw@m".parse::<RegistryMirror>(),
            Err(MirrorError::Location("https://user:pw@m".into()))
        );
    }

    #[test]
    fn buildkit_gets_one_table_per_host() {
        let mirrors = [
            mirror("docker.io=https://mirror.internal"),
            mirror("docker.io=http://10.0.0.1:5000/hub"),
        ];
        let toml = buildkitd_toml(&mirrors, &["10.0.0.1:5000".into()]);
        assert_eq!(
            toml,
            "[registry.\"10.0.0.1:5000\"]\n  http = true\n  insecure = true\n\
             [registry.\"docker.io\"]\n  mirrors = [\"mirror.internal\", \"10.0.0.1:5000/hub\"]\n"
        );
        assert_eq!(buildkitd_toml(&[], &[]), "");
    }

    #[test]
    fn buildah_gets_registry_and_mirror_tables() {
        let conf = registries_conf_tables(&[mirror("docker.io=http://127.0.0.1:5000")], &[]);
        assert_eq!(
            conf,
            "\n[[registry]]\nprefix = \"127.0.0.1:5000\"\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n\
             \n[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\
             \n[[registry.mirror]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n"
        );
    }
}
