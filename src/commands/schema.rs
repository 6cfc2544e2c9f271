//! `modelctl schema`: print the JSON Schema of models.yaml.

use std::process::ExitCode;

use miette::Result;

use crate::printer::Printer;

pub fn run(printer: Printer) -> Result<ExitCode> {
    printer.out(crate::manifest::json_schema())?;
    Ok(ExitCode::SUCCESS)
}
