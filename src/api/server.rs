//! The connection loop under the router (docs/reliability.md A3): what `axum::serve` does, plus the
//! limits it lacks.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never fires and a client
//! that sends a header a byte a minute (slowloris) holds its connection forever. Here each
//! connection is served by hyper's HTTP/1 builder with a tokio timer and a header read timeout
//! of [`HEADER_TIMEOUT`], counted from the moment hyper waits for a request (a new connection,
//! or a kept-alive one after its last answer), so an idle connection is closed too. At most
//! [`MAX_CONNECTIONS`] are served at once; the next waits in the kernel's accept queue until
//! one closes. Ctrl-C stops accepting and lets the requests in flight finish, for at most
//! [`SHUTDOWN_GRACE`] (an event stream never finishes by itself). The tests shorten
//! the timeout and the cap with `MODELCTL_TEST_HEADER_TIMEOUT_MS` and
//! `MODELCTL_TEST_MAX_CONNECTIONS`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections are served at once.
pub const MAX_CONNECTIONS: usize = 256;

/// How long Ctrl-C waits for the requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A number from a test's environment variable.
fn test_hook(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Serves `router` on `listener` until Ctrl-C.
pub async fn run(listener: TcpListener, router: Router) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(
        test_hook("MODELCTL_TEST_HEADER_TIMEOUT_MS").map_or(HEADER_TIMEOUT, Duration::from_millis),
    );
    let cap = test_hook("MODELCTL_TEST_MAX_CONNECTIONS").map_or(MAX_CONNECTIONS, |n| n as usize);
    let slots = Arc::new(Semaphore::new(cap.max(1)));
    let graceful = GracefulShutdown::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                // Only a closed semaphore refuses, and nothing closes this one.
                Err(_) => break,
            },
            _ = ctrl_c.as_mut() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    crate::log_line!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = ctrl_c.as_mut() => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that left, sent garbage or was too slow: nothing to report.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    // What is still running after the grace period ends with the runtime.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    Ok(())
}
