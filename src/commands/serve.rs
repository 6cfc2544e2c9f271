//! `modelctl serve [--listen ADDR]`: the HTTP API (see [`crate::api`]).

use std::process::ExitCode;

use miette::{IntoDiagnostic, Result, WrapErr};

use crate::cli::ServeArgs;
use crate::settings::Settings;

pub fn run(settings: Settings, args: &ServeArgs) -> Result<ExitCode> {
    let printer = settings.printer;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    runtime
        .block_on(crate::api::serve(settings, args.listen))
        .wrap_err_with(|| format!("cannot serve on {}", args.listen))?;
    // The only way out that is not an error: Ctrl-C (or SIGINT from a supervisor).
    printer.say("serve stopped");
    Ok(ExitCode::SUCCESS)
}
