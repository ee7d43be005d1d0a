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

    /// A worker sharing a collection's first load (`--shard`, see `sync::shard`) stopped before delivering its
    /// range: retrying the collection makes a new plan.
    #[error("{collection}: {message}")]
    RangeWorker { collection: String, message: String },

    /// A segment of a collection's key index is missing or cannot be decoded. A run that meets one while it
    /// updates the index rebuilds the index from the partition files and plans again.
    #[error("key index segment {path}: {message}")]
    IndexSegment { path: String, message: String },

    /// The Glue Data Catalog refused a request or could not be reached (Glue mode, `[catalog] glue = true`).
    #[error("Glue {context}: {source}")]
    Glue {
        context: String,
        #[source]
        source: Box<aws_sdk_glue::Error>,
    },

    /// A Glue batch request (partitions) was accepted but some of its entries failed.
    #[error("Glue {context}: {message}")]
    GlueEntries { context: String, message: String },

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

    /// Whether retrying the same work later may succeed: network errors, a primary stepping down or a node
    /// shutting down (the driver's retryable-read codes and labels), S3 throttling and 5xx answers, timeouts.
    /// Everything else (bad config or credentials, a missing field, unconvertible data, 4xx) is permanent:
    /// retrying it only delays the morning's report.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Mongo { source, .. } => mongo_is_transient(source),
            Error::Store { source, .. } => store_is_transient(source),
            Error::Io { source, .. } => io_is_transient(source),
            Error::RangeWorker { .. } => true,
            Error::Glue { source, .. } => glue_is_transient(source),
            _ => false,
        }
    }

    /// The sources below this error's own message, outermost first (each variant's message already shows its
    /// immediate cause; deeper causes such as an I/O error under an HTTP error are listed here).
    pub fn chain(&self) -> Vec<String> {
        let own = self.to_string();
        let mut out: Vec<String> = Vec::new();
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            let text = e.to_string();
            if !own.contains(&text) && !out.iter().any(|o| o.contains(&text)) {
                out.push(text);
            }
            cur = e.source();
        }
        out
    }
}

/// Server error codes after which a read can be retried (mongod's `RetryableReadError` set: not primary,
/// shutting down, host unreachable, network timeout, socket exception, exceeded time limit).
const MONGO_RETRYABLE_CODES: [i32; 13] = [11600, 11602, 10107, 13435, 13436, 189, 91, 7, 6, 89, 9001, 134, 262];

fn mongo_is_transient(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    if e.contains_label("RetryableReadError")
        || e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR)
        || e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
        || e.contains_label(mongodb::error::SYSTEM_OVERLOADED_ERROR)
        || e.contains_label(mongodb::error::RETRYABLE_ERROR)
    {
        return true;
    }
    match e.kind.as_ref() {
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } | ErrorKind::ServerSelection { .. } => true,
        ErrorKind::Command(c) => MONGO_RETRYABLE_CODES.contains(&c.code),
        _ => false,
    }
}

fn io_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::TimedOut
            | K::Interrupted
            | K::UnexpectedEof
    )
}

/// Glue throttling and internal errors, and requests that never got an answer (the SDK has already retried
/// each of these itself, three attempts in its standard mode).
fn glue_is_transient(e: &aws_sdk_glue::Error) -> bool {
    use aws_sdk_glue::error::ProvideErrorMetadata;
    match e {
        aws_sdk_glue::Error::InternalServiceException(_)
        | aws_sdk_glue::Error::OperationTimeoutException(_)
        | aws_sdk_glue::Error::ThrottlingException(_) => true,
        // No code: no answer (a dispatch failure or a timeout).
        other => {
            other.code().is_none_or(|c| c.contains("Throttl") || c == "ServiceUnavailable" || c == "InternalFailure")
        }
    }
}

/// object_store keeps its HTTP status type private, so the status is recognised in the message it renders
/// (`... 503 Service Unavailable ...`, S3's `SlowDown` code); transport failures by their kind.
fn store_is_transient(e: &object_store::Error) -> bool {
    use object_store::client::HttpErrorKind as K;
    if matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
    ) {
        return false;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<object_store::client::HttpError>() {
            if matches!(h.kind(), K::Connect | K::Request | K::Timeout | K::Interrupted) {
                return true;
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io_is_transient(io) {
                return true;
            }
        }
        cur = err.source();
    }
    let text = format!("{e}");
    ["SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttl"].iter().any(|w| text.contains(w))
        || [" 500 ", " 502 ", " 503 ", " 504 ", " 429 ", "status 500", "status 502", "status 503", "status 504"]
            .iter()
            .any(|w| text.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_and_permanent_errors_are_told_apart() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(Error::mongo("find", mongodb::error::Error::from(refused)).is_transient());
        let custom = mongodb::error::Error::custom("not a network problem");
        assert!(!Error::mongo("find", custom).is_transient());
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(Error::io("spill", reset).is_transient());
        assert!(!Error::io("spill", std::io::Error::other("disk full")).is_transient());
        let gone = object_store::Error::NotFound { path: "x".into(), source: "missing".into() };
        assert!(!Error::store("reading", gone).is_transient());
        let slow = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 503 Service Unavailable: <Code>SlowDown</Code>".into(),
        };
        assert!(Error::store("writing", slow).is_transient());
        let denied = object_store::Error::Generic {
            store: "S3",
            source: "Client error with status 403 Forbidden: AccessDenied".into(),
        };
        assert!(!Error::store("writing", denied).is_transient());
        assert!(!Error::collection("c", "partition field missing").is_transient());
    }

    #[test]
    fn the_chain_lists_only_causes_not_already_in_the_message() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = Error::io("reading spill file", inner);
        assert_eq!(e.to_string(), "reading spill file: connection refused");
        assert!(e.chain().is_empty());
    }
}
