//! The HTTP API (`modelctl serve`): what services ask to find their active model, and what
//! dashboards show.
//!
//! It listens on 127.0.0.1:7420 by default. Every request is checked before it reaches a
//! handler (`guard.rs`): the `Host` must name this machine (or the address it was told to listen
//! on), which defeats DNS rebinding, and a request with an `Origin` must come from the API's
//! own origin, so a web page cannot drive it from a browser. Changes need the bearer token and
//! a JSON body of at most 1 MiB (`auth.rs`); beyond loopback, reads need the token too. The
//! connection loop (`server.rs`) times out slow headers and caps connections; the API describes
//! itself at `/api/openapi.json` (`openapi.rs`). Handlers read models.yaml, models.lock and the
//! store afresh on each request (the scan is cheap thanks to the stat cache), on a blocking
//! thread, and answer JSON; errors are `{"error": "..."}` with a status that says whose fault it
//! was. Changes edit models.yaml and reconcile the store, one at a time (`actions.rs`);
//! downloads run in the background as operations (`operations.rs`), and what happens in the
//! store streams on `/api/events` (`events.rs`).

mod actions;
mod auth;
pub mod events;
mod guard;
mod models;
mod openapi;
pub mod operations;
mod plain_errors;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{self, MethodRouter};
use miette::IntoDiagnostic;

use crate::settings::Settings;

/// What every handler shares.
#[derive(Debug)]
pub struct ApiState {
    pub settings: Settings,
    /// The address the server listens on, for the `Host` check.
    pub listen: SocketAddr,
    /// Held while a change is made: one at a time.
    pub changes: std::sync::Mutex<()>,
    /// What `GET /api/events` streams.
    pub events: events::EventBus,
    /// Downloads under way and done.
    pub operations: operations::Operations,
    /// The token changes (or, beyond loopback, all requests) need.
    pub auth: auth::Auth,
}

/// One route: the method and path it answers, and its handler. The router is built from
/// [`routes`], and a test holds the OpenAPI document to the same list, both ways.
pub(crate) struct Route {
    /// Read by the OpenAPI document's test; the handler already carries it for axum.
    #[cfg_attr(not(test), allow(dead_code))]
    pub method: Method,
    pub path: &'static str,
    handler: MethodRouter<Arc<ApiState>>,
}

impl Route {
    fn get<H: Handler<T, Arc<ApiState>>, T: 'static>(path: &'static str, handler: H) -> Self {
        Self::new(Method::GET, path, routing::get(handler))
    }
    fn post<H: Handler<T, Arc<ApiState>>, T: 'static>(path: &'static str, handler: H) -> Self {
        Self::new(Method::POST, path, routing::post(handler))
    }
    fn put<H: Handler<T, Arc<ApiState>>, T: 'static>(path: &'static str, handler: H) -> Self {
        Self::new(Method::PUT, path, routing::put(handler))
    }
    fn delete<H: Handler<T, Arc<ApiState>>, T: 'static>(path: &'static str, handler: H) -> Self {
        Self::new(Method::DELETE, path, routing::delete(handler))
    }
    fn new(method: Method, path: &'static str, handler: MethodRouter<Arc<ApiState>>) -> Self {
        Self {
            method,
            path,
            handler,
        }
    }
}

/// Every route the API serves.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/models", models::list),
        Route::get("/api/models/storage/info", models::storage),
        Route::get("/api/models/active/{kind}", models::active),
        Route::get("/api/models/{id}/requirements", models::requirements),
        Route::get("/api/models/{id}/compatibility", models::compatibility),
        Route::get("/api/models/{id}", models::get),
        Route::delete("/api/models/{id}", actions::delete),
        Route::get("/api/plan", models::plan),
        Route::get("/api/events", events::stream),
        Route::get("/api/operations", operations::list),
        Route::get("/api/operations/{op}", operations::get),
        Route::post("/api/models/download", operations::download),
        Route::post("/api/models/add", actions::add),
        Route::post("/api/models/{id}/reload", actions::reload),
        Route::post("/api/models/activate", actions::activate),
        Route::post("/api/models/deactivate/{id}", actions::deactivate),
        Route::post("/api/models/{id}/switch", actions::switch),
        Route::put("/api/models/{id}/config", actions::config),
        Route::get("/api/openapi.json", openapi::document),
    ]
}

/// The routes, behind the guards: Host/Origin first, then the token, then JSON errors.
pub fn router(state: Arc<ApiState>) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.handler))
        .fallback(plain_errors::no_route)
        .layer(axum::middleware::from_fn(plain_errors::as_json))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check,
        ))
        .with_state(state)
}

/// Serves until Ctrl-C. The token is settled before anything is printed, so a refusal (a
/// network address without `MODELCTL_API_TOKEN`) comes before the server says it serves.
pub async fn serve(settings: Settings, listen: SocketAddr) -> miette::Result<()> {
    let (listener, state) = bind(settings, listen).await?;
    server::run(listener, router(state)).await.into_diagnostic()
}

/// Starts the API on a thread of its own (`watch --listen`), and returns its event bus once it
/// listens, for the watch rounds to report into. It stops with the process (or at Ctrl-C).
pub fn spawn(settings: Settings, listen: SocketAddr) -> miette::Result<events::EventBus> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("modelctl-api".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = tx.send(Err(miette::miette!("cannot start the API: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                match bind(settings, listen).await {
                    Ok((listener, state)) => {
                        let _ = tx.send(Ok(state.events.clone()));
                        if let Err(e) = server::run(listener, router(state)).await {
                            crate::log_line!("error: the API stopped: {e}");
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })
        .into_diagnostic()?;
    rx.recv()
        .map_err(|_| miette::miette!("the API thread ended before it listened"))?
}

/// Settles the token, binds and says so.
async fn bind(
    settings: Settings,
    listen: SocketAddr,
) -> miette::Result<(tokio::net::TcpListener, Arc<ApiState>)> {
    let (auth, warnings) = auth::Auth::resolve(listen, || {
        let manifest = crate::manifest::load(&settings.manifest_path).map_err(|e| {
            miette::miette!(
                help = "fix models.yaml, or set MODELCTL_API_TOKEN",
                "cannot find the store, where the API token is kept: {e}"
            )
        })?;
        Ok(settings.store_root(&manifest))
    })?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .into_diagnostic()
        .map_err(|e| e.wrap_err(format!("cannot listen on {listen}")))?;
    let listen = listener.local_addr().into_diagnostic()?;
    crate::log_line!("serving the modelctl API on http://{listen}/api/models (Ctrl-C to stop)");
    crate::log_line!("{}", auth.log_line());
    for warning in warnings {
        crate::log_line!("{warning}");
    }
    let state = Arc::new(ApiState {
        settings,
        listen,
        changes: std::sync::Mutex::new(()),
        events: events::EventBus::default(),
        operations: operations::Operations::default(),
        auth,
    });
    Ok((listener, state))
}
