//! The `modelctl` binary: parse the command line, run it, map the outcome to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use modelctl::manifest::ManifestError;
use modelctl::printer::{OutputError, Printer};

fn main() -> ExitCode {
    // A completion script calling back on Tab (`COMPLETE=bash modelctl …`): answer and exit.
    clap_complete::CompleteEnv::with_factory(modelctl::cli::Cli::command)
        .var(modelctl::commands::completions::COMPLETE_VAR)
        .complete();
    if modelctl::cli::wants_long_version(std::env::args_os()) {
        // A closed stdout is the reader's choice, as everywhere.
        let _ = Printer::default().outln(modelctl::cli::long_version());
        return ExitCode::SUCCESS;
    }
    let cli = modelctl::cli::Cli::parse();
    let color = match cli.global.color {
        modelctl::cli::ColorChoice::Always => true,
        modelctl::cli::ColorChoice::Never => false,
        modelctl::cli::ColorChoice::Auto => {
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    // Errors are told at every level, so the printer's level does not matter here.
    let printer = Printer::default();
    match modelctl::commands::run(cli) {
        Ok(code) => code,
        // `modelctl plan --json | head`: a closed stdout is the reader's choice, not an error.
        Err(report) if stdout_closed(&report) => ExitCode::SUCCESS,
        Err(report) => {
            if let Some(ManifestError::Invalid(problems)) = report.downcast_ref::<ManifestError>() {
                printer.err(&problems.render(color));
            } else {
                let theme = if color {
                    miette::GraphicalTheme::unicode()
                } else {
                    miette::GraphicalTheme::unicode_nocolor()
                };
                let mut text = String::new();
                let mut handler = miette::GraphicalReportHandler::new_themed(theme).with_width(100);
                // Most errors already say their cause ("cannot read `x`: No such file");
                // print the chain only when it adds something.
                let message = report.to_string();
                if report
                    .chain()
                    .skip(1)
                    .all(|c| message.contains(&c.to_string()))
                {
                    handler = handler.without_cause_chain();
                }
                if handler.render_report(&mut text, report.as_ref()).is_err() {
                    text = format!("error: {report}\n");
                }
                printer.err(&text);
            }
            ExitCode::FAILURE
        }
    }
}

/// Only a failed write of data to stdout counts: a broken pipe elsewhere (a hook's stdin, a
/// socket) is an error like any other.
fn stdout_closed(report: &miette::Report) -> bool {
    report.chain().any(|e| {
        e.downcast_ref::<OutputError>()
            .is_some_and(OutputError::is_closed)
    })
}
