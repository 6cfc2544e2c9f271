//! `modelctl watch [--prune] [--interval SECS] [--listen ADDR]`: keep the store true to
//! models.yaml, and with `--listen` serve the HTTP API alongside, every round reported on its
//! event stream.
//!
//! A level-triggered loop: each round loads the manifest and lock, scans the store, plans and
//! applies, whatever woke it (a save of models.yaml or models.lock, the drift timer, the
//! start). It watches the manifest's directory, not the file, because editors save by rename
//! (notify-debouncer-full merges the burst of events a save makes), and a round starts only
//! once the files have been quiet for a moment, so a storm of saves makes one round. Reading
//! a file is not a change (each round reads models.yaml; that must not wake the next one).
//! Rounds never overlap, and events that arrive during one are merged into the next. A
//! models.yaml that is missing, empty or invalid is reported (each problem at its line) and
//! ignored: the store keeps its last good state, and the loop carries on once the file is
//! fixed. Deletions are only shown unless `--prune` is given.
//! A failed round is retried with a growing pause (up to a minute) instead of ending the loop;
//! Ctrl-C ends it after the current step.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use miette::{IntoDiagnostic, Result, WrapErr};
use notify::RecursiveMode;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify_debouncer_full::{DebounceEventResult, DebouncedEvent};

use crate::apply::progress::EventSink;
use crate::cli::WatchArgs;
use crate::ops::execute::ExecOptions;
use crate::ops::reconcile::{Round, reconcile};
use crate::settings::Settings;

/// Quiet time that ends a burst of file events.
const DEBOUNCE: Duration = Duration::from_millis(400);
/// Longest wait for a storm of changes to settle before a round runs anyway.
const MAX_SETTLE: Duration = Duration::from_secs(5);
/// The pause after failed rounds: from 1 s, doubling to at most 60 s, jittered like request
/// retries (the same schedule type, [`crate::net::retry::Backoff`]).
const ROUND_BACKOFF: crate::net::retry::Backoff = crate::net::retry::Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(60),
};

/// What woke the loop.
enum Wake {
    Changed(PathBuf),
    Timer,
    Quit,
}

pub fn run(settings: Settings, args: &WatchArgs) -> Result<ExitCode> {
    let dir = settings.manifest_dir();
    let watched: Vec<PathBuf> = vec![settings.manifest_path.clone(), settings.lock_path.clone()];
    let (tx, events) = channel();
    let mut debouncer = notify_debouncer_full::new_debouncer(DEBOUNCE, None, tx)
        .into_diagnostic()
        .wrap_err("cannot start watching files")?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot watch `{}`", dir.display()))?;
    let api: Option<Arc<dyn EventSink>> = match args.listen {
        Some(listen) => Some(Arc::new(crate::api::spawn(settings.clone(), listen)?)),
        None => None,
    };
    let quit = ctrl_c_flag();
    let interval = Duration::from_secs_f64(args.interval.max(1.0));
    crate::log_line!(
        "watching `{}` (drift check every {}); Ctrl-C to stop",
        settings.manifest_path.display(),
        crate::apply::progress::seconds(interval)
    );
    let mut failures = 0u32;
    let mut reason = "start".to_owned();
    loop {
        if quit.load(Ordering::Relaxed) {
            break;
        }
        match round(&settings, args, &reason, api.clone()) {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                crate::log_line!("{e:?}");
            }
        }
        let wait = if failures == 0 {
            interval
        } else {
            ROUND_BACKOFF.wait(failures)
        };
        match next_wake(&events, &watched, wait, &quit) {
            Wake::Changed(path) => reason = format!("`{}` changed", display_name(&path)),
            Wake::Timer if failures > 0 => reason = "retrying after an error".to_owned(),
            Wake::Timer => reason = String::new(),
            Wake::Quit => break,
        }
    }
    crate::log_line!("watch stopped");
    Ok(ExitCode::SUCCESS)
}

/// One round of `watch`.
fn round(
    settings: &Settings,
    args: &WatchArgs,
    reason: &str,
    events: Option<Arc<dyn EventSink>>,
) -> Result<()> {
    let round = Round {
        only: None,
        prune: args.prune,
        options: ExecOptions {
            jobs: args.jobs,
            connections: args.connections,
        },
        reason,
        events,
    };
    reconcile(settings, &round).map(drop)
}

/// Waits for a change to a watched file, the timer, or Ctrl-C; a burst of changes is one wake.
fn next_wake(
    events: &Receiver<DebounceEventResult>,
    watched: &[PathBuf],
    wait: Duration,
    quit: &AtomicBool,
) -> Wake {
    let deadline = Instant::now() + wait;
    loop {
        if quit.load(Ordering::Relaxed) {
            return Wake::Quit;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Wake::Timer;
        }
        match events.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(batch) => {
                if let Some(path) = changed(batch, watched) {
                    settle(events, watched, quit);
                    return Wake::Changed(path);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Wake::Quit,
        }
    }
}

/// Waits until the watched files have had no change for `DEBOUNCE` (at most `MAX_SETTLE`):
/// the debouncer delays each event, this waits for the end of the whole burst.
fn settle(events: &Receiver<DebounceEventResult>, watched: &[PathBuf], quit: &AtomicBool) {
    let give_up = Instant::now() + MAX_SETTLE;
    let mut quiet_from = Instant::now();
    while !quit.load(Ordering::Relaxed) {
        let now = Instant::now();
        let quiet_until = quiet_from + DEBOUNCE;
        if now >= quiet_until || now >= give_up {
            return;
        }
        match events.recv_timeout((quiet_until - now).min(Duration::from_millis(200))) {
            Ok(batch) => {
                if changed(batch, watched).is_some() {
                    quiet_from = Instant::now();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The first watched file a batch of events changed (reading one is no change); reports
/// the watcher's errors.
fn changed(batch: DebounceEventResult, watched: &[PathBuf]) -> Option<PathBuf> {
    match batch {
        Ok(batch) => batch
            .iter()
            .filter(|e| is_change(e))
            .flat_map(|e| e.paths.iter())
            .find(|p| watched.iter().any(|w| same_file(p, w)))
            .cloned(),
        Err(errors) => {
            for e in errors {
                crate::log_line!("warning: file watching: {e}");
            }
            None
        }
    }
}

/// Anything but a read: inotify reports each open, including the rounds' own.
fn is_change(event: &DebouncedEvent) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn same_file(event: &Path, watched: &Path) -> bool {
    event == watched
        || (event.file_name() == watched.file_name() && event.parent() == watched.parent())
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A flag Ctrl-C sets (a second Ctrl-C during an apply quits at once, as `apply` does).
fn ctrl_c_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                set.store(true, Ordering::Relaxed);
            }
        });
    });
    flag
}
