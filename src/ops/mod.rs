//! The operations: what a command or an API request does, as functions that take settings or
//! a loaded [`crate::project::Project`] and return data, printing nothing of their own (the
//! executor's progress reporter excepted). `commands` parses, calls these and prints; `api`
//! calls the same functions and answers in JSON, so the two never differ. This layer never
//! names `cli`, `commands` or `api`.

pub mod cache;
pub mod edit;
pub mod execute;
pub mod gc;
pub mod hf_cache_names;
pub mod init;
pub mod ollama_names;
pub mod push;
mod push_ollama;
pub mod reconcile;
pub mod saved_plan;
pub mod select;
pub mod show;
pub mod status;
