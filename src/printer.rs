//! The one way modelctl writes to the terminal: data on stdout, talk on stderr, and no write
//! that can panic.
//!
//! Data is what a command answers and a script reads: a plan, a table, JSON, a diff, a
//! completion script. Talk is what is said to the person running it: progress, "Wrote …",
//! warnings, errors. `println!` panics when stdout is a pipe whose reader has gone
//! (`modelctl status --json | head -0`); the [`Printer`]'s data writes return an
//! [`OutputError`] instead. A command that only reports lets that error end it (`?`), and
//! `main` ends such a run quietly with exit 0, as ripgrep does: the reader chose to stop
//! reading. A command that changes things (`apply`, `verify --repair`, `plan --out`, `gc`,
//! the edits) carries on past a closed stdout with [`OutputError::ignore_closed`], because a
//! reader that stopped reading did not ask it to stop half-way. Talk never fails: a line lost
//! to a closed stderr must not undo work or take `serve` down, so talk is dropped instead.
//!
//! The printer carries a [`Level`], which `-q` and `-v` set: data is printed at every level,
//! [`Printer::say`] only from [`Level::Normal`] up, [`Printer::warn`] and [`Printer::err`] at
//! every level. Detail below talk (`-v`: requests, resolution steps) is logged through
//! `tracing` and written by the subscriber of [`crate::logging`]. The long-running code paths without a printer at hand
//! (the server, the watch loop, the download reporter) log through [`log_line!`], which
//! writes the same way.

use std::fmt::Display;
use std::io::{self, Write};

/// How much talk a run wants. Data is printed at every level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Level {
    /// Data, warnings and errors only.
    Quiet,
    /// Data and talk.
    #[default]
    Normal,
    /// Data, talk and detail (`-v`).
    Verbose,
    /// Everything, with timings (`-vv`).
    Debug,
}

/// Writes data on stdout and talk on stderr, at a [`Level`]. Cheap to copy: the streams are
/// the process's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Printer {
    level: Level,
}

/// Writing data on stdout failed. [`OutputError::is_closed`] says the reader went away, which
/// `main` treats as the end of the run and not as a failure.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot write to stdout: {0}")]
pub struct OutputError(#[source] io::Error);

impl OutputError {
    /// The reader of stdout has gone (`EPIPE`): `modelctl status | head -1`.
    pub fn is_closed(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }

    /// `Ok` when stdout was closed: for a command whose output reports a change it goes on to
    /// make, or has made, and whose outcome a reader leaving does not change.
    pub fn ignore_closed(self) -> Result<(), Self> {
        if self.is_closed() { Ok(()) } else { Err(self) }
    }
}

impl Printer {
    pub const fn new(level: Level) -> Self {
        Self { level }
    }

    pub const fn level(self) -> Level {
        self.level
    }

    /// Data: `bytes` (text, mostly) on stdout as they are, flushed.
    pub fn out(self, bytes: impl AsRef<[u8]>) -> Result<(), OutputError> {
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(bytes.as_ref())
            .and_then(|()| stdout.flush())
            .map_err(OutputError)
    }

    /// Data: `line` and a newline on stdout, in one write.
    pub fn outln(self, line: impl Display) -> Result<(), OutputError> {
        self.out(format!("{line}\n"))
    }

    /// Data: `value` as pretty-printed JSON and a newline on stdout.
    pub fn json(self, value: &impl serde::Serialize) -> Result<(), OutputError> {
        let mut text = serde_json::to_vec_pretty(value).map_err(|e| OutputError(e.into()))?;
        text.push(b'\n');
        self.out(text)
    }

    /// Talk: a line on stderr (progress, what was written), from [`Level::Normal`] up.
    pub fn say(self, line: impl Display) {
        if self.level >= Level::Normal {
            stderr_line(format_args!("{line}"));
        }
    }

    /// Talk a quiet run must still hear: a warning, a failure, a note on what went wrong. The
    /// line as given (`warning: …`), at every level.
    pub fn warn(self, line: impl Display) {
        stderr_line(format_args!("{line}"));
    }

    /// Talk at every level, as it is and flushed: a rendered error, a prompt awaiting an
    /// answer on the same line.
    pub fn err(self, text: &str) {
        let mut stderr = io::stderr().lock();
        let _ = stderr
            .write_all(text.as_bytes())
            .and_then(|()| stderr.flush());
    }
}

/// A line on stderr, dropped when stderr is closed. [`log_line!`] and the printer's talk
/// write through it.
pub fn stderr_line(args: std::fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{args}");
}

/// A line on stderr that never panics. `eprintln!` panics when stderr is a closed pipe; for
/// `serve` and `watch`, which run for hours behind pipes and log collectors, and for the code
/// under every command that has no [`Printer`] at hand, a lost log line must not take a
/// download or the server down with it.
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {
        $crate::printer::stderr_line(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_stdout_is_ignored() {
        let closed = OutputError(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(closed.is_closed());
        assert!(closed.ignore_closed().is_ok());
        let full = OutputError(io::Error::from(io::ErrorKind::StorageFull));
        assert!(!full.is_closed());
        assert!(full.ignore_closed().is_err());
    }

    #[test]
    fn levels_order_from_quiet_to_verbose() {
        assert!(Level::Quiet < Level::Normal && Level::Normal < Level::Verbose);
        assert_eq!(Printer::default().level(), Level::Normal);
        assert_eq!(Printer::new(Level::Quiet).level(), Level::Quiet);
    }
}
