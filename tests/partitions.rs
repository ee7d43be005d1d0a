//! Runaway partition counts: `partition_by` on `_id` (a typo) would make a partition per document. Past
//! `[sync] max_new_partitions` the collection fails before it writes anything, naming the key, the
//! collections.csv line and the fix, while the others sync; with the limit raised the run goes through and the
//! report and `mongolake check` warn of the many tiny partitions.
mod common;

use common::*;

#[tokio::test]
async fn too_many_new_partitions_fail_the_collection_before_it_writes() {
    let p = Project::new("parts");
    let c = client().await;
    let now = bson::DateTime::now();
    let docs: Vec<bson::Document> =
        (0..300).map(|i| bson::doc! { "_id": i, "modified_at": now, "created_at": now, "v": i }).collect();
    coll(&c, &p.db, "visits").insert_many(docs.clone()).await.unwrap();
    coll(&c, &p.db, "fine").insert_many(docs).await.unwrap();
    p.write_collections(&["{db},visits,modified_at,_id,", "{db},fine,modified_at,date(created_at),"]);
    let lake = p.local_env("env1", "UTC");
    p.set_sync("env1", "max_new_partitions = 200");
    let env_file = p.path().join("environments/env1.toml");
    let toml = std::fs::read_to_string(&env_file).unwrap() + "\n[report]\nsparse_partitions = 100\n";
    std::fs::write(&env_file, toml).unwrap();

    let run = p.sync("env1", &[]);
    run.assert_code(1);
    let out = &run.stdout;
    assert!(out.contains(&format!("FAILED {}.visits", p.db)), "{}", run.describe());
    for want in [
        "would create 300 new partitions",
        "max_new_partitions = 200",
        "has 300 distinct values",
        "line 2 of collections.csv",
        "Nothing was written",
        "likely fix: correct `partition_by`",
    ] {
        assert!(out.contains(want), "`{want}` missing:\n{out}");
    }
    // Nothing of the collection in the lake: no table, no state, no index, no schema.
    let root = std::path::Path::new(&lake);
    for dir in [
        root.join(&p.db).join("visits"),
        root.join("_mongolake/state").join(&p.db).join("visits.csv"),
        root.join("_mongolake/index").join(&p.db).join("visits"),
        root.join("_mongolake/schema").join(&p.db).join("visits.json"),
    ] {
        assert!(!dir.exists(), "{} was written", dir.display());
    }
    // The other collection synced.
    assert_eq!(state_rows(&lake, &p.db, "fine").1.len(), 1);

    // Raised (0: no limit), the run goes through, and the report warns of 300 partitions of one row.
    let toml =
        std::fs::read_to_string(&env_file).unwrap().replace("max_new_partitions = 200", "max_new_partitions = 0");
    std::fs::write(&env_file, toml).unwrap();
    let run = p.sync("env1", &[]);
    run.assert_ok();
    let warning = "300 partitions average 1.0 rows: partition key";
    assert!(run.stdout.contains("WARNINGS (1):") && run.stdout.contains(warning), "{}", run.describe());
    assert!(run.stdout.contains("on line 2 of collections.csv is probably too fine"), "{}", run.stdout);
    let dir = p.path().to_str().unwrap().to_string();
    let check = run_binary(&["check", "--env", "env1", "--config-dir", &dir], p.path(), &[]);
    let line = check.stdout.lines().find(|l| l.contains(&format!("partitions {}.visits", p.db)));
    assert!(line.is_some_and(|l| l.starts_with("warn") && l.contains(warning)), "{}", check.describe());
    assert!(!check.stdout.contains(&format!("partitions {}.fine", p.db)), "{}", check.stdout);
}
