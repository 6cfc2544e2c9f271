//! The write side of the API that exists in this build: activate, switch, deactivate, and
//! setting a model's `config`.
//!
//! Each edits models.yaml the way `modelctl activate`/`deactivate` do (comments kept, the result
//! re-validated), then reconciles the store the way one round of `watch` does (never deleting),
//! so the new active model is verified, swapped in atomically and, for Ollama, loaded before the
//! old one is unloaded. One change runs at a time; the answer comes once it is done.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use super::models::{ApiError, blocking, declared};
use crate::cli::{ActivateArgs, ConfigArgs, DeactivateArgs};
use crate::commands::apply::ExecOptions;

#[derive(Debug, Deserialize)]
pub struct Activate {
    id: String,
}

/// `POST /api/models/activate` with `{"id": …}`.
pub async fn activate(State(state): State<Arc<ApiState>>, Json(body): Json<Activate>) -> Response {
    switch_to(state, body.id).await
}

/// `POST /api/models/{id}/switch`: activate it (an Ollama model is loaded, the old one unloaded).
pub async fn switch(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    switch_to(state, id).await
}

async fn switch_to(state: Arc<ApiState>, id: String) -> Response {
    let settings = state.settings.clone();
    let busy = state.clone();
    blocking(state, move |project| {
        let id = declared(project, &id)?;
        let kind = project
            .manifest
            .models
            .get(&id)
            .map(|e| e.kind.to_string())
            .unwrap_or_default();
        let _one_at_a_time = busy.changes.lock().unwrap_or_else(|p| p.into_inner());
        let args = ActivateArgs {
            id: id.to_string(),
            kind: None,
        };
        crate::commands::edit::edit_activate(&settings, &args).map_err(refused)?;
        reconcile(&settings, &format!("API: activate {id}"))?;
        Ok(json!({ "type": kind, "id": id, "active": true }))
    })
    .await
}

/// `POST /api/models/deactivate/{id}`: its type has no active model afterwards.
pub async fn deactivate(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let settings = state.settings.clone();
    let busy = state.clone();
    blocking(state, move |project| {
        let id = declared(project, &id)?;
        let _one_at_a_time = busy.changes.lock().unwrap_or_else(|p| p.into_inner());
        let args = DeactivateArgs {
            target: id.to_string(),
        };
        crate::commands::edit::edit_deactivate(&settings, &args).map_err(refused)?;
        reconcile(&settings, &format!("API: deactivate {id}"))?;
        Ok(json!({ "id": id, "active": false }))
    })
    .await
}

/// `PUT /api/models/{id}/config` with `{"key": value, …}`: sets those keys (a `null` removes
/// one), as `modelctl config` does. The store is not touched: consumers read config from the
/// API and active.json, which the next apply or watch round rewrites.
pub async fn config(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Json(body): Json<serde_json::Map<String, serde_json::Value>>,
) -> Response {
    let settings = state.settings.clone();
    let busy = state.clone();
    blocking(state, move |project| {
        let id = declared(project, &id)?;
        let mut args = ConfigArgs {
            id: id.to_string(),
            set: Vec::new(),
            unset: Vec::new(),
        };
        for (key, value) in &body {
            match value {
                serde_json::Value::Null => args.unset.push(key.clone()),
                serde_json::Value::String(text) => args.set.push(format!("{key}={text}")),
                serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
                    args.set.push(format!("{key}={value}"))
                }
                _ => {
                    return Err(ApiError(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "`{key}`: config values here are strings, numbers, booleans or null"
                        ),
                    ));
                }
            }
        }
        let _one_at_a_time = busy.changes.lock().unwrap_or_else(|p| p.into_inner());
        crate::commands::edit::edit_config(&settings, &args).map_err(refused)?;
        let project =
            crate::commands::Project::load(settings.clone()).map_err(ApiError::internal)?;
        let config = project
            .manifest
            .models
            .get(&id)
            .map(|e| e.config.clone())
            .unwrap_or_default();
        Ok(json!({ "id": id, "config": config }))
    })
    .await
}

/// An edit the validator refused: the request's fault.
fn refused(report: miette::Report) -> ApiError {
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, report.to_string())
}

fn reconcile(settings: &crate::settings::Settings, reason: &str) -> Result<(), ApiError> {
    let options = ExecOptions {
        jobs: 4,
        connections: 16,
    };
    crate::commands::watch::reconcile(settings, false, options, reason).map_err(ApiError::internal)
}
