//! `modelctl schema`: print the JSON Schema of models.yaml.

use std::io::Write;
use std::process::ExitCode;

use miette::{IntoDiagnostic, Result};

pub fn run() -> Result<ExitCode> {
    std::io::stdout()
        .write_all(crate::manifest::json_schema().as_bytes())
        .into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}
