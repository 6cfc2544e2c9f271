//! Detail on stderr: `-v`, `-vv`, `MODELCTL_LOG` and `RUST_LOG`, through `tracing`.
//!
//! What a person is told (progress, "Wrote …", warnings) goes through the
//! [`crate::printer::Printer`]; what helps when something goes wrong (each resolution step,
//! every HTTP request and its answer, retries, chunk plans, timings) is a `tracing` event,
//! which costs nothing unless this subscriber is listening. `-v` shows modelctl's `info`
//! events, `-vv` its `debug` ones with timings; `MODELCTL_LOG` (or else `RUST_LOG`), in
//! `tracing-subscriber`'s filter syntax (`modelctl::net=debug,hyper=info`), replaces the level
//! the flags chose. Events carry URLs only in their redacted form, so no level shows a token,
//! a password or a presigned signature.

use tracing_subscriber::EnvFilter;

use crate::printer::Level;

/// The filter the flags choose when no `MODELCTL_LOG`/`RUST_LOG` is set.
fn default_filter(level: Level) -> &'static str {
    match level {
        Level::Quiet | Level::Normal => "off",
        Level::Verbose => "modelctl=info",
        Level::Debug => "modelctl=debug",
    }
}

/// Installs the subscriber for this process: events go to stderr, one line each. A filter in
/// the environment that does not parse is reported once and the flags' level is used.
pub fn init(level: Level, color: bool) -> Option<String> {
    let from_env = ["MODELCTL_LOG", "RUST_LOG"].into_iter().find_map(|name| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v))
    });
    let mut warning = None;
    let filter = match from_env {
        Some((name, value)) => EnvFilter::try_new(&value).unwrap_or_else(|e| {
            warning = Some(format!(
                "{name}=`{value}` is not a log filter ({e}); ignoring it"
            ));
            EnvFilter::new(default_filter(level))
        }),
        None => EnvFilter::new(default_filter(level)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(level >= Level::Debug);
    // A second `init` (tests calling `run` twice in one process) keeps the first subscriber.
    let _already_installed = if level >= Level::Debug {
        builder
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .try_init()
    } else {
        builder.without_time().try_init()
    };
    warning
}
