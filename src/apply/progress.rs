//! Telling the user how an apply goes: bars on a terminal, lines in a log, JSON for scripts.
//!
//! The executor speaks to a [`Reporter`]; which one is chosen by the command from `--json`
//! and whether stderr is a terminal. Bars (indicatif) show each active file and the total with
//! rate and ETA, and go away when the apply ends; plain lines say when each file starts and
//! finishes; JSON events (`plan`, `start`, `progress`, `done`, `error`, `step`, `swap`,
//! `summary`, progress throttled so a fast download does not flood the pipe) go to an
//! [`EventSink`]: stdout, one per line, for `--json`, or the API's event stream. A [`Tee`]
//! sends one apply's reports to two reporters (the watch log and the event stream).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde_json::json;

use super::fetch::FileProgress;
use crate::printer::Printer;
use crate::units::human_bytes;

/// Identifies a file in progress reports.
#[derive(Debug, Clone)]
pub struct FileLabel {
    pub model: String,
    pub path: String,
    pub size: u64,
}

/// What the executor reports.
pub trait Reporter: Send + Sync {
    /// A download starts; the returned handle receives its byte counts.
    fn start(&self, file: &FileLabel) -> Arc<dyn FileProgress>;
    /// A download finished and was verified.
    fn done(&self, file: &FileLabel, sha256: &str, elapsed: Duration);
    /// Something failed; `message` says what, with the model and file.
    fn error(&self, model: Option<&str>, message: &str);
    /// A step other than a download (a link, a deletion, a hook).
    fn step(&self, message: &str);
    /// A type's active model changed (a swap, a deactivation, a rollback); by default told
    /// as a step.
    fn swapped(&self, change: &ActiveChange) {
        self.step(&change.to_string());
    }
    /// The end: a one-line summary and its figures.
    fn summary(&self, line: &str, figures: serde_json::Value);
}

/// A change of the model `active/<type>` points at: what a service waits to hear.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActiveChange {
    #[serde(rename = "type")]
    pub kind: String,
    pub from: Option<String>,
    /// `None`: the type has no active model now.
    pub to: Option<String>,
    /// The directory of the model now active, in the store.
    pub path: Option<std::path::PathBuf>,
    /// The change undid a swap whose hook failed.
    pub rollback: bool,
}

impl std::fmt::Display for ActiveChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = &self.kind;
        match (&self.to, self.rollback) {
            (Some(to), false) => write!(f, "{kind} is now {to}"),
            (None, false) => write!(f, "{kind} has no active model now"),
            (Some(to), true) => write!(f, "rolled back: {kind} is {to} again"),
            (None, true) => write!(f, "rolled back: {kind} has no active model again"),
        }
    }
}

/// Where JSON events go.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: serde_json::Value);
}

/// Progress bars on a terminal (stderr).
pub struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
}

impl Bars {
    pub fn new(total_bytes: u64) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let total = multi.add(ProgressBar::new(total_bytes));
        total.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .map(in_our_units)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        total.set_prefix("total");
        Self { multi, total }
    }
}

/// The bars' `{bytes}`, `{total_bytes}` and `{bytes_per_sec}` in the units of every other
/// size modelctl prints ([`human_bytes`]), instead of indicatif's own two-decimal ones.
fn in_our_units(style: ProgressStyle) -> ProgressStyle {
    style
        .with_key("bytes", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&human_bytes(s.pos()));
        })
        .with_key(
            "total_bytes",
            |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&human_bytes(s.len().unwrap_or(s.pos())));
            },
        )
        .with_key(
            "bytes_per_sec",
            |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", human_bytes(s.per_sec() as u64));
            },
        )
}

struct BarProgress {
    bar: ProgressBar,
    total: ProgressBar,
    seen: AtomicU64,
}

impl FileProgress for BarProgress {
    fn retrying(&self, why: &str) {
        self.bar
            .println(format!("  warning: {}: {why}", self.bar.message()));
    }
    fn add(&self, bytes: u64) {
        self.bar.inc(bytes);
        self.total.inc(bytes);
        self.seen.fetch_add(bytes, Ordering::Relaxed);
    }
    fn set(&self, bytes: u64) {
        let before = self.seen.swap(bytes, Ordering::Relaxed);
        self.bar.set_position(bytes);
        self.total
            .set_position((self.total.position() + bytes).saturating_sub(before));
    }
}

impl Reporter for Bars {
    fn start(&self, file: &FileLabel) -> Arc<dyn FileProgress> {
        let bar = self
            .multi
            .insert_before(&self.total, ProgressBar::new(file.size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .map(in_our_units)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix("download");
        bar.set_message(format!("{}/{}", file.model, file.path));
        Arc::new(BarProgress {
            bar,
            total: self.total.clone(),
            seen: AtomicU64::new(0),
        })
    }
    fn done(&self, file: &FileLabel, _sha256: &str, elapsed: Duration) {
        let _ = self.multi.println(format!(
            "  downloaded {}/{} ({}) in {}",
            file.model,
            file.path,
            human_bytes(file.size),
            seconds(elapsed)
        ));
    }
    fn error(&self, _model: Option<&str>, message: &str) {
        let _ = self.multi.println(format!("error: {message}"));
    }
    fn step(&self, message: &str) {
        let _ = self.multi.println(format!("  {message}"));
    }
    fn summary(&self, line: &str, _figures: serde_json::Value) {
        self.total.finish_and_clear();
        let _ = self.multi.clear();
        crate::log_line!("{line}");
    }
}

/// One line per event on stderr, for logs and pipes.
pub struct Lines;

/// Line mode reports no byte counts, only retries.
struct LineProgress {
    label: String,
}

impl FileProgress for LineProgress {
    fn add(&self, _: u64) {}
    fn set(&self, _: u64) {}
    fn retrying(&self, why: &str) {
        crate::log_line!("warning: {}: {why}", self.label);
    }
}

impl Reporter for Lines {
    fn start(&self, file: &FileLabel) -> Arc<dyn FileProgress> {
        crate::log_line!(
            "downloading {}/{} ({})",
            file.model,
            file.path,
            human_bytes(file.size)
        );
        Arc::new(LineProgress {
            label: format!("{}/{}", file.model, file.path),
        })
    }
    fn done(&self, file: &FileLabel, _sha256: &str, elapsed: Duration) {
        let rate = file.size as f64 / elapsed.as_secs_f64().max(0.001);
        crate::log_line!(
            "downloaded {}/{} ({}) in {} ({}/s)",
            file.model,
            file.path,
            human_bytes(file.size),
            seconds(elapsed),
            human_bytes(rate as u64)
        );
    }
    fn error(&self, _model: Option<&str>, message: &str) {
        crate::log_line!("error: {message}");
    }
    fn step(&self, message: &str) {
        crate::log_line!("{message}");
    }
    fn summary(&self, line: &str, _figures: serde_json::Value) {
        crate::log_line!("{line}");
    }
}

/// `-q`: errors and retries only; a run that succeeds says nothing.
pub struct Quiet;

impl Reporter for Quiet {
    fn start(&self, file: &FileLabel) -> Arc<dyn FileProgress> {
        Arc::new(LineProgress {
            label: format!("{}/{}", file.model, file.path),
        })
    }
    fn done(&self, _: &FileLabel, _: &str, _: Duration) {}
    fn error(&self, _model: Option<&str>, message: &str) {
        crate::log_line!("error: {message}");
    }
    fn step(&self, _: &str) {}
    fn summary(&self, _: &str, _: serde_json::Value) {}
}

/// One JSON event per line on stdout (`--json`), each line in one write. An event that cannot
/// be written (the reader went away) is dropped: the apply it reports goes on.
pub struct Json {
    printer: Printer,
}

impl Json {
    pub fn new(printer: Printer) -> Self {
        Self { printer }
    }
}

impl EventSink for Json {
    fn emit(&self, event: serde_json::Value) {
        let _ = self.printer.outln(event);
    }
}

struct JsonProgress {
    reporter: Arc<dyn EventSink>,
    file: FileLabel,
    bytes: AtomicU64,
    last: Mutex<Instant>,
}

impl JsonProgress {
    fn maybe_emit(&self) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.elapsed() < Duration::from_millis(500) {
            return;
        }
        *last = Instant::now();
        self.reporter.emit(json!({
            "event": "progress",
            "model": self.file.model,
            "path": self.file.path,
            "bytes": self.bytes.load(Ordering::Relaxed),
            "total": self.file.size,
        }));
    }
}

impl FileProgress for JsonProgress {
    fn retrying(&self, why: &str) {
        self.reporter.emit(json!({
            "event": "retry",
            "model": self.file.model,
            "path": self.file.path,
            "message": why,
        }));
    }
    fn add(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.maybe_emit();
    }
    fn set(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
        self.maybe_emit();
    }
}

/// Reports as JSON events into a sink shared with its per-file handles.
pub struct JsonReporter(pub Arc<dyn EventSink>);

impl Reporter for JsonReporter {
    fn start(&self, file: &FileLabel) -> Arc<dyn FileProgress> {
        self.0.emit(
            json!({"event": "start", "model": file.model, "path": file.path, "size": file.size}),
        );
        Arc::new(JsonProgress {
            reporter: self.0.clone(),
            file: file.clone(),
            bytes: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
        })
    }
    fn done(&self, file: &FileLabel, sha256: &str, elapsed: Duration) {
        self.0.emit(json!({
            "event": "done", "model": file.model, "path": file.path, "size": file.size,
            "sha256": sha256, "seconds": elapsed.as_secs_f64(),
        }));
    }
    fn error(&self, model: Option<&str>, message: &str) {
        self.0
            .emit(json!({"event": "error", "model": model, "message": message}));
    }
    fn step(&self, message: &str) {
        self.0.emit(json!({"event": "step", "message": message}));
    }
    fn swapped(&self, change: &ActiveChange) {
        let mut event = json!(change);
        if let Some(fields) = event.as_object_mut() {
            fields.insert("event".into(), json!("swap"));
            fields.insert("message".into(), json!(change.to_string()));
        }
        self.0.emit(event);
    }
    fn summary(&self, line: &str, figures: serde_json::Value) {
        self.0
            .emit(json!({"event": "summary", "message": line, "totals": figures}));
    }
}

/// Two reporters told the same things.
pub struct Tee(pub Arc<dyn Reporter>, pub Arc<dyn Reporter>);

struct TeeProgress(Arc<dyn FileProgress>, Arc<dyn FileProgress>);

impl FileProgress for TeeProgress {
    fn add(&self, bytes: u64) {
        self.0.add(bytes);
        self.1.add(bytes);
    }
    fn set(&self, bytes: u64) {
        self.0.set(bytes);
        self.1.set(bytes);
    }
    fn retrying(&self, why: &str) {
        self.0.retrying(why);
        self.1.retrying(why);
    }
}

impl Reporter for Tee {
    fn start(&self, file: &FileLabel) -> Arc<dyn FileProgress> {
        Arc::new(TeeProgress(self.0.start(file), self.1.start(file)))
    }
    fn done(&self, file: &FileLabel, sha256: &str, elapsed: Duration) {
        self.0.done(file, sha256, elapsed);
        self.1.done(file, sha256, elapsed);
    }
    fn error(&self, model: Option<&str>, message: &str) {
        self.0.error(model, message);
        self.1.error(model, message);
    }
    fn step(&self, message: &str) {
        self.0.step(message);
        self.1.step(message);
    }
    fn swapped(&self, change: &ActiveChange) {
        self.0.swapped(change);
        self.1.swapped(change);
    }
    fn summary(&self, line: &str, figures: serde_json::Value) {
        self.0.summary(line, figures.clone());
        self.1.summary(line, figures);
    }
}

/// `12.3 s`, `2m 05s`.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}
