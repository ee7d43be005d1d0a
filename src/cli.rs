//! The command line (a public contract: schedulers call it). `main` parses, builds a validated config, runs,
//! and maps the outcome to the exit code: 0 every collection synced, 1 any collection failed (or the report
//! could not be mailed), 2 nothing could start.
use crate::config::Config;
use crate::progress::Board;
use crate::sync::SyncOptions;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "mongolake", version, about = "Keep a Hive-partitioned Parquet lake (S3 or local disk) in step with MongoDB", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format: `text` (default) or `json` (one JSON object per line, for log shippers).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sync the listed collections into the lake (incremental from each collection's watermark).
    #[command(
        after_help = "Examples:\n  mongolake sync --env env1\n  mongolake sync --env env1 --config-dir /etc/mongolake --only hims.visits,hims.bills\n  mongolake sync --env env1 --full\n  mongolake sync --env env1 --reconcile   (also remove rows of documents deleted in MongoDB)\n\nExit codes: 0 all collections synced, 1 some failed (the others synced), 2 nothing could start."
    )]
    Sync {
        /// Environment name: reads <config-dir>/environments/<env>.toml.
        #[arg(long)]
        env: String,
        /// Directory holding collections.csv and environments/.
        #[arg(long, default_value = ".")]
        config_dir: PathBuf,
        /// Only these collections (`db.coll`, comma-separated).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Sync only this worker's share of the collections: K of N workers, K from 0 (a Kubernetes Indexed Job
        /// passes `--shard $JOB_COMPLETION_INDEX/N`). Every collection belongs to exactly one K; leases keep two
        /// workers off one collection anyway. A first load of at least `[sync] shard_ranges_min_docs` documents
        /// is shared by all N workers in `_id` ranges: start them together.
        #[arg(long, value_name = "K/N", value_parser = crate::config::Shard::parse)]
        shard: Option<crate::config::Shard>,
        /// Ignore watermarks and reload every collection from scratch (existing rows are merged, not duplicated).
        #[arg(long)]
        full: bool,
        /// Also compare key sets with MongoDB: remove rows of deleted documents, fetch documents the timestamp
        /// query cannot see (no timestamp field, written late). Reads every key once; schedule it with
        /// `[sync] reconcile_every_days` or run it weekly.
        #[arg(long)]
        reconcile: bool,
        /// Wait up to this many seconds for a collection another run is syncing (its lease), then skip it.
        #[arg(long, default_value_t = 0, value_name = "SECONDS")]
        lease_wait: u64,
        /// Do not send the email report.
        #[arg(long)]
        no_email: bool,
        /// Read from MongoDB and show, per collection, what would be read, which partitions would be rewritten
        /// and whether the schema would widen; write nothing to the lake (no lease, no state, no run report)
        /// and send no email.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print each collection's sync status from the lake: last successful run, watermark, lag, rows, last error.
    #[command(after_help = "Reads only the lake (state files, key indexes, the newest run reports); needs no MongoDB.

Examples:
  mongolake status --env env1
  mongolake status --env env1 --json | jq '.[] | select(.lag_seconds > 90000)'

Exit codes: 0 printed and every collection's last run succeeded, 1 some collection's last run failed, 2 bad config or unreadable lake.")]
    Status {
        #[arg(long)]
        env: String,
        #[arg(long, default_value = ".")]
        config_dir: PathBuf,
        /// One JSON array (one object per collection) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Check everything tonight's sync needs: config, secrets, MongoDB and each collection's index, the lake, SMTP.
    #[command(
        after_help = "One line per check: `ok`, `warn` (works, should be fixed) or `FAIL` (the run would fail), with how to fix it. Writes only a probe object to the lake (deleted again) and sends no mail.

Example:
  mongolake check --env env1

Exit codes: 0 no FAIL (warnings allowed), 1 some check failed, 2 the configuration cannot be loaded."
    )]
    Check {
        #[arg(long)]
        env: String,
        #[arg(long, default_value = ".")]
        config_dir: PathBuf,
    },
    /// Print each collection's lake schema: columns with their source fields and types, version and history.
    Schema {
        #[arg(long)]
        env: String,
        #[arg(long, default_value = ".")]
        config_dir: PathBuf,
        /// Only this collection (`db.coll`); default: every listed collection.
        collection: Option<String>,
    },
    /// Widen a column on purpose: its variant columns (`<column>__v_<kind>`) join it, and the next sync rewrites
    /// every partition file of the table once with the wider type.
    #[command(
        after_help = "Type-stable columns keep a column's type and put values that do not fit into variant columns beside it (`amount__v_text`). When the wider type is what you want, `widen` joins the variants into the column (text for a mix of kinds, double for integers and doubles), records it in the schema history and marks the table for a rewrite, which the next `sync` of the collection does (every partition file, once). Needs no MongoDB. Takes the collection's lease: while a sync holds it, `widen` changes nothing and names the holder (exit 2); run it again after.\n\n\
Example:\n  mongolake widen --env env1 --collection hims.bills --column amount\n  mongolake sync --env env1 --only hims.bills"
    )]
    Widen {
        #[arg(long)]
        env: String,
        #[arg(long, default_value = ".")]
        config_dir: PathBuf,
        /// The collection (`db.coll`).
        #[arg(long)]
        collection: String,
        /// The top-level column to widen.
        #[arg(long)]
        column: String,
    },
    /// Print each collection's Athena table definition (or Glue TableInput, or views) from the schema stored in the lake.
    ///
    /// A CREATE EXTERNAL TABLE with partition projection (or the JSON `aws glue create-table` takes), from the
    /// schema and partitions stored in the lake. Needs no MongoDB.
    #[command(
        after_help = "The same text is kept next to each schema in the lake (`_mongolake/schema/<db>/<coll>.athena.sql`, `.glue.json` and `.views.sql`), rewritten by a sync only when it changes. Column types are exactly those of the Parquet files; date(...) partitions are projected from the earliest date in the lake, field partitions list the values seen (or are `injected` past [catalog] enum_max_values). A changed schema is applied with DROP TABLE, then the new CREATE: the table is EXTERNAL, dropping it deletes no data.\n\n\
Examples:\n  \
mongolake ddl --env env1 > tables.sql                      # every listed collection, Athena SQL\n  \
mongolake ddl --env env1 hims.visits                       # one collection\n  \
mongolake ddl --env env1 hims.visits --format glue > visits.json\n  \
mongolake ddl --env env1 --format views > views.sql          # the views, after the tables exist\n  \
aws glue create-table --database-name hims --table-input file://visits.json\n\n\
Names: the table is the collection name (lower case, [a-z0-9_]) with [catalog] table_prefix, in [catalog] database \
(default: the MongoDB database name). Exit codes: 0 printed (collections not synced yet are noted), 1 a stored \
schema is unreadable, 2 bad config or lake."
    )]
    Ddl {
        /// Environment name: reads <config-dir>/environments/<env>.toml.
        #[arg(long)]
        env: String,
        /// Directory holding collections.csv and environments/.
        #[arg(long, default_value = ".")]
        config_dir: PathBuf,
        /// Only this collection (`db.coll`); default: every listed collection.
        collection: Option<String>,
        /// `athena`: SQL statements (collections not synced yet appear as `--` comments); `glue`: one Glue
        /// TableInput JSON object per collection (notes go to stderr); `views`: each table's Athena views (the flat
        /// view and one per array, for QuickSight, which skips array and struct columns), as a sync keeps them.
        #[arg(long, default_value = "athena", value_parser = ["athena", "glue", "views"])]
        format: String,
    },
    /// Re-lay a collection's table in the layout collections.csv and the environment now give it, from the lake's
    /// own files (no reload from MongoDB).
    ///
    /// Each sync compares a collection's partition_by, [sync] timezone, key and timestamp_column with those the
    /// lake recorded, and refuses the collection when they differ (a table must never mix two layouts). This
    /// command applies the change: every row of every partition file is read back, placed by the new settings,
    /// written as the new layout's files, moved into the table, and the old files removed; the key index is
    /// rebuilt and the new settings recorded last.
    #[command(
        after_help = "Example (collections.csv changed hims.visits from facility_id/date(created_at) to date(created_at)):
  mongolake sync --env env1          # hims.visits FAILED: partition_by was `facility_id/date(created_at)`, now ...
  mongolake relayout --env env1 --collection hims.visits
  mongolake sync --env env1          # syncs again, in the new layout

Needs no MongoDB; holds the collection's lease (a sync of it waits or skips). Crash-safe: the intent is written to
the lake first (`_mongolake/layout/<db>/<coll>.json`), the new files are written outside the table, and a rerun of
this command after a crash finishes the job; until then syncs of the collection refuse to run. While the files
move (after every new file is written), a reader of the table may see some rows twice or miss some; before, it
sees the old layout, after, the new one. A timestamp_column change alone rewrites nothing: the next sync re-reads
the whole collection.

Exit codes: 0 every named collection re-laid (or nothing to do), 1 some failed (the others ran), 2 bad config."
    )]
    Relayout {
        /// Environment name: reads <config-dir>/environments/<env>.toml.
        #[arg(long)]
        env: String,
        /// Directory holding collections.csv and environments/.
        #[arg(long, default_value = ".")]
        config_dir: PathBuf,
        /// The collections to re-lay (`db.coll`, comma-separated or repeated).
        #[arg(long, value_delimiter = ',', required = true)]
        collection: Vec<String>,
    },
    /// Seed a MongoDB database with realistic, messy hospital data (demo and benchmarks).
    Seed {
        #[arg(long, env = "MONGOLAKE_SEED_URI")]
        uri: String,
        #[arg(long, default_value = "hims")]
        db: String,
        /// Documents per collection.
        #[arg(long, default_value_t = 10_000)]
        docs: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Spread creation times over this many days before now.
        #[arg(long, default_value_t = 60)]
        days: u32,
    },
    /// Apply a deterministic round of updates and inserts to seeded data (demo and benchmarks).
    Mutate {
        #[arg(long, env = "MONGOLAKE_SEED_URI")]
        uri: String,
        #[arg(long, default_value = "hims")]
        db: String,
        /// Share of documents updated, and of new documents inserted, per collection.
        #[arg(long, default_value_t = 0.01)]
        fraction: f64,
        /// The seed the data was created with (`seed --seed`): document ids are derived from it.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 60)]
        days: u32,
        /// Change only the newest documents, as a hospital's day does: updates fall among the newest RECENT share
        /// of each collection (e.g. 0.02) and new documents are created now, so few partitions are touched.
        /// Default: updates anywhere, new documents over the whole date range.
        #[arg(long, value_name = "RECENT")]
        recent: Option<f64>,
    },
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MONGOLAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Through the progress display's writer: log lines go above the bars instead of through them. Colours only
    // on a terminal, and never with NO_COLOR (a file, journald or a Kubernetes log gets plain text).
    let colour = format == "text" && crate::progress::colour_wanted(std::io::stderr().is_terminal(), no_color());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(crate::progress::LogWriter).with_ansi(colour);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `NO_COLOR` set to anything but the empty string (<https://no-color.org>).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let terminal = cli.log_format == "text" && std::io::stderr().is_terminal();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(cli.command, terminal))
}

async fn run(command: Command, terminal: bool) -> ExitCode {
    match command {
        Command::Status { env, config_dir, json } => run_status(&config_dir, &env, json).await,
        Command::Check { env, config_dir } => {
            let config = match Config::load(&config_dir, &env) {
                Ok(c) => c,
                Err(e) => {
                    println!("FAIL  {:<36} {e}", "config");
                    return ExitCode::from(2);
                }
            };
            let lines = crate::ops::check::run(&config).await;
            let fails = lines.iter().filter(|l| l.level == crate::ops::check::Level::Fail).count();
            let warns = lines.iter().filter(|l| l.level == crate::ops::check::Level::Warn).count();
            println!("\n{} checks: {} FAIL, {warns} warn", lines.len(), fails);
            ExitCode::from(if fails > 0 { 1 } else { 0 })
        }
        Command::Sync { env, config_dir, only, shard, full, reconcile, lease_wait, no_email, dry_run } => {
            let mut config = match Config::load(&config_dir, &env) {
                Ok(c) => c,
                Err(e) => return fatal(e),
            };
            if let Err(e) = config.restrict_to(&only) {
                return fatal(e);
            }
            // (every listed collection, before this worker keeps its share: it helps with the others' loads)
            let all_specs = config.collections.entries.clone();
            if let Some(shard) = shard {
                config.restrict_to_shard(shard);
                tracing::info!(shard = %format!("{}/{}", shard.index, shard.count), collections = config.collections.entries.len(), "This worker's share");
            }
            let board = Arc::new(Board::default());
            let ticker = tokio::spawn(crate::progress::display(board.clone(), terminal));
            let options = SyncOptions {
                full,
                reconcile,
                dry_run,
                lease_wait: std::time::Duration::from_secs(lease_wait),
                shard: shard.map(|s| (s, all_specs)),
            };
            let outcome = crate::sync::run(&config, &options, board).await;
            ticker.abort();
            let _ = ticker.await;
            let report = match outcome {
                Ok(r) => r,
                Err(e) => return fatal(e),
            };
            println!("{}", report.to_text());
            let mut code = if report.collections_failed > 0 { 1 } else { 0 };
            if let (Some(email), false) = (&config.environment.email, no_email || dry_run) {
                match crate::report::email::send(email, &report).await {
                    Ok(true) => tracing::info!(to = ?email.to, "Report emailed"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "THE RUN REPORT COULD NOT BE EMAILED; the data is written and the report is in the lake");
                        code = 1;
                    }
                }
            }
            ExitCode::from(code)
        }
        Command::Schema { env, config_dir, collection } => {
            let (config, lake) = match config_and_lake(&config_dir, &env, collection) {
                Ok(c) => c,
                Err(e) => return fatal(e),
            };
            for spec in &config.collections.entries {
                match crate::schema::registry::load(&lake, &spec.database, &spec.collection).await {
                    Ok(Some(s)) => println!("{}", s.to_text()),
                    Ok(None) => println!(
                        "{}: not synced yet (no {})\n",
                        spec.name(),
                        lake.display(&lake.schema_path(&spec.database, &spec.collection))
                    ),
                    Err(e) if e.is_encoding() => eprintln!("{}: unreadable {e}", spec.name()),
                    Err(e) => return fatal(e),
                }
            }
            ExitCode::SUCCESS
        }
        Command::Relayout { env, config_dir, collection } => run_relayout(&config_dir, &env, &collection).await,
        Command::Widen { env, config_dir, collection, column } => {
            let (config, lake) = match config_and_lake(&config_dir, &env, Some(collection.clone())) {
                Ok(c) => c,
                Err(e) => return fatal(e),
            };
            let Some(spec) = config.collections.entries.first() else {
                eprintln!("error: {collection} is not listed in collections.csv");
                return ExitCode::from(2);
            };
            let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
            // Under the collection's lease, so that no sync runs meanwhile, left marked: the next sync reads the
            // schema file again (see state::lease and sync::collection's SchemaSource).
            let run_id = crate::sync::new_run_id();
            let ttl = config.environment.sync.lease;
            let held =
                match crate::state::lease::take_for_command(&lake, db, coll, &run_id, ttl, "`mongolake widen`").await {
                    Ok(l) => l,
                    Err(e) => return fatal(e),
                };
            let loaded = crate::schema::registry::load(&lake, db, coll).await;
            let mut schema = match loaded {
                Ok(Some(s)) => s,
                Ok(None) => {
                    held.release(false).await;
                    eprintln!("error: {collection} has not been synced yet: nothing to widen");
                    return ExitCode::from(2);
                }
                Err(e) => {
                    held.release(false).await;
                    return fatal(e);
                }
            };
            let at = crate::schema::text::format_millis(chrono::Utc::now().timestamp_millis());
            let widened = schema.widen_column(&column, &run_id, at);
            let written = match &widened {
                Ok(_) => lake.put(&lake.schema_path(db, coll), crate::schema::registry::to_json(&schema).into()).await,
                Err(_) => Ok(()),
            };
            held.release(false).await;
            match widened {
                Ok(changes) => {
                    if let Err(e) = written {
                        return fatal(e);
                    }
                    for c in changes {
                        println!("{collection}: {c}");
                    }
                    println!(
                        "The next `mongolake sync --env {env}` rewrites every partition file of {collection} once."
                    );
                    ExitCode::SUCCESS
                }
                Err(why) => {
                    eprintln!("error: {collection}: {why}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Ddl { env, config_dir, collection, format } => run_ddl(&config_dir, &env, collection, &format).await,
        Command::Seed { uri, db, docs, seed, days } => {
            let opts = crate::generator::GenOptions { seed, docs, end: chrono::Utc::now(), days };
            let client = match mongodb::Client::with_uri_str(&uri).await {
                Ok(c) => c,
                Err(e) => return fatal(crate::Error::mongo(crate::source::redact_uri(&uri), e)),
            };
            let outcome = crate::generator::seed(&client, &db, &opts).await;
            // Shut the driver down inside the runtime (see sync::run): dropping it at exit can panic.
            client.shutdown().immediate(true).await;
            match outcome {
                Ok(counts) => {
                    for (c, n) in counts {
                        println!("seeded {db}.{c}: {n} documents");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fatal(crate::Error::mongo("seeding", e)),
            }
        }
        Command::Mutate { uri, db, fraction, seed, days, recent } => {
            let now = chrono::Utc::now();
            let opts = crate::generator::GenOptions { seed, docs: 0, end: now, days };
            let client = match mongodb::Client::with_uri_str(&uri).await {
                Ok(c) => c,
                Err(e) => return fatal(crate::Error::mongo(crate::source::redact_uri(&uri), e)),
            };
            let outcome = crate::generator::mutate(&client, &db, &opts, fraction, recent, now).await;
            client.shutdown().immediate(true).await;
            match outcome {
                Ok(s) => {
                    println!("mutated {db}: {} updated, {} inserted", s.updated, s.inserted);
                    ExitCode::SUCCESS
                }
                Err(e) => fatal(crate::Error::mongo("mutating", e)),
            }
        }
    }
}

/// The configuration restricted to one collection (or all listed), and the lake: what `schema` and `ddl` read.
fn config_and_lake(
    config_dir: &std::path::Path,
    env: &str,
    collection: Option<String>,
) -> crate::Result<(Config, crate::sink::Lake)> {
    let mut config = Config::load(config_dir, env)?;
    config.restrict_to(&collection.into_iter().collect::<Vec<_>>())?;
    let lake = crate::sink::Lake::open(&config.environment.lake)?;
    Ok((config, lake))
}

/// `mongolake ddl`: the table definition of each listed collection, from its schema stored in the lake.
async fn run_ddl(config_dir: &std::path::Path, env: &str, collection: Option<String>, format: &str) -> ExitCode {
    let (config, lake) = match config_and_lake(config_dir, env, collection) {
        Ok(c) => c,
        Err(e) => return fatal(e),
    };
    let glue = format == "glue";
    let mut code = ExitCode::SUCCESS;
    for spec in &config.collections.entries {
        let path = lake.schema_path(&spec.database, &spec.collection);
        let note = |text: String| if glue { eprintln!("{text}") } else { println!("-- {text}\n") };
        let schema = match crate::schema::registry::load(&lake, &spec.database, &spec.collection).await {
            Ok(Some(s)) => s,
            Err(e) if e.is_encoding() => {
                eprintln!("error: {}: unreadable {e}", spec.name());
                code = ExitCode::from(1);
                continue;
            }
            Ok(None) => {
                note(format!("{}: not synced yet (no {}), no table to define", spec.name(), lake.display(&path)));
                continue;
            }
            Err(e) => return fatal(e),
        };
        let def = match crate::catalog::describe(&lake, spec, &schema, &config.environment.catalog, None).await {
            Ok(d) => d,
            Err(e) => return fatal(e),
        };
        if def.columns.is_empty() {
            note(format!("{}: no columns yet (no document synced), no table to define", spec.name()));
        } else if glue {
            print!("{}", def.to_glue_json());
        } else if format == "views" {
            print!("{}", crate::catalog::views::render(&def, &crate::catalog::views::views(&def)));
        } else {
            println!("{}", def.to_athena_sql());
        }
    }
    code
}

/// `mongolake relayout`: see [`crate::sync::relayout`].
async fn run_relayout(config_dir: &std::path::Path, env: &str, collections: &[String]) -> ExitCode {
    let mut config = match Config::load(config_dir, env) {
        Ok(c) => c,
        Err(e) => return fatal(e),
    };
    if let Some(bad) =
        config.collections.errors.iter().find(|e| e.name.as_ref().is_some_and(|n| collections.contains(n)))
    {
        return fatal(crate::Error::config(&config.collections.path, Some(bad.line), bad.message.clone()));
    }
    if let Err(e) = config.restrict_to(collections) {
        return fatal(e);
    }
    let mut code = ExitCode::SUCCESS;
    for (name, outcome) in crate::sync::relayout::run(&config).await {
        match outcome {
            Ok(summary) => {
                tracing::info!(collection = %name, "Relayout done");
                println!("{}", summary.to_text());
            }
            Err(e) => {
                tracing::error!(collection = %name, error = %e, "Relayout failed");
                println!("{name}: FAILED: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    code
}

/// `mongolake status`: see [`crate::ops::status`].
async fn run_status(config_dir: &std::path::Path, env: &str, json: bool) -> ExitCode {
    let config = match Config::load(config_dir, env) {
        Ok(c) => c,
        Err(e) => return fatal(e),
    };
    let rows = match crate::ops::status::collect(&config).await {
        Ok(r) => r,
        Err(e) => return fatal(e),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("serialisable"));
    } else {
        print!("{}", crate::ops::status::to_text(&rows));
    }
    ExitCode::from(if rows.iter().any(|r| r.last_run_status == "failed") { 1 } else { 0 })
}

fn fatal(e: crate::Error) -> ExitCode {
    // Every variant's message already carries its cause, so it is printed once.
    eprintln!("error: {e}");
    ExitCode::from(2)
}
