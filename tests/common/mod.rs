//! Shared harness of the integration tests: the servers' addresses, an isolated project per test (its own MongoDB
//! database, config directory and lake), running the `mongolake` binary, and reading lakes back through the
//! independent reader `tests/py/check_lake.py`.
//!
//! The servers are started by `scripts/test.sh`; a test that finds their variables missing panics (it never skips).
#![allow(dead_code)]

pub mod proxy;

use bson::{Bson, Document};
use futures::TryStreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The five collections `mongolake seed` creates.
pub const SEEDED: [&str; 5] = ["patients", "visits", "bills", "lab_results", "pharmacy_stock"];

/// collections.csv rows for the seeded collections (as in the repository's own collections.csv).
pub const SEEDED_ROWS: [&str; 5] = [
    "{db},patients,modified_at,date(created_at),",
    "{db},visits,modified_at,facility_id/date(created_at),",
    "{db},bills,modified_at,facility_id/date(created_at),",
    "{db},lab_results,modified_at,date(created_at),",
    "{db},pharmacy_stock,modified_at,facility_id,",
];

pub const HEADER: &str = "database,collection,timestamp_column,partition_by,key";

/// How long one invocation of the binary may take before the test fails (2 cores, tests in parallel).
const BINARY_TIMEOUT: Duration = Duration::from_secs(300);

fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "environment variable {name} is not set: run scripts/test.sh, which starts the servers \
             (MongoDB-compatible, S3, SMTP) and exports MONGOLAKE_TEST_MONGO_URI and MONGOLAKE_TEST_S3_ENDPOINT"
        ),
    }
}

pub fn mongo_uri() -> String {
    required("MONGOLAKE_TEST_MONGO_URI")
}

pub fn s3_endpoint() -> String {
    required("MONGOLAKE_TEST_S3_ENDPOINT").trim_end_matches('/').to_string()
}

/// `t_<name>_<random>`: a database name of this test only.
pub fn unique_db(name: &str) -> String {
    format!("t_{name}_{:08x}", rand::random::<u32>())
}

pub async fn client() -> mongodb::Client {
    let uri = mongo_uri();
    mongodb::Client::with_uri_str(&uri).await.unwrap_or_else(|e| panic!("cannot connect to {uri}: {e}"))
}

pub fn coll(client: &mongodb::Client, db: &str, name: &str) -> mongodb::Collection<Document> {
    client.database(db).collection::<Document>(name)
}

/// Every document of a collection.
pub async fn all_docs(client: &mongodb::Client, db: &str, name: &str) -> Vec<Document> {
    let cursor = coll(client, db, name).find(bson::doc! {}).await.expect("find");
    cursor.try_collect().await.expect("reading documents")
}

/// A key as the lake stores it: ObjectId as 24 hex digits, strings as themselves, numbers as text.
pub fn id_text(v: &Bson) -> String {
    match v {
        Bson::ObjectId(o) => o.to_hex(),
        Bson::String(s) => s.clone(),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        other => panic!("unexpected _id {other:?}"),
    }
}

pub fn doc_id(d: &Document) -> String {
    id_text(d.get("_id").expect("document without _id"))
}

/// Epoch milliseconds of a timestamp in any of the three representations (Date, epoch-ms integer, ISO string).
pub fn bson_millis(v: &Bson) -> i64 {
    match v {
        Bson::DateTime(d) => d.timestamp_millis(),
        Bson::Int64(v) => *v,
        Bson::Int32(v) => *v as i64,
        Bson::String(s) => iso_millis(s),
        other => panic!("not a timestamp: {other:?}"),
    }
}

pub fn iso_millis(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("`{s}` is not RFC 3339: {e}")).timestamp_millis()
}

pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).expect("in range").format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Removes ANSI colour sequences (the log lines are coloured).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The outcome of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub what: String,
    /// None when killed by a signal (an abort).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    pub fn describe(&self) -> String {
        format!(
            "`{}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "expected exit code {code}: {}", self.describe());
        self
    }
    pub fn assert_ok(&self) -> &Self {
        self.assert_code(0)
    }
}

/// Runs the mongolake binary with a time limit; output goes to files (no pipe can fill up).
pub fn run_binary(args: &[&str], cwd: &Path, envs: &[(&str, &str)]) -> Run {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let err = tempfile::NamedTempFile::new().expect("temp file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mongolake"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("MONGOLAKE_FAULT")
        .stdin(Stdio::null())
        .stdout(out.reopen().expect("reopen"))
        .stderr(err.reopen().expect("reopen"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let what = format!("mongolake {}", args.join(" "));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for mongolake") {
            break s;
        }
        if started.elapsed() > BINARY_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not finish within {BINARY_TIMEOUT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |f: &tempfile::NamedTempFile| {
        let mut s = String::new();
        std::fs::File::open(f.path()).expect("open output").read_to_string(&mut s).expect("read output");
        strip_ansi(&s)
    };
    Run { what, code: status.code(), stdout: read(&out), stderr: read(&err) }
}

/// One test's world: a MongoDB database, a config directory (collections.csv, environments/) and lakes in it.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub db: String,
}

impl Project {
    pub fn new(name: &str) -> Project {
        let dir = tempfile::Builder::new().prefix(&format!("mongolake-{name}-")).tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("environments")).expect("environments dir");
        Project { dir, db: unique_db(name) }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes collections.csv: the header, then `rows` with `{db}` replaced by this test's database.
    pub fn write_collections(&self, rows: &[&str]) {
        let mut text = format!("{HEADER}\n");
        for r in rows {
            text.push_str(&r.replace("{db}", &self.db));
            text.push('\n');
        }
        self.write_collections_text(&text);
    }

    pub fn write_collections_text(&self, text: &str) {
        std::fs::write(self.path().join("collections.csv"), text).expect("writing collections.csv");
    }

    pub fn write_env(&self, name: &str, toml: &str) {
        std::fs::write(self.path().join("environments").join(format!("{name}.toml")), toml).expect("writing env");
    }

    /// Adds `line` (such as `upload_part_mb = 1`) to the `[sync]` section of environment `name`.
    #[allow(dead_code)]
    pub fn set_sync(&self, name: &str, line: &str) {
        let file = self.path().join("environments").join(format!("{name}.toml"));
        let toml =
            std::fs::read_to_string(&file).expect("reading env").replace("[sync]\n", &format!("[sync]\n{line}\n"));
        std::fs::write(&file, toml).expect("writing env");
    }

    /// An environment whose lake is the local directory `<dir>/lake-<name>`; returns the lake path.
    pub fn local_env(&self, name: &str, timezone: &str) -> String {
        let lake = self.path().join(format!("lake-{name}"));
        let lake = lake.to_str().expect("utf-8 path").to_string();
        self.write_env(
            name,
            &format!(
                "[mongodb]\nuri = \"{}\"\nconnect_timeout_seconds = 5\n\n[lake]\nurl = \"{lake}\"\n\n[sync]\n\
                 timezone = \"{timezone}\"\noverlap_seconds = 300\n",
                mongo_uri()
            ),
        );
        lake
    }

    /// An environment whose lake is `s3://<bucket>/<prefix>` on the test S3 server (the bucket is created).
    /// Returns the lake URL.
    pub fn s3_env(&self, name: &str, bucket: &str, prefix: &str, timezone: &str) -> String {
        self.s3_env_at(name, bucket, prefix, timezone, &s3_endpoint())
    }

    /// [`Project::s3_env`] reaching the S3 server through `endpoint` (a [`proxy`] in front of it).
    pub fn s3_env_at(&self, name: &str, bucket: &str, prefix: &str, timezone: &str, endpoint: &str) -> String {
        create_bucket(bucket);
        let url = format!("s3://{bucket}/{prefix}");
        self.write_env(
            name,
            &format!(
                "[mongodb]\nuri = \"{}\"\nconnect_timeout_seconds = 5\n\n[lake]\nurl = \"{url}\"\nendpoint = \"{}\"\n\
                 region = \"us-east-1\"\nallow_http = true\n\n[sync]\ntimezone = \"{timezone}\"\noverlap_seconds = 300\n",
                mongo_uri(),
                endpoint
            ),
        );
        url
    }

    /// `mongolake sync --env ENV --config-dir DIR --no-email ARGS...`
    pub fn sync(&self, env: &str, args: &[&str]) -> Run {
        self.sync_with(env, args, &[])
    }

    pub fn sync_with(&self, env: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let dir = self.path().to_str().expect("utf-8 path").to_string();
        let mut all = vec!["sync", "--env", env, "--config-dir", dir.as_str(), "--no-email"];
        all.extend_from_slice(args);
        run_binary(&all, self.path(), envs)
    }

    /// `mongolake seed` into this test's database.
    pub fn seed(&self, docs: u64, seed: u64) {
        let (uri, docs, seed) = (mongo_uri(), docs.to_string(), seed.to_string());
        run_binary(&["seed", "--uri", &uri, "--db", &self.db, "--docs", &docs, "--seed", &seed], self.path(), &[])
            .assert_ok();
    }

    /// `mongolake mutate` on this test's database (seed must be the seeding seed).
    pub fn mutate(&self, fraction: f64, seed: u64) {
        let (uri, fraction, seed) = (mongo_uri(), fraction.to_string(), seed.to_string());
        run_binary(
            &["mutate", "--uri", &uri, "--db", &self.db, "--fraction", &fraction, "--seed", &seed],
            self.path(),
            &[],
        )
        .assert_ok();
    }
}

/// Bytes that zstd cannot shrink (xorshift), so a few thousand documents make a file of several MB.
#[allow(dead_code)]
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Creates an S3 bucket on the test server with a plain `PUT /<bucket>`.
pub fn create_bucket(bucket: &str) {
    let url = format!("{}/{bucket}", s3_endpoint());
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", &url])
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && code.starts_with('2'), "PUT {url} answered {code:?}: {out:?}");
}

/// The test S3 server's bucket through object_store (credentials from scripts/servers.sh's env.sh).
#[allow(dead_code)]
pub fn s3_store(bucket: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::from_env()
        .with_endpoint(s3_endpoint())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(bucket)
        .with_virtual_hosted_style_request(false)
        .build()
        .expect("S3 store for tests")
}

/// Writes an object on the test S3 server.
#[allow(dead_code)]
pub async fn s3_put(bucket: &str, key: &str, body: &[u8]) {
    use object_store::ObjectStoreExt;
    s3_store(bucket).put(&key.into(), body.to_vec().into()).await.unwrap_or_else(|e| panic!("PUT {key}: {e}"));
}

/// Reads an object from the test S3 server; None when it does not exist.
#[allow(dead_code)]
pub async fn s3_get(bucket: &str, key: &str) -> Option<Vec<u8>> {
    use object_store::ObjectStoreExt;
    match s3_store(bucket).get(&key.into()).await {
        Ok(r) => Some(r.bytes().await.expect("body").to_vec()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("GET {key}: {e}"),
    }
}

/// A bucket name of this test only (S3 names: lower case, digits and `-`).
pub fn unique_bucket(name: &str) -> String {
    format!("t-{}-{:08x}", name.replace('_', "-"), rand::random::<u32>())
}

fn check_lake_script() -> PathBuf {
    std::env::var_os("MONGOLAKE_TEST_CHECK_LAKE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/check_lake.py"))
}

/// Runs check_lake.py on a lake (local path or s3://...); returns (passed, stdout, stderr).
pub fn check_lake(lake: &str, dump: bool) -> (bool, String, String) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(&python);
    cmd.arg(check_lake_script()).arg(lake);
    if dump {
        cmd.arg("--dump");
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {python} check_lake.py: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The lake as JSON (see check_lake.py --dump); panics when any check fails.
pub fn dump(lake: &str) -> Value {
    let (ok, out, err) = check_lake(lake, true);
    assert!(ok, "check_lake.py failed on {lake}:\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("check_lake.py --dump printed no JSON ({e}): {out}"))
}

/// One table of a dump; panics listing the tables that exist.
pub fn table<'a>(dump: &'a Value, db: &str, coll: &str) -> &'a Value {
    let name = format!("{db}/{coll}");
    dump["tables"].get(&name).unwrap_or_else(|| {
        let names: Vec<&String> = dump["tables"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
        panic!("table {name} is not in the lake; tables: {names:?}")
    })
}

pub fn rows(t: &Value) -> &Vec<Value> {
    t["rows"].as_array().expect("rows")
}

/// Rows by `_id`, asserting that every `_id` appears once.
pub fn rows_by_id(t: &Value) -> BTreeMap<String, &Value> {
    let mut out = BTreeMap::new();
    for r in rows(t) {
        let id = match &r["_id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => panic!("row without a string or number _id: {r}"),
        };
        if let Some(prev) = out.insert(id.clone(), r) {
            panic!("_id {id} appears more than once in the lake:\n{prev}\n{r}");
        }
    }
    out
}

pub fn column_type<'a>(t: &'a Value, column: &str) -> &'a str {
    t["columns"][column].as_str().unwrap_or_else(|| panic!("no column `{column}`; columns: {}", t["columns"]))
}

/// Exactly one file per partition directory (and one file when unpartitioned).
pub fn assert_one_file_per_partition(t: &Value) {
    let files = t["files"].as_u64().expect("files");
    let parts = t["partitions"].as_array().expect("partitions").len() as u64;
    assert_eq!(files, parts.max(1), "files vs partitions: {}", t["partitions"]);
}

/// The same tables, columns, partitions and rows in both dumps; reports the first difference.
pub fn assert_same_lake(expected: &Value, actual: &Value, what: &str) {
    let names = |d: &Value| -> BTreeSet<String> {
        d["tables"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    };
    assert_eq!(names(expected), names(actual), "{what}: tables differ");
    for name in names(expected) {
        let (e, a) = (&expected["tables"][&name], &actual["tables"][&name]);
        assert_eq!(e["columns"], a["columns"], "{what}: columns of {name} differ");
        assert_eq!(e["partitions"], a["partitions"], "{what}: partitions of {name} differ");
        assert_eq!(e["files"], a["files"], "{what}: file count of {name} differs");
        let (er, ar) = (rows(e), rows(a));
        for (x, y) in er.iter().zip(ar.iter()) {
            assert_eq!(x, y, "{what}: table {name}: first differing row");
        }
        assert_eq!(er.len(), ar.len(), "{what}: table {name}: row counts differ");
    }
}

/// The state file of a collection as (header, rows of column -> value).
pub fn state_rows(lake: &str, db: &str, coll: &str) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let path = Path::new(lake).join("_mongolake/state").join(db).join(format!("{coll}.csv"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().expect("state header").iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| {
            let r = r.expect("state row");
            header.iter().cloned().zip(r.iter().map(String::from)).collect()
        })
        .collect();
    (header, rows)
}

/// The state file's header. Its first seven columns are what issue 2's mongolake wrote (a public contract:
/// columns are only ever appended).
pub const STATE_HEADER: [&str; 11] = [
    "run_id",
    "started_at",
    "finished_at",
    "watermark",
    "rows_read",
    "rows_written",
    "status",
    "mode",
    "rows_deleted",
    "definitions",
    "layout",
];

/// The watermark of the newest state row, in epoch milliseconds.
pub fn watermark(lake: &str, db: &str, coll: &str) -> i64 {
    let (_, rows) = state_rows(lake, db, coll);
    let last = rows.last().unwrap_or_else(|| panic!("no state row for {db}.{coll}"));
    iso_millis(&last["watermark"])
}

/// Every regular file under a directory (recursively); empty when it does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The calendar date of an instant at a fixed offset east of UTC, `YYYY-MM-DD`.
pub fn date_at_offset(ms: i64, offset_minutes: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms + offset_minutes * 60_000)
        .expect("in range")
        .format("%Y-%m-%d")
        .to_string()
}

// ---------- the catalog: `mongolake ddl` and Spark reading through it ----------

/// `mongolake ddl --env ENV --config-dir DIR ARGS...`
#[allow(dead_code)]
pub fn ddl(p: &Project, env: &str, args: &[&str]) -> Run {
    let dir = p.path().to_str().expect("utf-8 path").to_string();
    let mut all = vec!["ddl", "--env", env, "--config-dir", dir.as_str()];
    all.extend_from_slice(args);
    run_binary(&all, p.path(), &[])
}

/// Writes `text` to `<project>/<name>` and returns the path.
#[allow(dead_code)]
pub fn save(p: &Project, name: &str, text: &str) -> PathBuf {
    let path = p.path().join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Runs spark_check.py; returns (passed, stdout, stderr).
#[allow(dead_code)]
pub fn spark_check(lake: &str, ddl_files: &[&Path], extra: &[&str]) -> (bool, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/spark_check.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python).args(["-c", "import pyspark"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "{python} cannot import pyspark (and Java 17 must be on PATH): run scripts/install-tools.sh; {probe:?}"
    );
    let mut cmd = Command::new(&python);
    cmd.arg(&script).arg("--lake").arg(lake).args(ddl_files).args(extra);
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {python} spark_check.py: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Row counts per table (`db.table`) as Spark read them; panics with Spark's errors when the check failed.
#[allow(dead_code)]
pub fn spark_rows(lake: &str, ddl_files: &[&Path]) -> BTreeMap<String, u64> {
    let (ok, out, err) = spark_check(lake, ddl_files, &[]);
    assert!(ok, "Spark could not read the lake through the DDL:\n{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("spark_check printed no JSON ({e}): {out}"));
    v["tables"]
        .as_object()
        .expect("tables")
        .iter()
        .map(|(k, t)| (k.clone(), t["rows"].as_u64().expect("rows")))
        .collect()
}
