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
