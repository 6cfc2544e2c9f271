//! `modelctl completions SHELL` and `modelctl man`: the shell's completion script and the man
//! page, both generated from the same clap definitions as `--help`.
//!
//! The completion script is clap's dynamic one: on each Tab the shell runs
//! `COMPLETE=SHELL modelctl …`, which `main` answers (flags and subcommands from the clap
//! definitions, model ids and types from the project's models.yaml, see
//! [`crate::completion`]). It talks to the binary through clap's protocol, so regenerate it after
//! upgrading modelctl, or source it from the shell's startup file.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
use miette::{IntoDiagnostic, Result};

use crate::cli::{Cli, CompletionsArgs};
use crate::printer::Printer;

/// The environment variable the scripts set when they call back.
pub const COMPLETE_VAR: &str = "COMPLETE";

pub fn run(printer: Printer, args: &CompletionsArgs) -> Result<ExitCode> {
    let shell: &dyn EnvCompleter = match args.shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
        Shell::Elvish => &Elvish,
        Shell::PowerShell => &Powershell,
        // `Shell` is non-exhaustive; a shell clap adds later gets its static script.
        other => {
            let mut script = Vec::new();
            clap_complete::generate(other, &mut Cli::command(), "modelctl", &mut script);
            printer.out(script)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let mut script = Vec::new();
    shell
        .write_registration(
            COMPLETE_VAR,
            "modelctl",
            "modelctl",
            "modelctl",
            &mut script,
        )
        .into_diagnostic()?;
    printer.out(script)?;
    Ok(ExitCode::SUCCESS)
}

/// `modelctl man`: the man page of the command line, in roff.
pub fn man(printer: Printer) -> Result<ExitCode> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .into_diagnostic()?;
    printer.out(page)?;
    Ok(ExitCode::SUCCESS)
}
