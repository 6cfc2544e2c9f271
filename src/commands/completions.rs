//! `modelctl completions SHELL`: a completion script for bash, zsh, fish, elvish or
//! PowerShell, generated from the same clap definitions as `--help`.

use std::process::ExitCode;

use clap::CommandFactory;
use miette::Result;

use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: &CompletionsArgs) -> Result<ExitCode> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "modelctl", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
