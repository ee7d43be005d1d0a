//! The crate's one error type. Every variant carries the context an operator needs to act on it: which
//! collection, which file and line, and (where we know it) the fix.
use std::path::PathBuf;

/// Crate-wide result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in mongolake, with context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration file could not be read or is invalid. `path` names the file, `line` the line when known.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Config { path: PathBuf, line: Option<usize>, message: String },

    /// The requested environment has no TOML file.
    #[error("unknown environment `{name}`: no file {}; environments that exist: {}", path.display(), if available.is_empty() { "(none)".to_string() } else { available.join(", ") })]
    UnknownEnvironment { name: String, path: PathBuf, available: Vec<String> },

    /// A secret reference could not be resolved.
    #[error("secret `{key}`: {message}")]
    Secret { key: String, message: String },

    /// MongoDB said no or could not be reached.
    #[error("MongoDB {context}: {source}")]
    Mongo {
        context: String,
        #[source]
        source: Box<mongodb::error::Error>,
    },

    /// A BSON document from the source could not be decoded.
    #[error("{collection}: malformed BSON: {message}")]
    Bson { collection: String, message: String },

    /// The lake (object store) failed.
    #[error("lake {context}: {source}")]
    Store {
        context: String,
        #[source]
        source: object_store::Error,
    },

    /// Parquet or Arrow encoding/decoding failed.
    #[error("{context}: {message}")]
    Encode { context: String, message: String },

    /// A collection-level problem (bad partition spec, missing partition fields, unconvertible data).
    #[error("{collection}: {message}")]
    Collection { collection: String, message: String },

    /// Sending the email report failed.
    #[error("email report: {0}")]
    Email(String),

    /// Local I/O (spill files, config files).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn config(path: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> Self {
        Error::Config { path: path.into(), line, message: message.into() }
    }
    pub fn mongo(context: impl Into<String>, source: mongodb::error::Error) -> Self {
        Error::Mongo { context: context.into(), source: Box::new(source) }
    }
    pub fn store(context: impl Into<String>, source: object_store::Error) -> Self {
        Error::Store { context: context.into(), source }
    }
    pub fn encode(context: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Encode { context: context.into(), message: message.to_string() }
    }
    pub fn collection(collection: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Collection { collection: collection.into(), message: message.into() }
    }
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}
