//! The commands: each parses its arguments, loads the [`crate::project::Project`], calls the
//! library (the operations it shares with the HTTP API are in [`crate::ops`]), prints, and
//! picks an exit code, writing through the [`crate::printer::Printer`] in its settings. A
//! command never calls another command: what two of them share lives in `ops`.

pub mod apply;
pub mod cache;
pub mod completions;
pub mod doctor;
pub mod edit;
pub mod gc;
pub mod init;
pub mod lock;
pub mod outdated;
pub mod plan;
pub mod push;
pub mod schema;
pub mod serve;
pub mod show;
pub mod status;
pub mod storage;
pub mod update;
pub mod verify;
pub mod watch;

use std::process::ExitCode;

use miette::{IntoDiagnostic, Result, WrapErr};

use crate::settings::Settings;

/// Exit code for "changes present" (`plan --detailed-exitcode`) and "out of date" checks.
pub const EXIT_CHANGES: u8 = 2;

/// Runs a parsed command line.
pub fn run(cli: crate::cli::Cli) -> Result<ExitCode> {
    if let Some(dir) = &cli.global.directory {
        std::env::set_current_dir(dir)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot change to the directory `{}` (-C)", dir.display()))?;
    }
    let settings = Settings::resolve(&cli.global);
    let color = settings.style_for(&std::io::stderr()) == crate::plan::Style::Color;
    let log_warning = crate::logging::init(settings.printer.level(), color);
    for warning in settings.warnings.iter().chain(&log_warning) {
        settings.printer.warn(format_args!("warning: {warning}"));
    }
    crate::failpoint::arm(settings.failpoint.clone());
    match cli.command {
        crate::cli::Command::Init(args) => init::run(&settings, &args),
        crate::cli::Command::Plan(args) => plan::run(settings, &args),
        crate::cli::Command::Apply(args) => apply::run(settings, &args),
        crate::cli::Command::Status(args) => status::run(settings, &args),
        crate::cli::Command::Lock(args) => lock::run(settings, &args),
        crate::cli::Command::Update(args) => update::run(settings, &args),
        crate::cli::Command::Outdated(args) => outdated::run(settings, &args),
        crate::cli::Command::List(args) => status::list(settings, &args),
        crate::cli::Command::Show(args) => show::run(settings, &args),
        crate::cli::Command::Watch(args) => watch::run(settings, &args),
        crate::cli::Command::Serve(args) => serve::run(settings, &args),
        crate::cli::Command::Doctor(args) => doctor::run(settings, &args),
        crate::cli::Command::Storage(args) => storage::run(settings, &args),
        crate::cli::Command::Verify(args) => verify::run(settings, &args),
        crate::cli::Command::Gc(args) => gc::run(settings, &args),
        crate::cli::Command::Cache(command) => cache::run(&settings, &command),
        crate::cli::Command::Push(args) => push::run(settings, &args),
        crate::cli::Command::Schema => schema::run(settings.printer),
        crate::cli::Command::Completions(args) => completions::run(settings.printer, &args),
        crate::cli::Command::Man => completions::man(settings.printer),
        crate::cli::Command::Activate(args) => edit::activate(&settings, &args),
        crate::cli::Command::Deactivate(args) => edit::deactivate(&settings, &args),
        crate::cli::Command::Config(args) => edit::config(&settings, &args),
        crate::cli::Command::Remove(args) => edit::remove(&settings, &args),
        crate::cli::Command::Add(args) => edit::add(&settings, &args),
    }
}
