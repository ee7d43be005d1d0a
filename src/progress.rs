//! Live progress of a run: per collection counters the pipeline bumps, and the two ways operators see them.
//!
//! - On a terminal (stderr is a TTY, text logs): an indicatif bar per collection with documents read, rows
//!   written, the rate and, on full loads, an ETA from `estimated_document_count`. Log lines are printed
//!   *above* the bars ([`LogWriter`] suspends the bars while a line is written), so the two never interleave.
//! - Otherwise (cron, systemd, Kubernetes, `--log-format json`): a structured `Progress` log event every 10 s
//!   per collection still running, so a long full load never looks hung and log shippers get numbers.
//!
//! Colour: log lines are coloured only when stderr is a terminal and `NO_COLOR` is unset ([`colour_wanted`]);
//! the bars' templates use no colour at all, so a terminal with `NO_COLOR` gets cursor movement but no colour.
//!
//! The counters are plain atomics: the read and write passes bump them without locks; the display polls.
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Live counters of one collection (or of a whole run, for callers that do not care).
#[derive(Debug, Default)]
pub struct Progress {
    pub docs_read: AtomicU64,
    pub rows_written: AtomicU64,
    /// Documents expected (`estimated_document_count` on a full load); 0 when unknown.
    pub expected: AtomicU64,
    /// [`Phase`] as a number.
    phase: AtomicU8,
}

/// Where a collection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Waiting = 0,
    Reading = 1,
    Writing = 2,
    Done = 3,
    Failed = 4,
    Retrying = 5,
}

impl Progress {
    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Relaxed);
    }
    pub fn phase(&self) -> Phase {
        match self.phase.load(Relaxed) {
            1 => Phase::Reading,
            2 => Phase::Writing,
            3 => Phase::Done,
            4 => Phase::Failed,
            5 => Phase::Retrying,
            _ => Phase::Waiting,
        }
    }
    /// Starts over (a retried collection re-reads from its watermark).
    pub fn reset(&self) {
        self.docs_read.store(0, Relaxed);
        self.rows_written.store(0, Relaxed);
    }
}

/// Whether log lines may carry ANSI colours: on a terminal only, and never with `NO_COLOR` set.
pub fn colour_wanted(terminal: bool, no_color: bool) -> bool {
    terminal && !no_color
}

/// Every collection's counters, in the order they started.
#[derive(Debug, Default)]
pub struct Board {
    entries: Mutex<Vec<(String, Arc<Progress>)>>,
}

impl Board {
    /// The counters of `name` (created on first use).
    pub fn collection(&self, name: &str) -> Arc<Progress> {
        let mut e = self.entries.lock().expect("progress board");
        if let Some((_, p)) = e.iter().find(|(n, _)| n == name) {
            return p.clone();
        }
        let p = Arc::new(Progress::default());
        e.push((name.to_string(), p.clone()));
        p
    }
    pub fn snapshot(&self) -> Vec<(String, Arc<Progress>)> {
        self.entries.lock().expect("progress board").clone()
    }
}

/// The bars, once a terminal display is running: log lines are written around them.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// stderr for tracing: suspends the progress bars (when any) while a log line is written.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BARS.get() {
            Some(mp) => mp.suspend(|| std::io::stderr().write_all(buf)).map(|_| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// Shows `board` until the task is aborted: bars on a terminal, periodic log events otherwise.
pub async fn display(board: Arc<Board>, terminal: bool) {
    if terminal {
        bars(board).await
    } else {
        log_every(board, Duration::from_secs(10)).await
    }
}

async fn log_every(board: Arc<Board>, every: Duration) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let secs = start.elapsed().as_secs_f64().max(0.001);
        for (name, p) in board.snapshot() {
            if matches!(p.phase(), Phase::Done | Phase::Failed | Phase::Waiting) {
                continue;
            }
            let read = p.docs_read.load(Relaxed);
            let expected = p.expected.load(Relaxed);
            tracing::info!(
                collection = %name,
                phase = ?p.phase(),
                docs_read = read,
                docs_expected = expected,
                rows_written = p.rows_written.load(Relaxed),
                docs_per_s = (read as f64 / secs) as u64,
                "Progress"
            );
        }
    }
}

async fn bars(board: Arc<Board>) {
    let mp = BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    let known = ProgressStyle::with_template("{prefix:<28!} {bar:24} {pos:>9}/{len:9} docs ETA {eta:>4}  {msg}")
        .expect("valid template");
    let unknown = ProgressStyle::with_template("{prefix:<28!} {spinner} {pos:>9} docs  {msg}").expect("valid template");
    // (name, counters, bar, when it appeared): the rate is ours, documents over the collection's own time.
    let mut shown: Vec<(String, Arc<Progress>, ProgressBar, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        for (name, p) in board.snapshot() {
            if !shown.iter().any(|(n, ..)| *n == name) {
                let bar = mp.add(ProgressBar::new_spinner().with_style(unknown.clone()).with_prefix(name.clone()));
                shown.push((name, p, bar, Instant::now()));
            }
        }
        for (_, p, bar, since) in &shown {
            if bar.is_finished() {
                continue;
            }
            let expected = p.expected.load(Relaxed);
            if expected > 0 && bar.length() != Some(expected) {
                bar.set_style(known.clone());
                bar.set_length(expected);
            }
            let read = p.docs_read.load(Relaxed);
            bar.set_position(read);
            let written = p.rows_written.load(Relaxed);
            let rate = (read as f64 / since.elapsed().as_secs_f64().max(0.001)) as u64;
            match p.phase() {
                Phase::Done => bar.finish_with_message(format!("done, {written} rows written, {rate} docs/s")),
                Phase::Failed => bar.abandon_with_message("FAILED"),
                phase => bar.set_message(format!("{phase:?}, {rate} docs/s, {written} rows written").to_lowercase()),
            }
        }
    }
}
