//! Platforms as `os/arch[/variant]`, normalised the way container tooling
//! does, and mapped to the well-known node labels.
//!
//! There is no standard node label for an Arm variant: `linux/arm/v7` and
//! `linux/arm/v6` both pin to `kubernetes.io/arch=arm`. The variant reaches
//! the builder (`--platform linux/arm/v7`) and the image config, and `merge`
//! checks it, but the scheduler cannot tell a v6 from a v7 node: add a
//! `spec.nodeSelector` label of your own when your cluster mixes them.

use std::fmt;
use std::str::FromStr;

/// Operating systems the operator can schedule onto (`kubernetes.io/os`).
pub const KNOWN_OS: &[&str] = &["linux", "windows"];

/// Architectures as Go and Kubernetes spell them (`kubernetes.io/arch`).
pub const KNOWN_ARCH: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64le", "loong64",
];

/// A normalised platform: `os/arch[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// Why a platform string was refused; the message quotes the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error("{0:?} is not of the form os/arch[/variant] (for example linux/arm64)")]
    Malformed(String),
    #[error("{input:?} has an unknown operating system {os:?} (known: {known})", known = KNOWN_OS.join(", "))]
    UnknownOs { input: String, os: String },
    #[error("{input:?} is not a known architecture {arch:?} (known: {known})", known = KNOWN_ARCH.join(", "))]
    UnknownArch { input: String, arch: String },
    #[error("{input:?} has variant {variant:?}, which {arch} does not have (known: {known})")]
    UnknownVariant {
        input: String,
        arch: String,
        variant: String,
        known: String,
    },
}

impl Platform {
    /// Parses and normalises `os/arch[/variant]`: `x86_64` is `amd64`,
    /// `aarch64` and `arm64/v8` are `arm64`, `armhf` is `arm/v7`, `armel` is
    /// `arm/v6`; a bare `linux/arm` means `arm/v7`, as the OCI image spec
    /// advises for 32-bit Arm.
    pub fn parse(input: &str) -> Result<Self, PlatformError> {
        let malformed = || PlatformError::Malformed(input.to_string());
        let parts: Vec<&str> = input.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(malformed());
        }
        let os = parts[0].to_ascii_lowercase();
        if !KNOWN_OS.contains(&os.as_str()) {
            return Err(PlatformError::UnknownOs {
                input: input.to_string(),
                os,
            });
        }
        let raw_arch = parts[1].to_ascii_lowercase();
        let mut variant = parts.get(2).map(|v| v.to_ascii_lowercase());
        let architecture = match raw_arch.as_str() {
            "x86_64" | "x86-64" => "amd64".to_string(),
            "aarch64" => "arm64".to_string(),
            "i386" | "i686" => "386".to_string(),
            "armhf" => {
                variant.get_or_insert_with(|| "v7".to_string());
                "arm".to_string()
            }
            "armel" => {
                variant.get_or_insert_with(|| "v6".to_string());
                "arm".to_string()
            }
            other => other.to_string(),
        };
        if !KNOWN_ARCH.contains(&architecture.as_str()) {
            return Err(PlatformError::UnknownArch {
                input: input.to_string(),
                arch: parts[1].to_string(),
            });
        }
        let variant = normalise_variant(input, &architecture, variant)?;
        Ok(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// Value of the `kubernetes.io/os` node label.
    pub fn node_os(&self) -> &str {
        &self.os
    }

    /// Value of the `kubernetes.io/arch` node label (variants have none).
    pub fn node_arch(&self) -> &str {
        &self.architecture
    }

    /// A DNS-label-safe form, for Job names and label values: `linux-arm-v7`.
    pub fn slug(&self) -> String {
        self.to_string().replace('/', "-")
    }

    /// True when an image config's `os`, `architecture` and `variant` are
    /// this platform, after normalising both sides.
    pub fn matches_config(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let mut spelled = format!("{os}/{architecture}");
        if let Some(v) = variant.filter(|v| !v.is_empty()) {
            spelled.push('/');
            spelled.push_str(v);
        }
        Platform::parse(&spelled).is_ok_and(|p| &p == self)
    }
}

fn normalise_variant(
    input: &str,
    arch: &str,
    variant: Option<String>,
) -> Result<Option<String>, PlatformError> {
    let allowed: &[&str] = match arch {
        "arm" => &["v5", "v6", "v7"],
        // `arm64/v8` is plain arm64; later Arm revisions are real variants.
        "arm64" => &["v8", "v8.1", "v8.2", "v9"],
        "amd64" => &["v1", "v2", "v3", "v4"],
        _ => &[],
    };
    let Some(v) = variant else {
        return Ok((arch == "arm").then(|| "v7".to_string()));
    };
    if !allowed.contains(&v.as_str()) {
        return Err(PlatformError::UnknownVariant {
            input: input.to_string(),
            arch: arch.to_string(),
            variant: v,
            known: if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            },
        });
    }
    // The baseline variants are spelled without a variant by every registry.
    if (arch == "arm64" && v == "v8") || (arch == "amd64" && v == "v1") {
        return Ok(None);
    }
    Ok(Some(v))
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_aliases() {
        let cases = [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm/v6", "linux/arm/v6"),
            ("LINUX/AMD64", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/riscv64", "linux/riscv64"),
        ];
        for (input, want) in cases {
            assert_eq!(Platform::parse(input).unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn node_labels_drop_the_variant() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!((p.node_os(), p.node_arch()), ("linux", "arm"));
        assert_eq!(p.slug(), "linux-arm-v7");
    }

    #[test]
    fn refuses_bad_platforms_naming_them() {
        for (input, needle) in [
            ("linux", "not of the form"),
            ("linux/", "not of the form"),
            ("linux/amd64/v3/x", "not of the form"),
            ("linux/amd65", "not a known architecture \"amd65\""),
            ("darwin/arm64", "unknown operating system \"darwin\""),
            ("linux/arm/v9", "variant \"v9\""),
            ("linux/s390x/v1", "known: none"),
        ] {
            let err = Platform::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
            assert!(err.contains(&format!("{input:?}")), "{input}: {err}");
        }
    }

    #[test]
    fn matches_image_configs() {
        let arm = Platform::parse("linux/arm/v7").unwrap();
        assert!(arm.matches_config("linux", "arm", Some("v7")));
        assert!(arm.matches_config("linux", "arm", None));
        assert!(!arm.matches_config("linux", "arm", Some("v6")));
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert!(arm64.matches_config("linux", "arm64", Some("v8")));
        assert!(arm64.matches_config("linux", "arm64", Some("")));
        assert!(!arm64.matches_config("linux", "amd64", None));
    }
}
