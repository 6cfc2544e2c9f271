//! The command line, as plain data: clap definitions, nothing else.
//!
//! The `///` comment on each argument is its `--help` text. Turning these flags and the
//! environment into settings happens in [`crate::settings`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A declarative reconciler for AI model files: plan, apply and pin models from the
/// HuggingFace Hub, URLs and Ollama.
#[derive(Debug, Parser)]
#[command(name = "modelctl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The manifest to read [default: ./models.yaml]
    #[arg(long, global = true, env = "MODELCTL_MANIFEST", value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// The model store, overriding the manifest's `store:`
    #[arg(long, global = true, env = "MODELCTL_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Require models.lock to be up to date: fail instead of changing it
    #[arg(long, global = true)]
    pub locked: bool,
    /// Make no network requests
    #[arg(long, global = true)]
    pub offline: bool,
    /// Both `--locked` and `--offline`
    #[arg(long, global = true)]
    pub frozen: bool,
    /// When to use colour
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what `apply` would download, link, verify, swap and delete
    Plan(PlanArgs),
    /// Show each declared model: declared, present, active, drifted
    Status(StatusArgs),
    /// Resolve every model not pinned in models.lock, and write the lock
    Lock(LockArgs),
    /// Re-hash the store and report every file that differs from models.lock
    Verify(VerifyArgs),
    /// Print the JSON Schema of models.yaml
    Schema,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print the plan as JSON (a stable, documented document) instead of text
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Also save the plan to FILE, for `apply FILE`
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Write nothing; exit 1 when models.lock is not up to date
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only these models (default: every model in models.yaml)
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// Print the report as JSON instead of text
    #[arg(long)]
    pub json: bool,
}
