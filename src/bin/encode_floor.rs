//! `encode_floor`: part of the benchmark (issue 6). Re-encodes the partition files of a lake that mongolake
//! wrote, from Arrow batches already decoded into memory, with mongolake's own encoder and settings, on one
//! thread. What it measures is the CPU time that Parquet encoding alone costs for that lake's rows: no BSON is
//! read, no type inferred, no Arrow column built, no file written. Any full load that produces this lake with
//! this Parquet writer spends at least that much, so the benchmark sets it beside the raw drain to show how
//! much of the full-load target the encoding alone already takes.
//!
//! ```text
//! encode_floor --lake /tmp/bench/lake-ml [--compression lake,zstd:3,snappy,none] [--reps 3]
//! ```
//! Prints one JSON line: `{"files":..,"rows":..,"runs":[{"compression":"zstd:3","cpu_seconds":..,
//! "wall_seconds":..,"bytes":..}, ...]}`. `cpu_seconds` is this thread's CPU time (user + system) spent in
//! the encoder, summed over the files, each file's the least of `--reps` encodings (a floor, and this machine
//! is shared: the least is the estimate least disturbed by neighbours); decoding the files back, which is not
//! timed, is done once.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use mongolake::sink::parquet::{self, Compression, Encoder, FileSink, RowGroups, ZstdLevel};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The allocator of `mongolake` itself (see src/main.rs), so the floor is measured as the sync encodes.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "CPU time of Parquet encoding alone for a lake's rows (benchmark floor)")]
struct Args {
    /// A local lake written by mongolake (`[lake] url`); files under `_`-prefixed folders (state) are skipped.
    #[arg(long)]
    lake: PathBuf,
    /// Compressions to measure, comma-separated: `lake` (the lake's own, whatever it is), `zstd:LEVEL`,
    /// `snappy`, `none`.
    #[arg(long, default_value = "lake,zstd:3,snappy,none", value_delimiter = ',')]
    compression: Vec<String>,
    /// Encodings of each file per compression; the least CPU time counts.
    #[arg(long, default_value_t = 3)]
    reps: u32,
}

fn compression(name: &str) -> Result<Compression> {
    Ok(match name {
        "lake" => parquet::file_compression(),
        "snappy" => Compression::SNAPPY,
        "none" => Compression::UNCOMPRESSED,
        other => match other.strip_prefix("zstd:").map(str::parse::<i32>) {
            Some(Ok(level)) => Compression::ZSTD(ZstdLevel::try_new(level).context("zstd level")?),
            _ => bail!("unknown compression `{other}`: use zstd:LEVEL, snappy or none"),
        },
    })
}

/// The lake's partition files, in path order.
fn data_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (path, name) = (e.path(), e.file_name());
        if name.to_string_lossy().starts_with('_') {
            continue;
        }
        if e.file_type()?.is_dir() {
            data_files(&path, out)?;
        } else if name.to_string_lossy().ends_with(".parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// CPU time (user + system) of the calling thread, to the nanosecond (getrusage counts in scheduler ticks,
/// too coarse for a file that encodes in a millisecond).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime only writes into the struct it is given.
    let t = unsafe {
        let mut t = std::mem::zeroed::<libc::timespec>();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t);
        t
    };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Elsewhere, wall time stands in for CPU time (the encoding runs on one thread either way).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn thread_cpu() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let name = |c: &str| match (c, parquet::file_compression()) {
        ("lake", Compression::ZSTD(level)) => format!("lake's zstd:{}", level.compression_level()),
        ("lake", other) => format!("lake's {other}"),
        (other, _) => other.to_string(),
    };
    let codecs = args.compression.iter().map(|c| Ok((name(c), compression(c)?))).collect::<Result<Vec<_>>>()?;
    let mut files = Vec::new();
    data_files(&args.lake, &mut files)?;
    if files.is_empty() {
        bail!("no partition files (*.parquet) under {}", args.lake.display());
    }
    // (cpu, wall, bytes) per compression.
    let mut totals = vec![(Duration::ZERO, Duration::ZERO, 0u64); codecs.len()];
    let mut rows = 0u64;
    for path in &files {
        let context = path.display().to_string();
        let bytes = Bytes::from(std::fs::read(path).with_context(|| format!("reading {context}"))?);
        let (batches, lake_type) = parquet::decode(bytes, &context)?;
        let Some(schema) = batches.first().map(|b| b.schema()) else { continue };
        rows += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        for ((_, codec), total) in codecs.iter().zip(&mut totals) {
            let mut best = (Duration::MAX, Duration::MAX, 0);
            for _ in 0..args.reps.max(1) {
                let (cpu, wall) = (thread_cpu(), Instant::now());
                let sink = FileSink::Memory(Vec::new());
                // `[sync] row_group_rows` and `row_group_mb` as they default with the default 1 GiB budget.
                let row_groups = RowGroups { rows: 1 << 20, bytes: 128 << 20 };
                let mut encoder =
                    Encoder::with_compression(sink, schema.clone(), &lake_type, row_groups, *codec, &context)?;
                for b in &batches {
                    encoder.write(b)?;
                }
                let out = encoder.finish()?;
                let (cpu, wall) = (thread_cpu().saturating_sub(cpu), wall.elapsed());
                if cpu < best.0 {
                    best = (cpu, wall, out.len() as u64);
                }
            }
            total.0 += best.0;
            total.1 += best.1;
            total.2 += best.2;
        }
    }
    let runs: Vec<_> = codecs
        .iter()
        .zip(&totals)
        .map(|((name, _), (cpu, wall, bytes))| {
            serde_json::json!({
                "compression": name, "cpu_seconds": cpu.as_secs_f64(), "wall_seconds": wall.as_secs_f64(),
                "bytes": bytes,
            })
        })
        .collect();
    println!("{}", serde_json::json!({ "files": files.len(), "rows": rows, "runs": runs }));
    Ok(())
}
