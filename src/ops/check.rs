//! `mongolake check --env E`: everything tonight's run needs, checked now, one line per check:
//! `ok`, `warn` (works, but should be fixed) or `FAIL` (the run would fail), each with how to fix it.
//!
//! In order: the configuration (already parsed by the caller) and collections.csv rows, every secret
//! reference (resolved, never printed), masking secrets, MongoDB (ping with the configured credentials), each
//! listed collection (exists; has an index whose first key is the timestamp column, else the incremental query
//! scans the whole collection), the lake (its server-side encryption setting; a probe object written, read back
//! and deleted), in Glue mode the Data Catalog (GetDatabase of every database the tables go to) and SMTP
//! (connect, TLS, AUTH, NOOP; no mail is sent). Nothing else is written anywhere.
use crate::config::environment::ValueOrRef;
use crate::config::{Config, SecretRef};
use crate::sink::Lake;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One line of the output.
#[derive(Debug, Clone)]
pub struct Line {
    pub level: Level,
    pub what: String,
    pub detail: String,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = match self.level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        write!(f, "{l:<4}  {:<36} {}", self.what, self.detail)
    }
}

/// Collects lines and prints each as it comes (a slow check shows what it is waiting for).
struct Out(Vec<Line>);

impl Out {
    fn push(&mut self, level: Level, what: impl Into<String>, detail: impl Into<String>) {
        let line = Line { level, what: what.into(), detail: detail.into() };
        println!("{line}");
        self.0.push(line);
    }
}

/// Runs every check; returns the lines (the caller exits 1 when any is `FAIL`).
pub async fn run(config: &Config) -> Vec<Line> {
    let mut out = Out(Vec::new());
    let env = &config.environment;
    out.push(
        Level::Ok,
        "config",
        format!(
            "{} and {} ({} collections)",
            env.path.display(),
            config.collections.path.display(),
            config.collections.entries.len()
        ),
    );
    for e in &config.collections.errors {
        out.push(
            Level::Fail,
            format!("collections.csv line {}", e.line),
            format!("{} (fix the row; that collection is skipped until then)", e.message),
        );
    }
    check_secrets(config, &mut out);
    // Masking secrets (issue 7): collections whose `hash` rules cannot get their HMAC key.
    for problem in crate::mask::check_secrets(config) {
        out.push(Level::Fail, "masking", format!("{problem}; set [masking] hmac_key = {{ env = \"VAR\" }}"));
    }
    check_mongo(config, &mut out).await;
    check_lake(config, &mut out).await;
    check_glue(config, &mut out).await;
    check_smtp(config, &mut out).await;
    out.0
}

/// Glue mode: each database the tables go to can be read (GetDatabase), or is missing (a run creates it).
/// Write access (CreateTable, UpdateTable, the partition batches) is only proven by a run: a check writes nothing.
async fn check_glue(config: &Config, out: &mut Out) {
    let catalog = &config.environment.catalog;
    let Some(cfg) = &catalog.glue else { return };
    let glue = crate::catalog::Glue::connect(cfg).await;
    let mut databases: Vec<String> = config
        .collections
        .entries
        .iter()
        .map(|s| catalog.database.clone().unwrap_or_else(|| crate::schema::names::sanitize(&s.database)))
        .collect();
    databases.sort();
    databases.dedup();
    for db in databases {
        match glue.database_exists(&db).await {
            Ok(true) => out.push(Level::Ok, "glue", format!("database {db} is readable")),
            Ok(false) => out.push(
                Level::Ok,
                "glue",
                format!("database {db} does not exist yet; the next sync creates it (needs glue:CreateDatabase)"),
            ),
            Err(e) => {
                let chain = e.chain();
                let detail = if chain.is_empty() { e.to_string() } else { format!("{e}: {}", chain.join(": ")) };
                out.push(
                    Level::Fail,
                    "glue",
                    format!(
                        "{detail}; check the AWS credentials (environment, profile or role), [catalog] glue_region \
                         and glue_endpoint, and the IAM actions listed in the README (Catalog, Glue mode)"
                    ),
                )
            }
        }
    }
}

fn check_secrets(config: &Config, out: &mut Out) {
    let env = &config.environment;
    let refs: Vec<(&str, Option<&SecretRef>)> = vec![
        ("[mongodb] uri", value_ref(Some(&env.mongodb.uri))),
        ("[mongodb] username", value_ref(env.mongodb.username.as_ref())),
        ("[mongodb] password", env.mongodb.password.as_ref()),
        ("[lake] access_key_id", value_ref(env.lake.access_key_id.as_ref())),
        ("[lake] secret_access_key", env.lake.secret_access_key.as_ref()),
        ("[email] username", value_ref(env.email.as_ref().and_then(|e| e.username.as_ref()))),
        ("[email] password", env.email.as_ref().and_then(|e| e.password.as_ref())),
        ("[masking] hmac_key", env.masking.hmac_key.as_ref()),
    ];
    for (key, r) in refs {
        let Some(r) = r else { continue };
        let source = match (&r.env, &r.file) {
            (Some(v), _) => format!("environment variable {v}"),
            (_, Some(f)) => format!("file {}", f.display()),
            _ => "?".into(),
        };
        match r.resolve(key) {
            Ok(v) if v.is_empty() => out.push(Level::Fail, format!("secret {key}"), format!("{source} is empty")),
            Ok(_) => out.push(Level::Ok, format!("secret {key}"), format!("resolved from {source}")),
            Err(e) => out.push(Level::Fail, format!("secret {key}"), e.to_string()),
        }
    }
}

fn value_ref(v: Option<&ValueOrRef>) -> Option<&SecretRef> {
    match v {
        Some(ValueOrRef::Ref(r)) => Some(r),
        _ => None,
    }
}

async fn check_mongo(config: &Config, out: &mut Out) {
    let m = &config.environment.mongodb;
    let client = match crate::source::connect(m).await {
        Ok(c) => c,
        Err(e) => return out.push(Level::Fail, "mongodb", format!("{e}; fix [mongodb] uri / credentials")),
    };
    check_mongo_with(&client, config, out).await;
    // Inside the runtime, not at exit (see sync::run).
    client.shutdown().immediate(true).await;
}

async fn check_mongo_with(client: &mongodb::Client, config: &Config, out: &mut Out) {
    let m = &config.environment.mongodb;
    if let Err(e) = crate::source::ping(client, m).await {
        let fix = crate::report::fix::for_error(&e).map(|f| format!("; fix: {f}")).unwrap_or_default();
        return out.push(Level::Fail, "mongodb", format!("{e}{fix}"));
    }
    let who = match &m.username {
        Some(u) => format!("as `{}`", u.resolve("[mongodb] username").unwrap_or_default()),
        None => "without authentication".into(),
    };
    out.push(Level::Ok, "mongodb", format!("ping answered {who}"));
    for spec in &config.collections.entries {
        let what = format!("collection {}", spec.name());
        let db = client.database(&spec.database);
        match crate::source::find_collection(client, spec).await {
            Ok(crate::source::Kind::Collection) => {}
            Ok(crate::source::Kind::View) => {
                out.push(Level::Ok, what, "a view: read like a collection (its source collection's indexes serve it)");
                continue;
            }
            Err(e @ crate::Error::Mongo { .. }) => {
                out.push(Level::Fail, what, format!("{e} (does the user have `read` on `{}`?)", spec.database));
                continue;
            }
            Err(e) => {
                out.push(Level::Fail, what, e.to_string());
                continue;
            }
        }
        let coll = db.collection::<bson::Document>(&spec.collection);
        let ts = spec.timestamp_column.as_str();
        match crate::source::timestamp_index(&coll, ts).await {
            Ok(Some(name)) => out.push(Level::Ok, what, format!("exists; index `{name}` serves the `{ts}` query")),
            Ok(None) => out.push(
                Level::Warn,
                what,
                format!(
                    "no index starts with `{ts}`: every incremental run scans the whole collection; create one: {}",
                    crate::source::create_index_hint(&spec.database, &spec.collection, ts)
                ),
            ),
            Err(e) => out.push(Level::Warn, what, format!("cannot list indexes: {e}")),
        }
    }
}

async fn check_lake(config: &Config, out: &mut Out) {
    let env = &config.environment;
    let lake = match Lake::open_tuned(&env.lake, &env.sync.store) {
        Ok(l) => l,
        Err(e) => return out.push(Level::Fail, "lake", format!("{e}; fix [lake]")),
    };
    let probe = lake.layout().check_probe(&crate::sync::new_run_id());
    let body = b"mongolake check probe; safe to delete".to_vec();
    let result = async {
        lake.put(&probe, body.clone().into()).await?;
        let back = lake.get_opt(&probe).await?;
        lake.delete(&probe).await?;
        Ok::<_, crate::Error>(back.as_deref() == Some(&body[..]))
    }
    .await;
    if lake.local_dir().is_none() {
        let detail = match &env.lake.encryption {
            Some(e) => format!("{e}: sent with every object written (the probe too)"),
            None => "none requested ([lake] server_side_encryption unset): objects get the bucket's default \
                     encryption; a bucket policy requiring aws:kms refuses every write"
                .to_string(),
        };
        out.push(Level::Ok, "lake encryption", detail);
    }
    match result {
        Ok(true) => out.push(Level::Ok, "lake", format!("{}: wrote, read back and deleted a probe object", lake.url())),
        Ok(false) => out.push(Level::Fail, "lake", format!("{}: the probe object read back differently", lake.url())),
        Err(e) => out.push(
            Level::Fail,
            "lake",
            format!("{e}; check [lake] url, endpoint and credentials (write, read, delete and list are needed)"),
        ),
    }
    check_partitions(config, &lake, out).await;
}

/// Tables of many tiny partitions (a `partition_by` on a field with a value per document), from the lake.
async fn check_partitions(config: &Config, lake: &Lake, out: &mut Out) {
    for spec in &config.collections.entries {
        let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
        let found = match crate::state::index::store::saved_keys(lake, db, coll).await {
            Ok(Some(rows)) => crate::sync::guard::sparse(lake, spec, rows, &config.environment.report, None).await,
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match found {
            Ok(Some(s)) => out.push(Level::Warn, format!("partitions {}", spec.name()), s.to_string()),
            Ok(None) => {}
            Err(e) => out.push(Level::Warn, format!("partitions {}", spec.name()), format!("cannot count: {e}")),
        }
    }
}

async fn check_smtp(config: &Config, out: &mut Out) {
    let Some(email) = &config.environment.email else {
        return out.push(Level::Ok, "email", "not configured: no report will be mailed");
    };
    if !email.enabled {
        return out.push(Level::Warn, "email", "[email] enabled = false: no report will be mailed");
    }
    let what = format!("smtp {}:{}", email.smtp_host, email.smtp_port);
    match crate::report::email::test_connection(email).await {
        Ok(()) => out.push(
            Level::Ok,
            what,
            format!(
                "connected ({}{}), NOOP answered; no mail sent",
                match email.tls {
                    crate::config::environment::SmtpTls::StartTls => "STARTTLS",
                    crate::config::environment::SmtpTls::Implicit => "implicit TLS",
                    crate::config::environment::SmtpTls::None => "plain, unencrypted",
                },
                if email.username.is_some() { ", authenticated" } else { "" }
            ),
        ),
        Err(e) => out.push(
            Level::Fail,
            what,
            format!("{e}; check [email] smtp_host, smtp_port, tls (and tls_ca_file for a private CA) and credentials"),
        ),
    }
}
