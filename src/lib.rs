//! modelctl: a declarative reconciler for AI model files.
//!
//! ```text
//! models.yaml ──manifest──▶ Manifest ─┐
//! models.lock ──lock──────▶ Lockfile ─┼──▶ plan::plan() ──▶ Plan ──▶ apply ──▶ store + lock
//! store ───────store::scan▶ StoreState┘      (pure)
//!      sources::resolve (hf, url, ollama) ──▶ lock entries
//! ```
//!
//! - [`manifest`] reads and validates `models.yaml`, reporting every problem at its line.
//! - [`lock`] reads and writes the canonical `models.lock`.
//! - [`store`] knows the store layout, scans what is present (with a stat cache), places files,
//!   verifies and collects garbage, and holds the store lock.
//! - [`plan`] diffs desired against present state and renders the result.
//! - [`apply`] carries a plan out: the download engine, publishing, pointers and hooks.
//! - [`sources`] resolve manifest entries into locked entries; [`net`] is their HTTP client;
//!   [`registry`] speaks to OCI registries: pushes (ModelPack artifacts), mirrors and `oci:`
//!   sources.
//! - [`system`] gathers the machine facts the planner checks (disk, GPUs, memory).
//! - [`project`] is what every command and API request starts from: manifest, lock and store
//!   loaded together, with resolution and planning on top.
//! - [`names`] and [`digest`] validate every name and hash before it can reach a path;
//!   [`durable`] is the one way files are replaced; [`failpoint`] lets crash tests kill it
//!   between any two of those steps.
//! - [`ops`] are the operations a command or an API request carries out, returning data and
//!   printing nothing: executing a plan, a reconcile round, status rows, the show report, the
//!   typed edits of models.yaml.
//! - [`cli`], [`settings`] and [`commands`] are the command line on top of all this (parse,
//!   call [`ops`], print); [`api`] serves the same facts over HTTP through the same [`ops`]. [`printer`] is how they all write: data on stdout,
//!   talk on stderr, and no write that panics when a reader goes away.

pub mod api;
pub mod apply;
pub mod cli;
pub mod commands;
pub mod completion;
pub mod diagnostic;
pub mod digest;
pub mod durable;
pub mod failpoint;
pub mod lock;
pub mod logging;
pub mod manifest;
pub mod names;
pub mod net;
pub mod ops;
pub mod plan;
pub mod printer;
pub mod project;
pub mod registry;
pub mod settings;
pub mod sources;
pub mod store;
pub mod system;
pub mod text_diff;
pub mod units;
