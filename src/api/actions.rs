//! The write side of the API: activate, switch, deactivate, delete, add, a model's `config`,
//! and running its reload hook. (Downloads run in the background: `operations.rs`.)
//!
//! Each edits models.yaml the way the CLI's editing commands do (comments kept, the result
//! re-validated), then reconciles the store the way one round of `watch` does, narrowed to that
//! model, so the new active model is verified, swapped in atomically and, for Ollama, loaded
//! before the old one is unloaded, without waiting for other models' downloads; a delete
//! removes that model's files and nothing else. `add` only declares: the
//! caller downloads with `POST /api/models/download`. The API acts only on what models.yaml
//! declares, and what it adds there passes the manifest's validators first; it refuses sources
//! the CLI reserves for its user (local `file://` paths, plain-http Ollama registries). One
//! change runs at a time; the answer comes once it is done, and every swap also arrives on
//! `/api/events`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use yaml_edit::ScalarValue;

use super::ApiState;
use super::models::{ApiError, blocking, declared, declared_entry};
use crate::apply::progress::EventSink;
use crate::names::ModelId;
use crate::ops::edit::{ConfigChange, NewModel};
use crate::ops::execute::ExecOptions;
use crate::ops::reconcile::{Round, reconcile};

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
        let kind = declared_entry(project, id.as_str())?.kind.to_string();
        let _one_at_a_time = busy.changes.lock().unwrap_or_else(|p| p.into_inner());
        crate::ops::edit::edit_activate(&settings, id.as_str(), None).map_err(refused)?;
        round(&busy, &format!("API: activate {id}"), &id, false)?;
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
        crate::ops::edit::edit_deactivate(&settings, id.as_str()).map_err(refused)?;
        round(&busy, &format!("API: deactivate {id}"), &id, false)?;
        Ok(json!({ "id": id, "active": false }))
    })
    .await
}

/// `PUT /api/models/{id}/config` with `{"key": value, …}`: sets those keys (a `null` removes
/// one), as `modelctl config` does, and rewrites `active.json` (where consumers read an active
/// model's config) under the store lock; nothing is downloaded.
pub async fn config(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Json(body): Json<serde_json::Map<String, serde_json::Value>>,
) -> Response {
    let settings = state.settings.clone();
    let busy = state.clone();
    blocking(state, move |project| {
        let id = declared(project, &id)?;
        let mut changes = Vec::new();
        for (key, value) in &body {
            let change = match value {
                serde_json::Value::Null => ConfigChange::Unset(key.clone()),
                serde_json::Value::String(text) => {
                    ConfigChange::Set(key.clone(), ScalarValue::string(text.as_str()))
                }
                serde_json::Value::Bool(flag) => ConfigChange::Set(key.clone(), (*flag).into()),
                serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                    (Some(whole), _) => ConfigChange::Set(key.clone(), whole.into()),
                    (None, Some(x)) => ConfigChange::Set(key.clone(), x.into()),
                    (None, None) => {
                        return Err(ApiError(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            format!("`{key}`: {n} is out of range"),
                        ));
                    }
                },
                _ => {
                    return Err(ApiError(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "`{key}`: config values here are strings, numbers, booleans or null"
                        ),
                    ));
                }
            };
            changes.push(change);
        }
        let _one_at_a_time = busy.changes.lock().unwrap_or_else(|p| p.into_inner());
        crate::ops::edit::edit_config(&settings, id.as_str(), &changes).map_err(refused)?;
        let project =
            crate::project::Project::load(settings.clone()).map_err(ApiError::internal)?;
        {
            let _store = project.lock_store().map_err(ApiError::internal)?;
            crate::ops::execute::refresh_active_json(&project).map_err(ApiError::internal)?;
        }
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

/// One reconcile round after an edit, narrowed to the model it is about (activating a small
/// model never waits for another model's download), told on the event stream; with `delete`,
/// that model's files are removed.
fn round(state: &ApiState, reason: &str, model: &ModelId, delete: bool) -> Result<(), ApiError> {
    let events: Arc<dyn EventSink> = Arc::new(state.events.clone());
    let round = Round {
        only: Some(model),
        prune: delete,
        options: ExecOptions::default(),
        reason,
        events: Some(events),
    };
    reconcile(&state.settings, &round)
        .map(drop)
        .map_err(ApiError::internal)
}

/// `DELETE /api/models/{id}`: removes it from models.yaml and its files from the store. An
/// active model is refused: deactivate it or activate another first.
pub async fn delete(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let settings = state.settings.clone();
    let busy = state.clone();
    blocking(state, move |project| {
        let id = declared(project, &id)?;
        if let Some((kind, _)) = project.manifest.active.iter().find(|(_, a)| **a == id) {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "`{id}` is the active {kind} model; deactivate it (POST /api/models/deactivate/{id}) or activate another first"
                ),
            ));
        }
        let _one_at_a_time = busy.changes.lock().unwrap_or_else(|p| p.into_inner());
        crate::ops::edit::edit_remove(&settings, id.as_str()).map_err(refused)?;
        round(&busy, &format!("API: delete {id}"), &id, true)?;
        Ok(json!({ "id": id, "deleted": true }))
    })
    .await
}

/// The body of `POST /api/models/add`: the arguments of `modelctl add`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Add {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    hf: Option<String>,
    revision: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    url: Option<String>,
    sha256: Option<String>,
    ollama: Option<String>,
    oci: Option<String>,
    description: Option<String>,
    #[serde(default)]
    activate: bool,
}

/// `POST /api/models/add`: declares a model in models.yaml (201); nothing is fetched until
/// `POST /api/models/download`.
pub async fn add(State(state): State<Arc<ApiState>>, Json(body): Json<Add>) -> Response {
    let settings = state.settings.clone();
    let busy = state.clone();
    let answer = blocking(state, move |_project| {
        let sources = [
            body.hf.is_some(),
            body.url.is_some(),
            body.ollama.is_some(),
            body.oci.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give exactly one source: `hf`, `url`, `ollama` or `oci`".to_owned(),
            ));
        }
        if let Some(url) = &body.url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the API adds only http(s) URLs; declare local files with `modelctl add` or in models.yaml".to_owned(),
            ));
        }
        if let Some(name) = body.ollama.as_ref().or(body.oci.as_ref())
            && name.contains("://")
        {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the API does not add models from insecure (plain http) registries; declare them in models.yaml".to_owned(),
            ));
        }
        let args = NewModel {
            id: body.id,
            kind: body.kind,
            hf: body.hf,
            revision: body.revision,
            include: body.include,
            url: body.url,
            sha256: body.sha256,
            ollama: body.ollama,
            oci: body.oci,
            description: body.description,
            activate: body.activate,
        };
        let _one_at_a_time = busy.changes.lock().unwrap_or_else(|p| p.into_inner());
        crate::ops::edit::edit_add(&settings, &args).map_err(refused)?;
        Ok(json!({
            "id": args.id,
            "type": args.kind,
            "added": true,
            "active": args.activate,
            "next": "POST /api/models/download to fetch it",
        }))
    })
    .await;
    if answer.status() == StatusCode::OK {
        let (mut parts, body) = answer.into_parts();
        parts.status = StatusCode::CREATED;
        return Response::from_parts(parts, body);
    }
    answer
}

/// `POST /api/models/{id}/reload`: runs the model's `hooks.reload` with the usual hook
/// environment (`MODELCTL_TYPE`, `MODELCTL_NEW_ID`, `MODELCTL_PATH`), and tells the event stream.
pub async fn reload(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let bus = state.events.clone();
    blocking(state, move |project| {
        let id = declared(project, &id)?;
        let entry = declared_entry(project, id.as_str())?;
        let Some(command) = entry.hooks.reload.clone() else {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("`{id}` has no reload hook; declare one as `hooks: {{ reload: \"…\" }}` in models.yaml"),
            ));
        };
        let path = project.store.model_dir(&entry.kind, &id);
        if !path.is_dir() {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("`{id}` is not installed; download it first (POST /api/models/download)"),
            ));
        }
        let env = crate::apply::activate::HookEnv {
            kind: &entry.kind,
            old: Some(id.as_str()),
            new: Some(id.as_str()),
            path: &path,
        };
        match crate::apply::activate::run_hook(&command, &env) {
            Ok(printed) => {
                bus.emit(json!({"event": "reload", "model": id, "type": entry.kind, "path": path}));
                Ok(json!({ "id": id, "reloaded": true, "output": printed }))
            }
            Err(why) => {
                let message = format!("the reload hook of `{id}` failed ({why})");
                bus.emit(json!({"event": "error", "model": id, "message": message}));
                Err(ApiError(StatusCode::BAD_GATEWAY, message))
            }
        }
    })
    .await
}
