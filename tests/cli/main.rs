//! Integration tests: the real `modelctl` binary against temporary projects.
//!
//! One test binary (cargo's and uv's layout); each module covers one area, and `support`
//! builds the projects, runs the binary with a clean environment and serves fake HTTP.

mod adopt;
mod api;
mod api_operations;
mod api_security;
mod api_server;
mod apply;
mod apply_faults;
mod closed_stdout;
mod colliding_names;
mod crash;
mod credential_helpers;
mod disk_faults;
mod docs;
mod edit;
mod examples;
mod fake_blob;
mod fake_hub;
mod fake_hub_selftest;
mod fake_oci;
mod fake_ollama;
mod fake_ollama_selftest;
mod faults;
mod first_project;
mod gc;

mod hf_source;
mod hostile;
mod integrity;
mod layers;
mod lock;
mod manifest_errors;
mod many_projects;
mod mirror;
mod nginx;
mod oci_registry;
mod oci_source;
mod oci_tar_layers;
mod ollama_daemon_pins;
mod ollama_mirror;
mod ollama_source;
mod plan;
mod projects_model;
mod properties;
mod push;
mod raw_client;
mod repository;
mod resume;
mod status;
mod store_model;
mod support;
mod unreachable;
mod url_source;
mod verify;
mod watch;
