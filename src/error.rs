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

    /// Parquet or Arrow encoding/decoding failed, known only by its message (a check of our own: a missing
    /// metadata key, files of another schema). Failures with an error of their own are the variants below.
    #[error("{context}: {message}")]
    Encode { context: String, message: String },

    /// The Parquet reader or writer failed for a reason of its own (bad file, unsupported type). A lake or I/O
    /// failure met inside it comes out as [`Error::Store`] or [`Error::Io`] instead (see [`Error::parquet`]).
    #[error("{context}: {source}")]
    Parquet {
        context: String,
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// An Arrow computation failed (see [`Error::arrow`] for the lake and I/O failures inside it).
    #[error("{context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow::error::ArrowError,
    },

    /// A JSON document of ours (schema, key index manifest, range plan) could not be read or written.
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },

    /// A task (an encode on a blocking thread, an upload) panicked or was cancelled.
    #[error("{context}: {source}")]
    Task {
        context: String,
        #[source]
        source: tokio::task::JoinError,
    },

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
    IndexSegment {
        path: String,
        message: String,
        /// Why it could not be decoded (None: it is missing).
        #[source]
        source: Option<Box<Error>>,
    },

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
    /// An encoding or decoding failure. A message that is one of the error types with a variant of its own
    /// (Parquet, Arrow, JSON, a task's [`tokio::task::JoinError`], I/O, object_store) keeps its type: it goes
    /// through [`Error::parquet`], [`Error::arrow`] and the like, so a lake failure met while encoding is still a
    /// [`Error::Store`] that [`Error::is_transient`] can classify. Anything else becomes [`Error::Encode`].
    pub fn encode<M: std::fmt::Display + 'static>(context: impl Into<String>, message: M) -> Self {
        use std::any::Any;
        let context = context.into();
        let mut slot = Some(message);
        let any: &mut dyn Any = &mut slot;
        if let Some(e) = any.downcast_mut::<Option<parquet::errors::ParquetError>>().and_then(Option::take) {
            return Self::parquet(context, e);
        }
        if let Some(e) = any.downcast_mut::<Option<arrow::error::ArrowError>>().and_then(Option::take) {
            return Self::arrow(context, e);
        }
        if let Some(source) = any.downcast_mut::<Option<serde_json::Error>>().and_then(Option::take) {
            return Error::Json { context, source };
        }
        if let Some(source) = any.downcast_mut::<Option<tokio::task::JoinError>>().and_then(Option::take) {
            return Error::Task { context, source };
        }
        if let Some(e) = any.downcast_mut::<Option<std::io::Error>>().and_then(Option::take) {
            return Self::io(context, e);
        }
        if let Some(e) = any.downcast_mut::<Option<object_store::Error>>().and_then(Option::take) {
            return Self::store(context, e);
        }
        let message = slot.map(|m| m.to_string()).unwrap_or_default();
        Error::Encode { context, message }
    }
    /// A Parquet reader's or writer's error. Parquet wraps whatever its `Write` sink or async reader returned
    /// in [`parquet::errors::ParquetError::External`]: an object_store error there (a ranged GET of the lake)
    /// comes back out as [`Error::Store`], an I/O error as [`Error::Io`] (or `Store`, when the I/O error
    /// carries an object_store error), an Arrow error through [`Error::arrow`].
    pub fn parquet(context: impl Into<String>, source: parquet::errors::ParquetError) -> Self {
        use parquet::errors::ParquetError;
        let context = context.into();
        match source {
            ParquetError::External(boxed) => match Self::external(context, boxed) {
                Ok(e) => e,
                Err((context, boxed)) => Error::Parquet { context, source: ParquetError::External(boxed) },
            },
            source => Error::Parquet { context, source },
        }
    }
    /// An Arrow error: its external or I/O cause, when it has one we classify, as with [`Error::parquet`].
    pub fn arrow(context: impl Into<String>, source: arrow::error::ArrowError) -> Self {
        use arrow::error::ArrowError;
        let context = context.into();
        match source {
            ArrowError::ExternalError(boxed) => match Self::external(context, boxed) {
                Ok(e) => e,
                Err((context, boxed)) => Error::Arrow { context, source: ArrowError::ExternalError(boxed) },
            },
            ArrowError::IoError(_, io) => Self::io(context, io),
            source => Error::Arrow { context, source },
        }
    }
    /// The typed error in a boxed one (what Parquet and Arrow wrap), or the box back when it is none of ours.
    #[allow(clippy::type_complexity)]
    fn external(
        context: String,
        boxed: Box<dyn std::error::Error + Send + Sync>,
    ) -> std::result::Result<Self, (String, Box<dyn std::error::Error + Send + Sync>)> {
        let boxed = match boxed.downcast::<object_store::Error>() {
            Ok(e) => return Ok(Self::store(context, *e)),
            Err(b) => b,
        };
        let boxed = match boxed.downcast::<std::io::Error>() {
            Ok(e) => return Ok(Self::io(context, *e)),
            Err(b) => b,
        };
        let boxed = match boxed.downcast::<parquet::errors::ParquetError>() {
            Ok(e) => return Ok(Self::parquet(context, *e)),
            Err(b) => b,
        };
        match boxed.downcast::<arrow::error::ArrowError>() {
            Ok(e) => Ok(Self::arrow(context, *e)),
            Err(b) => Err((context, b)),
        }
    }
    pub fn collection(collection: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Collection { collection: collection.into(), message: message.into() }
    }
    /// A local I/O failure; an I/O error that only carries an object_store error (object_store's `AsyncWrite`
    /// for a streamed upload, its readers) is that store error, [`Error::Store`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        if source.get_ref().is_some_and(|inner| inner.is::<object_store::Error>()) {
            let inner = source.into_inner().expect("checked above");
            return Self::store(context, *inner.downcast::<object_store::Error>().expect("checked above"));
        }
        Error::Io { context, source }
    }

    /// Whether this is a file's content that could not be encoded or decoded (an unreadable file), as opposed
    /// to a failure to reach it.
    pub fn is_encoding(&self) -> bool {
        matches!(self, Error::Encode { .. } | Error::Parquet { .. } | Error::Arrow { .. } | Error::Json { .. })
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
            // (the constructors take lake and I/O causes out; one nested deeper is still looked for)
            Error::Parquet { .. } | Error::Arrow { .. } => self.nested_is_transient(),
            Error::Glue { source, .. } => glue_is_transient(source),
            _ => false,
        }
    }

    /// Whether a lake or I/O error somewhere below this error is transient.
    fn nested_is_transient(&self) -> bool {
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            if let Some(s) = e.downcast_ref::<object_store::Error>() {
                return store_is_transient(s);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io_is_transient(io) {
                    return true;
                }
            }
            cur = e.source();
        }
        false
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

    /// What S3 answers a throttled request, as object_store renders it.
    fn slow_down() -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source:
                "Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>"
                    .into(),
        }
    }

    #[test]
    fn a_store_error_inside_a_parquet_error_comes_back_out_as_a_transient_store_error() {
        use parquet::errors::ParquetError;
        let e = Error::parquet("db.c partition p=1", ParquetError::External(Box::new(slow_down())));
        assert!(
            matches!(&e, Error::Store { context, source: object_store::Error::Generic { .. } } if context == "db.c partition p=1"),
            "{e:?}"
        );
        assert!(e.is_transient());
        assert!(e.to_string().contains("SlowDown"), "{e}");
        // ... also when the writer's sink gave it as an I/O error (object_store's AsyncWrite does).
        let io = std::io::Error::other(slow_down());
        let e = Error::parquet("p", ParquetError::External(Box::new(io)));
        assert!(matches!(e, Error::Store { .. }), "{e:?}");
        assert!(e.is_transient());
        // A missing object stays permanent; a plain I/O failure is Io, classified by its kind.
        let gone = object_store::Error::NotFound { path: "x".into(), source: "missing".into() };
        let e = Error::parquet("p", ParquetError::External(Box::new(gone)));
        assert!(matches!(e, Error::Store { .. }) && !e.is_transient(), "{e:?}");
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let e = Error::parquet("p", ParquetError::External(Box::new(reset)));
        assert!(matches!(e, Error::Io { .. }) && e.is_transient(), "{e:?}");
        // Parquet's own errors keep their type and their message (as `Error::Encode` rendered them).
        let bad = Error::parquet("reading f", ParquetError::General("corrupt footer".into()));
        assert!(matches!(bad, Error::Parquet { .. }) && !bad.is_transient() && bad.is_encoding());
        assert_eq!(bad.to_string(), format!("reading f: {}", ParquetError::General("corrupt footer".into())));
        // An external error of another type stays inside the Parquet error, its source kept.
        let other = Error::parquet("p", ParquetError::External("something else".into()));
        assert!(matches!(other, Error::Parquet { .. }));
        assert_eq!(std::error::Error::source(&other).unwrap().to_string(), "External: something else");
    }

    #[test]
    fn arrow_errors_give_back_their_store_and_io_causes() {
        use arrow::error::ArrowError;
        let e = Error::arrow("merging", ArrowError::ExternalError(Box::new(slow_down())));
        assert!(matches!(e, Error::Store { .. }) && e.is_transient(), "{e:?}");
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::arrow("merging", ArrowError::IoError("refused".into(), refused));
        assert!(matches!(e, Error::Io { .. }) && e.is_transient(), "{e:?}");
        let nested = parquet_in_arrow(slow_down());
        let e = Error::arrow("reading", nested);
        assert!(matches!(e, Error::Store { .. }) && e.is_transient(), "{e:?}");
        let cast = Error::arrow("merging", ArrowError::CastError("no".into()));
        assert!(matches!(cast, Error::Arrow { .. }) && !cast.is_transient());
        assert_eq!(cast.to_string(), "merging: Cast error: no");
    }

    /// A store error as Arrow's record batch reader gives it: inside a Parquet error inside an Arrow error.
    fn parquet_in_arrow(e: object_store::Error) -> arrow::error::ArrowError {
        let p = parquet::errors::ParquetError::External(Box::new(e));
        arrow::error::ArrowError::ExternalError(Box::new(p))
    }

    #[test]
    fn an_io_error_carrying_a_store_error_is_the_store_error() {
        let e = Error::io("completing the upload of s3://b/f", std::io::Error::other(slow_down()));
        assert!(matches!(&e, Error::Store { context, .. } if context == "completing the upload of s3://b/f"));
        assert!(e.is_transient());
        // Local I/O stays I/O, with its message.
        let e = Error::io("spill", std::io::Error::other("disk full"));
        assert!(matches!(e, Error::Io { .. }));
        assert_eq!(e.to_string(), "spill: disk full");
    }

    /// A `Write` sink failing as a streamed upload's does once the store has failed.
    struct FailingSink;
    impl std::io::Write for FailingSink {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other(slow_down()))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_store_failure_met_by_the_parquet_writer_is_a_transient_store_error() {
        use arrow::array::{Int64Array, RecordBatch};
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = std::sync::Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![std::sync::Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        // The writer writes its magic at the first flush or at the end; either way the sink's error comes back.
        let failed = parquet::arrow::ArrowWriter::try_new(FailingSink, schema, None)
            .and_then(|mut w| w.write(&batch).and_then(|_| w.close()))
            .map(|_| ())
            .map_err(|e| Error::parquet("db.c partition p=1", e))
            .unwrap_err();
        assert!(matches!(failed, Error::Store { .. }), "{failed:?}");
        assert!(failed.is_transient());
    }

    #[tokio::test]
    async fn encode_keeps_the_type_of_errors_that_have_a_variant() {
        let p = Error::encode("f", parquet::errors::ParquetError::General("bad".into()));
        assert!(matches!(p, Error::Parquet { .. }));
        let s = Error::encode("f", parquet::errors::ParquetError::External(Box::new(slow_down())));
        assert!(matches!(s, Error::Store { .. }) && s.is_transient());
        let a = Error::encode("f", arrow::error::ArrowError::ComputeError("x".into()));
        assert!(matches!(a, Error::Arrow { .. }));
        let j = Error::encode("schema", serde_json::from_str::<u32>("nope").unwrap_err());
        assert!(matches!(j, Error::Json { .. }) && j.is_encoding());
        let join = tokio::spawn(async { panic!("boom") }).await.unwrap_err();
        let t = Error::encode("partition task", join);
        assert!(matches!(t, Error::Task { .. }) && !t.is_transient());
        assert!(t.to_string().starts_with("partition task: "), "{t}");
        // Text stays text.
        let m = Error::encode("index", "keys out of order");
        assert!(matches!(m, Error::Encode { .. }));
        assert_eq!(m.to_string(), "index: keys out of order");
        assert_eq!(Error::encode("index", format!("{} of {}", 1, 2)).to_string(), "index: 1 of 2");
    }

    #[test]
    fn the_chain_lists_only_causes_not_already_in_the_message() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = Error::io("reading spill file", inner);
        assert_eq!(e.to_string(), "reading spill file: connection refused");
        assert!(e.chain().is_empty());
    }
}
