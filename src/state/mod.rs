//! Watermarks: `<lake>/_mongolake/state/<db>/<coll>.csv`, one row per run of the collection.
//!
//! ```text
//! run_id,started_at,finished_at,watermark,rows_read,rows_written,status,mode,rows_deleted,definitions,layout
//! 20250701T020000123Z-3f2a,2025-07-01T02:00:00.000Z,2025-07-01T02:00:09.412Z,2025-07-01T01:59:58.120Z,1200,1188,ok,incremental,0,athena:4f1c9a0b2e7d5f36 glue:9b0e61c4d2a87f15 views:0c5d7e2a9f3b1864,7d0c2a91e4b35f68
//! ```
//! (`mode` and `rows_deleted` were added with reconcile; files without them read as `incremental`, 0.
//! `definitions`, added with issue 24, says what the run left in the collection's table definition files, a hash
//! of each (see `catalog::publish`): the next run neither reads nor writes a file whose new text hashes the
//! same. Empty, or missing in an older file: the files are read and compared, as before.
//! `layout`, also issue 24: a hash of the layout settings the run checked the table's layout record against and
//! found there, nothing pending (`layout::settings_hash`). A sync whose lease says the run before it ended
//! cleanly, and whose settings hash the same as the newest row's, does not read the record
//! (`sync::relayout::check`). A relayout leaves it empty, and so does a file without the column: the record is
//! read.)
//! The watermark is the newest document timestamp safely written, capped at the moment the run started reading
//! (so a document stamped in the future cannot make later runs skip real changes). The next run reads from the
//! newest `ok` row's watermark minus the overlap. Readers look columns up by header name and ignore columns they
//! do not know, so a newer mongolake can add columns and an older file stays readable.
pub mod digest;
pub mod index;
pub mod layout;
pub mod lease;

use crate::schema::text::format_millis;
use crate::sink::Lake;
use crate::transform::timestamp::parse_iso;
use crate::{Error, Result};

pub const HEADER: [&str; 11] = [
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

/// One row of the state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub run_id: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub watermark: Option<i64>,
    pub rows_read: u64,
    pub rows_written: u64,
    pub status: String,
    /// `incremental`, `full` or `reconcile` (a reconcile run also compared key sets and removed deletions).
    pub mode: String,
    /// Rows removed because their documents no longer exist in MongoDB (reconcile runs).
    pub rows_deleted: u64,
    /// What the run left in the table definition files (`catalog::publish`); empty: not known.
    pub definitions: String,
    /// The hash of the layout settings the run found recorded (`layout::settings_hash`); empty: not known.
    pub layout: String,
}

/// The parsed state file.
#[derive(Debug, Clone, Default)]
pub struct StateFile {
    pub rows: Vec<StateRow>,
}

impl StateFile {
    /// The watermark of the newest successful run.
    pub fn watermark(&self) -> Option<i64> {
        self.rows.iter().rev().find(|r| r.status == "ok").and_then(|r| r.watermark)
    }

    /// What the newest `ok` row says the table definition files hold (empty: not known).
    pub fn definitions(&self) -> &str {
        self.rows.iter().rev().find(|r| r.status == "ok").map_or("", |r| r.definitions.as_str())
    }

    /// What the newest row, whatever its status, says the table's layout record holds (empty: not known). The
    /// newest row and not the newest `ok` one: a run that changed the record (a relayout) records nothing.
    pub fn layout(&self) -> &str {
        self.rows.last().map_or("", |r| r.layout.as_str())
    }

    /// When the last successful reconcile finished (epoch ms).
    pub fn last_reconcile(&self) -> Option<i64> {
        self.rows.iter().rev().find(|r| r.status == "ok" && r.mode == "reconcile").map(|r| r.finished_at)
    }

    pub fn parse(text: &str, location: &str) -> Result<StateFile> {
        // (flexible: a row with fewer fields than the header, say one an operator's script appended in an older
        // shape, reads its missing columns as empty)
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
        let headers = reader.headers().map_err(|e| bad(location, 1, e))?.clone();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let (Some(run_id), Some(watermark), Some(status)) = (col("run_id"), col("watermark"), col("status")) else {
            return Err(bad(location, 1, "header lacks run_id, watermark or status"));
        };
        let mut rows = Vec::new();
        for (i, rec) in reader.records().enumerate() {
            let rec = rec.map_err(|e| bad(location, i + 2, e))?;
            let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("");
            let time = |c: Option<usize>| parse_iso(get(c)).unwrap_or(0);
            let wm = get(Some(watermark));
            let wm = if wm.is_empty() {
                None
            } else {
                Some(
                    parse_iso(wm)
                        .ok_or_else(|| bad(location, i + 2, format!("watermark `{wm}` is not a timestamp")))?,
                )
            };
            rows.push(StateRow {
                run_id: get(Some(run_id)).to_string(),
                started_at: time(col("started_at")),
                finished_at: time(col("finished_at")),
                watermark: wm,
                rows_read: get(col("rows_read")).parse().unwrap_or(0),
                rows_written: get(col("rows_written")).parse().unwrap_or(0),
                status: get(Some(status)).to_string(),
                mode: match get(col("mode")) {
                    "" => "incremental".to_string(),
                    m => m.to_string(),
                },
                rows_deleted: get(col("rows_deleted")).parse().unwrap_or(0),
                definitions: get(col("definitions")).to_string(),
                layout: get(col("layout")).to_string(),
            });
        }
        Ok(StateFile { rows })
    }

    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(HEADER).expect("in-memory write");
        for r in &self.rows {
            w.write_record([
                r.run_id.clone(),
                format_millis(r.started_at),
                format_millis(r.finished_at),
                r.watermark.map(format_millis).unwrap_or_default(),
                r.rows_read.to_string(),
                r.rows_written.to_string(),
                r.status.clone(),
                r.mode.clone(),
                r.rows_deleted.to_string(),
                r.definitions.clone(),
                r.layout.clone(),
            ])
            .expect("in-memory write");
        }
        String::from_utf8(w.into_inner().expect("in-memory flush")).expect("csv is utf-8")
    }
}

fn bad(location: &str, line: usize, e: impl std::fmt::Display) -> Error {
    Error::encode(
        format!("state file {location} line {line}"),
        format!("{e}; fix or remove the line (removing the file forces a full reload)"),
    )
}

/// Reads the state file of a collection (empty when there is none).
pub async fn load(lake: &Lake, database: &str, collection: &str) -> Result<StateFile> {
    let path = lake.state_path(database, collection);
    match lake.get_opt(&path).await? {
        None => Ok(StateFile::default()),
        Some(bytes) => StateFile::parse(&String::from_utf8_lossy(&bytes), &lake.display(&path)),
    }
}

/// Appends a row (object stores cannot append: the file is rewritten whole, atomically).
pub async fn append(lake: &Lake, database: &str, collection: &str, row: StateRow) -> Result<()> {
    append_to(lake, database, collection, load(lake, database, collection).await?, row).await.map(|_| ())
}

/// [`append`] to `state`, the file as this run read it (and, holding the collection's lease, the file as it is):
/// no second read.
pub async fn append_to(
    lake: &Lake,
    database: &str,
    collection: &str,
    mut state: StateFile,
    row: StateRow,
) -> Result<StateFile> {
    state.rows.push(row);
    let path = lake.state_path(database, collection);
    lake.put(&path, state.to_csv().into_bytes().into()).await?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_newest_ok_wins() {
        let row = |id: &str, wm: Option<i64>, status: &str| StateRow {
            run_id: id.into(),
            started_at: 1000,
            finished_at: 2000,
            watermark: wm,
            rows_read: 3,
            rows_written: 2,
            status: status.into(),
            mode: "reconcile".into(),
            rows_deleted: 4,
            definitions: String::new(),
            layout: format!("{id}0f"),
        };
        let s =
            StateFile { rows: vec![row("a", Some(5000), "ok"), row("b", Some(9000), "failed"), row("c", None, "ok")] };
        let back = StateFile::parse(&s.to_csv(), "t").unwrap();
        assert_eq!(back.rows, s.rows);
        assert_eq!(StateFile { rows: s.rows[..2].to_vec() }.watermark(), Some(5000));
    }

    #[test]
    fn the_definitions_of_the_newest_ok_row_and_none_in_a_file_of_nine_columns() {
        let text =
            "run_id,started_at,finished_at,watermark,rows_read,rows_written,status,mode,rows_deleted,definitions\n\
                    a,,,,1,1,ok,full,0,athena:01 glue:02 views:03\n\
                    b,,,,1,1,failed,incremental,0,athena:09\n";
        let s = StateFile::parse(text, "t").unwrap();
        assert_eq!(s.definitions(), "athena:01 glue:02 views:03", "a failed row says nothing");
        let back = StateFile::parse(&s.to_csv(), "t").unwrap();
        assert_eq!(back.rows, s.rows);
        let older = "run_id,started_at,finished_at,watermark,rows_read,rows_written,status,mode,rows_deleted\n\
                     a,,,,1,1,ok,full,0\n";
        assert_eq!(StateFile::parse(older, "t").unwrap().definitions(), "", "an older file: not known");
        let appended = format!("{}b,,,,2,2,ok,incremental,0\n", s.to_csv());
        let s = StateFile::parse(&appended, "t").unwrap();
        assert_eq!((s.rows.len(), s.rows[2].rows_read, s.definitions()), (3, 2, ""), "a row of nine fields");
    }

    #[test]
    fn the_layout_of_the_newest_row_whatever_its_status_and_none_in_an_older_file() {
        let text = "run_id,started_at,finished_at,watermark,rows_read,rows_written,status,mode,rows_deleted,definitions,layout\n\
                    a,,,,1,1,ok,full,0,,0123456789abcdef\n";
        let s = StateFile::parse(text, "t").unwrap();
        assert_eq!(s.layout(), "0123456789abcdef");
        assert_eq!(StateFile::parse(&s.to_csv(), "t").unwrap().rows, s.rows);
        // a row that records nothing (a relayout's) hides the older row's hash
        let relaid = format!("{}b,,,,1,1,ok,relayout,0,,\n", s.to_csv());
        assert_eq!(StateFile::parse(&relaid, "t").unwrap().layout(), "");
        // a row an older mongolake appended (ten fields) records nothing either
        let older = format!("{}c,,,,2,2,ok,incremental,0,\n", s.to_csv());
        assert_eq!(StateFile::parse(&older, "t").unwrap().layout(), "");
        assert_eq!(StateFile::default().layout(), "");
    }

    #[test]
    fn older_and_newer_layouts_are_read_by_header() {
        let text = "status,watermark,run_id,extra_future_column\nok,2025-07-01T00:00:00.000Z,r1,zzz\n";
        assert_eq!(StateFile::parse(text, "t").unwrap().watermark(), Some(1_751_328_000_000));
        assert!(StateFile::parse("a,b\n1,2\n", "t").is_err());
        // What issue 2's mongolake wrote: no mode, no rows_deleted.
        let v1 = "run_id,started_at,finished_at,watermark,rows_read,rows_written,status\n\
                  r1,2025-07-01T00:00:00.000Z,2025-07-01T00:00:01.000Z,2025-07-01T00:00:00.000Z,5,5,ok\n";
        let f = StateFile::parse(v1, "t").unwrap();
        assert_eq!((f.rows[0].mode.as_str(), f.rows[0].rows_deleted, f.last_reconcile()), ("incremental", 0, None));
        assert!(StateFile::parse("run_id,watermark,status\nr,notatime,ok\n", "t")
            .unwrap_err()
            .to_string()
            .contains("line 2"));
    }
}
