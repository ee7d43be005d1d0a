//! A local table's partitions, found by reading its folders alone.
//!
//! object_store's local listing walks with `walkdir` following links and reads each entry's metadata several
//! times (a `statx` and an `lstat` for every file and folder, for sizes, times and tags that a partition list
//! does not use): a night over 12,700 partition folders made 65,601 `statx` calls, 6-7% of its CPU
//! (`MONGOLAKE_PROFILE_NIGHT=1 MONGOLAKE_PROFILE_STAT=1 bench/profile_small.sh`). This walk reads each folder
//! once and takes every entry's kind from the folder entry itself (`d_type`); only a symbolic link is
//! followed with a `stat`.
//!
//! It must list exactly what object_store lists, because a partition missing from the list is written without
//! its old rows: the same files (named `part-0.parquet`, followed through links, broken links left out, a
//! folder removed meanwhile skipped), and each folder name as object_store takes it (as it is, checked by
//! [`PathPart::parse`], which `Path::parse` applies to every segment of a listed path); the test below compares
//! the two on awkward names.
use object_store::path::PathPart;
use std::io;
use std::path::Path;

/// How deep links to folders are followed before the walk gives up (a link loop).
const MAX_DEPTH: usize = 64;

/// The partitions (relative to `table`, segments joined by `/`, sorted) holding a file named `data_file`.
pub fn local_partitions(table: &Path, data_file: &str) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut rel = Vec::new();
    walk(table, data_file, &mut rel, &mut out, 0)?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, data_file: &str, rel: &mut Vec<String>, out: &mut Vec<String>, depth: usize) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "{} is more than {MAX_DEPTH} folders deep (a link loop?)",
            dir.display()
        )));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // (the table not there yet, or a folder removed while listing: as object_store, nothing under it)
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(m) => kind = m.file_type(),
                // (a broken link: object_store leaves it out)
                Err(_) => continue,
            }
        }
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a UTF-8 name", path.display()))
        })?;
        if kind.is_dir() {
            // (a name object_store cannot hold, as `.` or a control character, fails its listing too)
            let part = PathPart::parse(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            rel.push(part.as_ref().to_string());
            walk(&path, data_file, rel, out, depth + 1)?;
            rel.pop();
        } else if name == data_file {
            out.push(rel.join("/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::ObjectStore;

    #[tokio::test]
    async fn lists_what_object_stores_local_listing_lists() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("db/coll");
        let names = [
            "facility_id=BLR01/date=2025-07-01",
            "facility_id=a b/date=__HIVE_DEFAULT_PARTITION__",
            "facility_id=100%25 off/date=2025-07-01",
            "facility_id=x{y}^z#1/date=2025-07-02",
            "facility_id=Bengalūru/date=2025-07-03",
            "ward=w1",
            "",
        ];
        for n in names {
            let d = table.join(n);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("part-0.parquet"), b"x").unwrap();
        }
        // not partitions: another file, an empty folder, a folder named like the file, a broken link
        std::fs::write(table.join("ward=w1/part-0.parquet.tmp"), b"x").unwrap();
        std::fs::create_dir_all(table.join("ward=empty")).unwrap();
        std::fs::create_dir_all(table.join("ward=odd/part-0.parquet")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), table.join("ward=broken")).unwrap();
        // a link to a folder holding a partition is followed
        let outside = dir.path().join("outside/date=2025-08-01");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("part-0.parquet"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), table.join("ward=linked")).unwrap();

        let mine = local_partitions(&table, "part-0.parquet").unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let prefix = object_store::path::Path::from("db/coll");
        let mut theirs: Vec<String> = store
            .list(Some(&prefix))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.location.filename() == Some("part-0.parquet"))
            .map(|m| {
                let full = m.location.as_ref().to_string();
                let rel = full.strip_prefix("db/coll").unwrap().trim_start_matches('/').to_string();
                rel.strip_suffix("part-0.parquet").unwrap().trim_end_matches('/').to_string()
            })
            .collect();
        theirs.sort();
        assert_eq!(mine, theirs);
        assert_eq!(mine.len(), names.len() + 1, "{mine:?}");
        assert!(local_partitions(&dir.path().join("missing"), "part-0.parquet").unwrap().is_empty());
    }
}
