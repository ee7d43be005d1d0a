//! Bad configuration and unreachable servers: the exit codes (2 nothing could start, 1 some collection failed)
//! and messages an operator can act on. Needs the servers of scripts/test.sh.
mod common;

use bson::{doc, DateTime};
use common::*;
use std::path::Path;

/// A tiny collection `db.name` with documents in two facilities.
async fn small_collection(db: &str, name: &str) {
    let client = client().await;
    let now = now_millis() - 3_600_000;
    let docs: Vec<bson::Document> = (1..=4)
        .map(|i| {
            doc! {
                "_id": i, "facility_id": if i % 2 == 0 { "BLR01" } else { "DEL02" },
                "created_at": DateTime::from_millis(now), "modified_at": DateTime::from_millis(now),
            }
        })
        .collect();
    coll(&client, db, name).insert_many(docs).await.unwrap();
}

fn synced(lake: &str, db: &str, name: &str) -> bool {
    Path::new(lake).join("_mongolake/state").join(db).join(format!("{name}.csv")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_environment_lists_the_existing_ones() {
    let p = Project::new("cfg_env");
    p.write_collections(&["{db},things,modified_at,,"]);
    p.local_env("staging", "UTC");
    p.local_env("production", "UTC");
    let run = p.sync("prodution", &[]);
    run.assert_code(2);
    let text = run.text();
    assert!(text.contains("prodution"), "the message names the unknown environment: {}", run.describe());
    assert!(text.contains("staging") && text.contains("production"), "lists environments: {}", run.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_toml_key_is_named() {
    let p = Project::new("cfg_key");
    p.write_collections(&["{db},things,modified_at,,"]);
    let lake = p.path().join("lake");
    for (section, key) in [("sync", "timezon"), ("lake", "bucket_region"), ("mongodb", "connect_timeout")] {
        let mut toml = format!(
            "[mongodb]\nuri = \"{}\"\n\n[lake]\nurl = \"{}\"\n\n[sync]\ntimezone = \"UTC\"\n",
            mongo_uri(),
            lake.display()
        );
        toml = toml.replace(&format!("[{section}]\n"), &format!("[{section}]\n{key} = \"x\"\n"));
        p.write_env("typo", &toml);
        let run = p.sync("typo", &[]);
        run.assert_code(2);
        assert!(run.text().contains(key), "the message names `{key}`: {}", run.describe());
        assert!(!lake.join("_mongolake").exists(), "nothing may be written before the config is valid");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_password_is_refused_and_never_echoed() {
    let p = Project::new("cfg_pw");
    p.write_collections(&["{db},things,modified_at,,"]);
    let secret = "Sup3r-S3cret-pw";
    let lake = p.path().join("lake");
    let uri = mongo_uri();
    let with_password = uri.replacen("mongodb://", &format!("mongodb://ops:{secret}@"), 1);
    for toml in [
        format!(
            "[mongodb]\nuri = \"{uri}\"\nusername = \"ops\"\npassword = \"{secret}\"\n[lake]\nurl = \"{}\"\n",
            lake.display()
        ),
        format!("[mongodb]\nuri = \"{with_password}\"\n[lake]\nurl = \"{}\"\n", lake.display()),
    ] {
        p.write_env("leaky", &toml);
        let run = p.sync("leaky", &[]);
        run.assert_code(2);
        assert!(!run.text().contains(secret), "the password is echoed: {}", run.describe());
        assert!(run.text().to_lowercase().contains("password"), "the message says why: {}", run.describe());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_csv_row_fails_only_its_collection() {
    let p = Project::new("cfg_row");
    small_collection(&p.db, "good").await;
    small_collection(&p.db, "also_good").await;
    let text = format!(
        "# collections of the test\n{HEADER}\n\n{db},good,modified_at,facility_id,\n# a comment line\n\
         {db},bad,modified_at,a/b/c/d,\n{db},also_good,modified_at,date(created_at),\n",
        db = p.db
    );
    p.write_collections_text(&text);
    let lake = p.local_env("dev", "UTC");
    let run = p.sync("dev", &[]);
    run.assert_code(1);
    let out = run.text();
    assert!(out.contains("FAILED"), "{}", run.describe());
    // The bad row is on line 6 of the file.
    assert!(out.contains(":6:") || out.contains("line 6"), "the message gives line 6: {}", run.describe());
    assert!(synced(&lake, &p.db, "good") && synced(&lake, &p.db, "also_good"), "{}", run.describe());
    assert!(!synced(&lake, &p.db, "bad"));
    let dump = dump(&lake);
    assert_eq!(rows(table(&dump, &p.db, "good")).len(), 4);
    assert_eq!(rows(table(&dump, &p.db, "also_good")).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_csv_header_stops_the_run() {
    let p = Project::new("cfg_head");
    p.write_collections_text(&format!("database,collection,partition_by\n{},things,,\n", p.db));
    let lake = p.local_env("dev", "UTC");
    let run = p.sync("dev", &[]);
    run.assert_code(2);
    assert!(run.text().contains("timestamp_column"), "names the missing column: {}", run.describe());
    assert!(!Path::new(&lake).join("_mongolake/state").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_field_in_no_document_fails_that_collection() {
    let p = Project::new("cfg_part");
    small_collection(&p.db, "good").await;
    small_collection(&p.db, "typo").await;
    p.write_collections(&["{db},good,modified_at,facility_id,", "{db},typo,modified_at,facilty_id,"]);
    let lake = p.local_env("dev", "UTC");
    let run = p.sync("dev", &[]);
    run.assert_code(1);
    let failed = run
        .stdout
        .lines()
        .skip_while(|l| !l.contains(&format!("{}.typo", p.db)))
        .take(3)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        failed.contains("FAILED") && failed.contains("facilty_id"),
        "names collection and field: {}",
        run.describe()
    );
    assert!(synced(&lake, &p.db, "good"), "the other collection still syncs: {}", run.describe());
    assert!(!synced(&lake, &p.db, "typo"));
    assert!(!Path::new(&lake).join(&p.db).join("typo").exists(), "nothing written for the failed collection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_mongodb_fails_every_collection_clearly() {
    let p = Project::new("cfg_down");
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    p.write_collections(&["{db},one,modified_at,,", "{db},two,modified_at,,"]);
    let lake = p.path().join("lake");
    p.write_env(
        "down",
        &format!(
            "[mongodb]\nuri = \"mongodb://127.0.0.1:{port}/?directConnection=true\"\nconnect_timeout_seconds = 2\n\
             [lake]\nurl = \"{}\"\n",
            lake.display()
        ),
    );
    let started = std::time::Instant::now();
    let run = p.sync("down", &[]);
    assert!(matches!(run.code, Some(1) | Some(2)), "exit code 1 or 2: {}", run.describe());
    assert!(started.elapsed().as_secs() < 60, "gave up after {:?}", started.elapsed());
    let out = run.text();
    for name in ["one", "two"] {
        let full = format!("{}.{name}", p.db);
        assert!(out.contains(&full) || run.code == Some(2), "{full} not reported: {}", run.describe());
    }
    assert!(out.contains(&format!("127.0.0.1:{port}")), "the message names the server: {}", run.describe());
    assert!(!synced(lake.to_str().unwrap(), &p.db, "one"));
}

/// Issue 25.1: a listed collection that does not exist fails that collection (exit 1) with the closest names in
/// its database and the line of collections.csv; `check` says the same; a view syncs like a collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_collection_fails_with_the_closest_names_and_a_view_syncs() {
    let p = Project::new("cfg_missing");
    small_collection(&p.db, "visits").await;
    small_collection(&p.db, "Patients").await;
    let client = client().await;
    client
        .database(&p.db)
        .run_command(doc! { "create": "recent_visits", "viewOn": "visits", "pipeline": [{ "$match": { "_id": { "$gte": 2 } } }] })
        .await
        .unwrap();
    p.write_collections(&[
        "{db},visits,modified_at,facility_id,",
        "{db},vists,modified_at,facility_id,",
        "{db},patients,modified_at,facility_id,",
        "{db},recent_visits,modified_at,facility_id,",
    ]);
    let lake = p.local_env("dev", "UTC");
    let run = p.sync("dev", &[]);
    run.assert_code(1);
    let text = run.text();
    for (name, close, line) in [("vists", "visits", 3), ("patients", "Patients", 4)] {
        let want = format!("collection `{name}` does not exist in database `{}` (did you mean `{close}`?); correct line {line} of collections.csv", p.db);
        assert!(text.contains(&want), "wanted {want:?} in:\n{}", run.describe());
        assert!(!synced(&lake, &p.db, name), "{name} has no state");
    }
    assert!(synced(&lake, &p.db, "visits"), "the existing collection still synced");
    let dump = dump(&lake);
    assert_eq!(rows(table(&dump, &p.db, "recent_visits")).len(), 3, "the view's documents (_id >= 2) are read");

    let dir = p.path().to_str().unwrap().to_string();
    let check = run_binary(&["check", "--env", "dev", "--config-dir", &dir], p.path(), &[]);
    check.assert_code(1);
    let out = check.text();
    assert!(
        out.contains("did you mean `visits`?") && out.contains("line 3 of collections.csv"),
        "{}",
        check.describe()
    );
    assert!(out.lines().any(|l| l.contains("recent_visits") && l.contains("a view")), "{}", check.describe());
}
