//! The run report reaches a real SMTP server (scripts/smtp_capture.py, started by scripts/test.sh) as valid
//! MIME carrying that run's numbers; a mail failure keeps the data and turns the exit code to 1.
use std::path::Path;
use std::process::Command;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/test.sh, which starts the servers"))
}

async fn seed(uri: &str, db: &str, n: i64) {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let now = bson::DateTime::now();
    let docs: Vec<bson::Document> =
        (0..n).map(|i| bson::doc! { "_id": i, "modified_at": now, "created_at": now, "v": i }).collect();
    client.database(db).collection::<bson::Document>("things").insert_many(docs).await.unwrap();
}

fn config(dir: &Path, db: &str, smtp_port: &str) {
    std::fs::create_dir_all(dir.join("environments")).unwrap();
    std::fs::write(
        dir.join("collections.csv"),
        format!("database,collection,timestamp_column,partition_by\n{db},things,modified_at,\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("environments/mail.toml"),
        format!(
            "[mongodb]\nuri = \"{}\"\n[lake]\nurl = \"lake\"\n[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\nfrom = \"mongolake@example.org\"\nto = [\"ops-{db}@example.org\"]\ntls = \"none\"\n",
            var("MONGOLAKE_TEST_MONGO_URI")
        ),
    )
    .unwrap();
}

fn sync(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mongolake"))
        .args(["sync", "--env", "mail", "--config-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

#[tokio::test]
async fn report_is_mailed_as_mime_with_the_runs_numbers() {
    let db = format!("t_mail_{}", rand::random::<u32>());
    seed(&var("MONGOLAKE_TEST_MONGO_URI"), &db, 37).await;
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &db, &var("MONGOLAKE_TEST_SMTP_PORT"));
    let out = sync(dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let maildir = var("MONGOLAKE_TEST_SMTP_DIR");
    let index = std::fs::read_to_string(Path::new(&maildir).join("index.jsonl")).unwrap();
    let entry: serde_json::Value = index
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["rcpt_tos"][0] == format!("ops-{db}@example.org"))
        .expect("a message to this test's recipient");
    assert_eq!(entry["subject"], "[mail] mongolake: all 1 synced");
    let raw = std::fs::read_to_string(Path::new(&maildir).join(entry["file"].as_str().unwrap())).unwrap();
    assert!(
        raw.contains("multipart/alternative") && raw.contains("text/html") && raw.contains("application/json"),
        "{raw}"
    );
    assert!(raw.contains(&format!("{db}.things")), "the report names the collection");
    assert!(raw.contains("\"docs_read\": 37"), "the JSON attachment carries the run's numbers");
}

#[tokio::test]
async fn unsendable_report_keeps_the_data_and_exits_1() {
    let db = format!("t_mailfail_{}", rand::random::<u32>());
    seed(&var("MONGOLAKE_TEST_MONGO_URI"), &db, 5).await;
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &db, "1"); // nothing listens on port 1
    let out = sync(dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("COULD NOT BE EMAILED"));
    let state = std::fs::read_to_string(dir.path().join(format!("lake/_mongolake/state/{db}/things.csv"))).unwrap();
    assert_eq!(state.lines().count(), 2, "the watermark advanced: the data is written");
    let runs = std::fs::read_dir(dir.path().join("lake/_mongolake/runs")).unwrap().count();
    assert_eq!(runs, 1, "the report is in the lake");
}

/// Our own instance of scripts/smtp_capture.py offering STARTTLS (required) on one port and implicit TLS on
/// another, with a certificate from the test CA (scripts/servers.sh) and AUTH required for user `ops`.
struct TlsCapture {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
}

impl Drop for TlsCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tls_capture(password: &str) -> TlsCapture {
    let dir = tempfile::tempdir().unwrap();
    let (port, tls_port) = (free_port(), free_port());
    let log = dir.path().join("capture.log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/smtp_capture.py");
    let child = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg("-u")
        .arg(script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--tls-port", &tls_port.to_string()])
        .arg("--dir")
        .arg(dir.path().join("mail"))
        .args([
            "--cert",
            &var("MONGOLAKE_TEST_TLS_CERT"),
            "--key",
            &var("MONGOLAKE_TEST_TLS_KEY"),
            "--require-starttls",
        ])
        .args(["--auth-user", "ops", "--auth-password-env", "CAPTURE_PASSWORD"])
        .env("CAPTURE_PASSWORD", password)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("capture.err")).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("listening on") {
        assert!(started.elapsed().as_secs() < 30, "smtp_capture.py did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    TlsCapture { child, dir, port, tls_port }
}

impl TlsCapture {
    /// The index line and raw message sent to `rcpt`.
    fn message_to(&self, rcpt: &str) -> Option<(serde_json::Value, String)> {
        let mail = self.dir.path().join("mail");
        let index = std::fs::read_to_string(mail.join("index.jsonl")).unwrap_or_default();
        let e = index
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["rcpt_tos"][0] == rcpt)?;
        let raw = std::fs::read_to_string(mail.join(e["file"].as_str().unwrap())).unwrap();
        Some((e, raw))
    }
}

fn tls_env(dir: &Path, name: &str, port: u16, tls: &str, rcpt: &str, extra: &str) {
    std::fs::write(
        dir.join(format!("environments/{name}.toml")),
        format!(
            "[mongodb]\nuri = \"{}\"\n[lake]\nurl = \"lake\"\n[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
             from = \"mongolake@example.org\"\nto = [\"{rcpt}\"]\ntls = \"{tls}\"\nusername = \"ops\"\n\
             password = {{ env = \"OPS_MAIL_PASSWORD\" }}\n{extra}",
            var("MONGOLAKE_TEST_MONGO_URI")
        ),
    )
    .unwrap();
}

fn run(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mongolake"))
        .args(args)
        .arg("--config-dir")
        .arg(dir)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn report_goes_over_starttls_and_implicit_tls_with_auth_verified_against_a_private_ca() {
    let db = format!("t_mailtls_{}", rand::random::<u32>());
    seed(&var("MONGOLAKE_TEST_MONGO_URI"), &db, 12).await;
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &db, "1");
    let pw = format!("pw-{}", rand::random::<u64>());
    let cap = tls_capture(&pw);
    let ca = format!("tls_ca_file = \"{}\"\n", var("MONGOLAKE_TEST_TLS_CA"));
    let envs = [("OPS_MAIL_PASSWORD", pw.as_str())];

    let rcpt = format!("starttls-{db}@example.org");
    tls_env(dir.path(), "st", cap.port, "starttls", &rcpt, &format!("{ca}attach_json = false\n"));
    let (code, _, err) = run(dir.path(), &["sync", "--env", "st"], &envs);
    assert_eq!(code, Some(0), "{err}");
    let (entry, raw) = cap.message_to(&rcpt).expect("mail over STARTTLS");
    assert_eq!((entry["tls"].as_bool(), entry["auth_user"].as_str()), (Some(true), Some("ops")), "{entry}");
    assert!(raw.contains("multipart/alternative") && raw.contains("text/html"), "{raw}");
    assert!(!raw.contains("application/json"), "attach_json = false attaches nothing: {raw}");
    let html = mail_html(&raw);
    assert!(
        html.contains("<table") && html.contains("documents read") && html.contains("<td align=\"right\">12</td>"),
        "{html}"
    );

    let rcpt = format!("implicit-{db}@example.org");
    tls_env(dir.path(), "im", cap.tls_port, "tls", &rcpt, &ca);
    let (code, _, err) = run(dir.path(), &["sync", "--env", "im"], &envs);
    assert_eq!(code, Some(0), "{err}");
    let (entry, raw) = cap.message_to(&rcpt).expect("mail over implicit TLS");
    assert_eq!((entry["tls"].as_bool(), entry["auth_user"].as_str()), (Some(true), Some("ops")), "{entry}");
    assert!(raw.contains("application/json"), "the JSON report is attached by default");

    let (code, out, _) = run(dir.path(), &["check", "--env", "st"], &envs);
    assert!(out.lines().any(|l| l.starts_with("ok") && l.contains("STARTTLS, authenticated")), "{out}");
    assert_eq!(code, Some(0), "{out}");

    // Without the private CA the server's certificate is not trusted: nothing is sent, exit 1, data kept.
    let rcpt = format!("untrusted-{db}@example.org");
    tls_env(dir.path(), "un", cap.port, "starttls", &rcpt, "");
    let (code, _, err) = run(dir.path(), &["sync", "--env", "un"], &envs);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("COULD NOT BE EMAILED") && err.to_lowercase().contains("certificate"), "{err}");
    assert!(cap.message_to(&rcpt).is_none());
    // A wrong password is refused by the server and never echoed.
    let rcpt = format!("wrongpw-{db}@example.org");
    tls_env(dir.path(), "wp", cap.port, "starttls", &rcpt, &ca);
    let (code, out, err) = run(dir.path(), &["sync", "--env", "wp"], &[("OPS_MAIL_PASSWORD", "not-the-password-xyz")]);
    assert_eq!(code, Some(1));
    assert!(!format!("{out}{err}").contains("not-the-password-xyz"), "{err}");
}

/// The decoded HTML part of a raw message.
fn mail_html(raw: &str) -> String {
    let out = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .args(["-c", "import email,email.policy,sys; m=email.message_from_string(sys.stdin.read(), policy=email.policy.default); print(m.get_body(('html',)).get_content())"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(raw.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every way a secret could leak, looked for: plain, and as the base64 an SMTP AUTH PLAIN/LOGIN exchange or a
/// basic-auth header would carry it.
fn assert_no_secret(secrets: &[&str], what: &str, text: &str) {
    use base64::Engine;
    for s in secrets {
        let b64 = base64::engine::general_purpose::STANDARD;
        for needle in [s.to_string(), b64.encode(s), b64.encode(format!("\0ops\0{s}"))] {
            assert!(!text.contains(&needle), "{what} contains a secret ({needle}):\n{text}");
        }
    }
}

#[tokio::test]
async fn no_secret_appears_in_logs_output_reports_or_mail() {
    let db = format!("t_secrets_{}", rand::random::<u32>());
    seed(&var("MONGOLAKE_TEST_MONGO_URI"), &db, 9).await;
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), &db, "1");
    let (mail_pw, s3_secret, mongo_pw) = (
        format!("mailpw{}", rand::random::<u64>()),
        format!("s3secret{}", rand::random::<u64>()),
        format!("mongopw{}", rand::random::<u64>()),
    );
    let secrets = [mail_pw.as_str(), s3_secret.as_str(), mongo_pw.as_str()];
    let cap = tls_capture(&mail_pw);
    let bucket = format!("t-secrets-{:08x}", rand::random::<u32>());
    let created = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-X", "PUT", &format!("{}/{bucket}", var("MONGOLAKE_TEST_S3_ENDPOINT"))])
        .status()
        .unwrap();
    assert!(created.success());
    let rcpt = format!("secrets-{db}@example.org");
    let lake = format!(
        "[lake]\nurl = \"s3://{bucket}/lake\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nallow_http = true\n\
         access_key_id = {{ env = \"OPS_S3_KEY\" }}\nsecret_access_key = {{ env = \"OPS_S3_SECRET\" }}\n",
        var("MONGOLAKE_TEST_S3_ENDPOINT")
    );
    let email = format!(
        "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nfrom = \"m@example.org\"\nto = [\"{rcpt}\"]\n\
         username = \"ops\"\npassword = {{ env = \"OPS_MAIL_PASSWORD\" }}\ntls_ca_file = \"{}\"\n",
        cap.port,
        var("MONGOLAKE_TEST_TLS_CA")
    );
    let write = |name: &str, mongo: &str| {
        std::fs::write(dir.path().join(format!("environments/{name}.toml")), format!("{mongo}{lake}{email}")).unwrap()
    };
    write("good", &format!("[mongodb]\nuri = \"{}\"\n", var("MONGOLAKE_TEST_MONGO_URI")));
    // A password inside a URI that comes from a variable (allowed there), and one as [mongodb] password.
    let uri_with_pw = var("MONGOLAKE_TEST_MONGO_URI").replace("mongodb://", &format!("mongodb://ops:{mongo_pw}@"));
    write("uripw", "[mongodb]\nuri = { env = \"OPS_MONGO_URI\" }\n");
    write(
        "userpw",
        &format!(
            "[mongodb]\nuri = \"{}\"\nusername = \"ops\"\npassword = {{ env = \"OPS_MONGO_PASSWORD\" }}\n",
            var("MONGOLAKE_TEST_MONGO_URI")
        ),
    );
    let envs = [
        ("OPS_MAIL_PASSWORD", mail_pw.as_str()),
        ("OPS_S3_KEY", "test"),
        ("OPS_S3_SECRET", s3_secret.as_str()),
        ("OPS_MONGO_URI", uri_with_pw.as_str()),
        ("OPS_MONGO_PASSWORD", mongo_pw.as_str()),
        ("MONGOLAKE_LOG", "debug"),
    ];
    let (code, out, err) = run(dir.path(), &["sync", "--env", "good"], &envs);
    assert_eq!(code, Some(0), "{err}");
    assert_no_secret(&secrets, "sync output", &format!("{out}{err}"));
    let (_, raw) = cap.message_to(&rcpt).expect("the report was mailed");
    assert_no_secret(&secrets, "the mail", &raw);
    let (code, out, err) = run(dir.path(), &["check", "--env", "good"], &envs);
    assert_eq!(code, Some(0), "collection `things` exists, without an index: a warning only; {out}");
    assert_no_secret(&secrets, "check output", &format!("{out}{err}"));
    for env in ["uripw", "userpw"] {
        for cmd in ["check", "sync", "status"] {
            let (_, out, err) = run(dir.path(), &[cmd, "--env", env], &envs);
            assert_no_secret(&secrets, &format!("{cmd} --env {env}"), &format!("{out}{err}"));
        }
    }
    // Every object in the lake (run reports, state, schema) is free of secrets too.
    let listing = Command::new("curl")
        .arg("-s")
        .arg(format!("{}/{bucket}?list-type=2", var("MONGOLAKE_TEST_S3_ENDPOINT")))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let keys: Vec<&str> = listing.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).collect();
    assert!(keys.iter().any(|k| k.contains("_mongolake/runs/")), "{listing}");
    for k in keys {
        let body = Command::new("curl")
            .arg("-s")
            .arg(format!("{}/{bucket}/{k}", var("MONGOLAKE_TEST_S3_ENDPOINT")))
            .output()
            .unwrap();
        assert_no_secret(&secrets, k, &String::from_utf8_lossy(&body.stdout));
    }
}
