//! `modelctl completions SHELL`: a completion script for bash, zsh, fish, elvish or
//! PowerShell, generated from the same clap definitions as `--help`.

use std::process::ExitCode;

use clap::CommandFactory;
use miette::Result;

use crate::cli::{Cli, CompletionsArgs};
use crate::printer::Printer;

pub fn run(printer: Printer, args: &CompletionsArgs) -> Result<ExitCode> {
    let mut command = Cli::command();
    // `generate` panics when its writer fails; it writes to memory, the printer to stdout.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "modelctl", &mut script);
    printer.out(script)?;
    Ok(ExitCode::SUCCESS)
}
