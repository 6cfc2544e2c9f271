//! `modelctl init [DIR]`: start a project (see [`crate::ops::init`]) and say what to do next.

use std::path::PathBuf;
use std::process::ExitCode;

use miette::Result;

use crate::cli::InitArgs;
use crate::settings::Settings;

pub fn run(settings: &Settings, args: &InitArgs) -> Result<ExitCode> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => PathBuf::from("."),
    };
    let done = crate::ops::init::init(&dir)?;
    let printer = settings.printer;
    let shown =
        |path: &std::path::Path| path.strip_prefix(".").unwrap_or(path).display().to_string();
    printer.say(format_args!(
        "Created `{}`: a manifest with no models yet, and an example of each source kind.",
        shown(&done.manifest)
    ));
    match &done.schema {
        Some(schema) => printer.say(format_args!(
            "Created `{}`: the JSON Schema its modeline names, for your editor; commit both.",
            shown(schema)
        )),
        None => printer.say(format_args!(
            "Kept the `{}` that was there.",
            crate::ops::init::SCHEMA_NAME
        )),
    }
    if let Some(gitignore) = &done.gitignore {
        printer.say(format_args!(
            "Added the store `/models/` to `{}`.",
            shown(gitignore)
        ));
    }
    printer.say(
        "Next: declare a model with `modelctl add ID --type TYPE --hf ORG/NAME` (or `--url`, \
         `--ollama`), then run `modelctl apply`.",
    );
    Ok(ExitCode::SUCCESS)
}
