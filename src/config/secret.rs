//! Secrets in configuration files: only ever references, `{ env = "VAR" }` or `{ file = "/run/secrets/x" }`,
//! resolved when needed and never logged.
use crate::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A reference to a secret; the value is resolved only when needed and never logged.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Name of an environment variable holding the value.
    pub env: Option<String>,
    /// Path of a file holding the value (trailing newline trimmed), e.g. a Kubernetes secret mount.
    pub file: Option<PathBuf>,
}

impl SecretRef {
    /// Reads the secret. `key` names the TOML key for the error message.
    pub fn resolve(&self, key: &str) -> Result<String> {
        match (&self.env, &self.file) {
            (Some(var), None) => std::env::var(var).map_err(|_| Error::Secret {
                key: key.into(),
                message: format!("environment variable `{var}` is not set; export it before running"),
            }),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| Error::Secret {
                    key: key.into(),
                    message: format!("cannot read secret file {}: {e}", path.display()),
                }),
            _ => Err(Error::Secret { key: key.into(), message: "give exactly one of `env` or `file`".into() }),
        }
    }
}

/// A value that may be written literally or come from a reference (used for non-secret values such as the URI).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ValueOrRef {
    Literal(String),
    Ref(SecretRef),
}

impl ValueOrRef {
    pub fn resolve(&self, key: &str) -> Result<String> {
        match self {
            ValueOrRef::Literal(v) => Ok(v.clone()),
            ValueOrRef::Ref(r) => r.resolve(key),
        }
    }
    pub(super) fn as_secret(&self, key: &str, path: &Path) -> Result<SecretRef> {
        match self {
            ValueOrRef::Ref(r) => Ok(r.clone()),
            ValueOrRef::Literal(_) => Err(Error::config(
                path,
                None,
                format!("`{key}` is written literally; secrets must not live in config files: use `{key} = {{ env = \"VAR\" }}` or `{key} = {{ file = \"/run/secrets/...\" }}`"),
            )),
        }
    }
}
