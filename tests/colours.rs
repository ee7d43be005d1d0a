//! Log lines carry ANSI colours only on a terminal, and never with `NO_COLOR`: a sync whose output goes to a file
//! (cron, systemd, Kubernetes) writes no escape byte at all; the same sync on a pseudo-terminal (`script`) is
//! coloured, unless `NO_COLOR` is set.
mod common;

use common::*;
use std::process::{Command, Stdio};

/// Runs `mongolake ARGS` with stdout and stderr to files; returns both, raw (escapes kept).
fn raw_run(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mongolake"));
    cmd.args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let status = cmd.status().expect("running mongolake");
    (status.code(), std::fs::read(out.path()).unwrap(), std::fs::read(err.path()).unwrap())
}

/// Runs `mongolake ARGS` on a pseudo-terminal (util-linux `script`); returns what the terminal showed.
fn tty_run(args: &[&str], envs: &[(&str, &str)]) -> Vec<u8> {
    let bin = env!("CARGO_BIN_EXE_mongolake");
    let line = std::iter::once(bin).chain(args.iter().copied()).map(shell_quote).collect::<Vec<_>>().join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"]).env_remove("NO_COLOR").env("TERM", "xterm").stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running script(1): util-linux is needed");
    assert!(out.status.success(), "{line} on a terminal: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stdout));
    out.stdout
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// SGR sequences (`ESC [ ... m`): colours and text attributes, not cursor movement.
fn sgr_count(bytes: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == 0x1b && bytes[i + 1] == b'[' {
            let mut j = i + 2;
            while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == b';') {
                j += 1;
            }
            if bytes.get(j) == Some(&b'm') {
                n += 1;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    n
}

#[tokio::test]
async fn logs_are_plain_off_a_terminal_and_with_no_color() {
    let p = Project::new("colours");
    let c = client().await;
    let now = bson::DateTime::now();
    let docs: Vec<bson::Document> =
        (0..20).map(|i| bson::doc! { "_id": i, "modified_at": now, "created_at": now }).collect();
    coll(&c, &p.db, "things").insert_many(docs).await.unwrap();
    p.write_collections(&["{db},things,modified_at,date(created_at),"]);
    p.local_env("env1", "UTC");
    let dir = p.path().to_str().unwrap().to_string();
    let args = ["sync", "--env", "env1", "--config-dir", dir.as_str(), "--no-email"];

    for envs in [&[][..], &[("NO_COLOR", "1")][..]] {
        let (code, out, err) = raw_run(&args, envs);
        assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
        assert!(String::from_utf8_lossy(&err).contains("Collection synced"), "log lines were written");
        assert!(!err.contains(&0x1b), "ESC in stderr written to a file ({envs:?}):\n{}", String::from_utf8_lossy(&err));
        assert!(!out.contains(&0x1b), "ESC in stdout written to a file ({envs:?})");
    }
    // A JSON log written to a file: no escapes either.
    let mut json_args = args.to_vec();
    json_args.extend(["--log-format", "json"]);
    let (_, _, err) = raw_run(&json_args, &[]);
    assert!(!err.contains(&0x1b) && String::from_utf8_lossy(&err).contains("\"Collection synced\""));

    // On a terminal the log lines are coloured; NO_COLOR turns the colours off there too.
    let coloured = tty_run(&args, &[]);
    assert!(String::from_utf8_lossy(&coloured).contains("Collection synced"));
    assert!(sgr_count(&coloured) > 0, "a terminal gets colours:\n{}", String::from_utf8_lossy(&coloured));
    let plain = tty_run(&args, &[("NO_COLOR", "1")]);
    assert!(String::from_utf8_lossy(&plain).contains("Collection synced"));
    assert_eq!(sgr_count(&plain), 0, "NO_COLOR on a terminal:\n{:?}", String::from_utf8_lossy(&plain));
}
