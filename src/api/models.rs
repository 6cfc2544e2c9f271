//! The read side of the API: models as `status` lists them, one model as `show` describes it,
//! its requirements and whether this machine meets them, the active model of a type, storage
//! and the plan. Each request reads the project afresh on a blocking thread.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ApiState;
use super::operations::OpState;
use crate::names::ModelId;
use crate::ops::status::ModelStatus;
use crate::project::Project;
use crate::store::ActivePointer;

/// A failed request: its status and what to say.
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub(super) fn internal(report: miette::Report) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, render(&report))
    }

    pub(super) fn not_found(report: miette::Report) -> Self {
        Self(StatusCode::NOT_FOUND, render(&report))
    }
}

/// A diagnostic as one line: the message, then its help.
fn render(report: &miette::Report) -> String {
    match report.help() {
        Some(help) => format!("{report}; {help}"),
        None => report.to_string(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, &self.1).into_response()
    }
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> (StatusCode, Json<serde_json::Value>) {
    (status, Json(json!({ "error": message })))
}

/// Runs `f` on the project on a thread of its own, and answers its result as JSON.
pub(super) async fn blocking<T, F>(state: Arc<ApiState>, f: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&Project) -> Result<T, ApiError> + Send + 'static,
{
    match on_project(&state, f).await {
        Ok(value) => Json(value).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Runs `f` on the project on a thread of its own. A plain thread rather than tokio's blocking
/// pool: the work may run a runtime of its own (an apply, a question to the Ollama daemon),
/// which a thread inside this runtime may not.
pub(super) async fn on_project<T, F>(state: &ApiState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Project) -> Result<T, ApiError> + Send + 'static,
{
    let settings = state.settings.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = Project::load(settings)
            .map_err(ApiError::internal)
            .and_then(|project| f(&project));
        let _ = tx.send(result);
    });
    rx.await.unwrap_or_else(|_| {
        Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request's task failed".to_owned(),
        ))
    })
}

/// A declared model, or 404 with the closest id.
pub(super) fn declared(project: &Project, id: &str) -> Result<ModelId, ApiError> {
    project.manifest.declared(id).map_err(ApiError::not_found)
}

/// A declared model's entry, or 404 with the closest id.
pub(super) fn declared_entry<'p>(
    project: &'p Project,
    id: &str,
) -> Result<&'p crate::manifest::ModelEntry, ApiError> {
    let id = declared(project, id)?;
    project
        .manifest
        .models
        .get(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no model `{id}`")))
}

#[derive(Debug, Deserialize)]
pub struct Filter {
    #[serde(rename = "type")]
    kind: Option<String>,
    status: Option<String>,
}

/// A row of `modelctl status --json` with the status word services know.
#[derive(Serialize)]
pub struct Listed {
    #[serde(flatten)]
    row: ModelStatus,
    /// not_installed | downloading | installed | active | error
    status: &'static str,
}

/// `GET /api/models[?type=T][&status=S]`: the rows of `modelctl status --json`; `status`
/// filters on the status word or on status's own `state`.
pub async fn list(State(state): State<Arc<ApiState>>, Query(filter): Query<Filter>) -> Response {
    let ops = state.clone();
    blocking(state, move |project| {
        let mut rows: Vec<Listed> = crate::ops::status::rows(project)
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|row| Listed {
                status: status_word(row.id.as_str(), row.state, row.active, &ops),
                row,
            })
            .collect();
        if let Some(kind) = &filter.kind {
            rows.retain(|r| r.row.kind.as_str() == kind);
        }
        if let Some(status) = &filter.status {
            rows.retain(|r| r.status == status || r.row.state == status);
        }
        Ok(rows)
    })
    .await
}

/// The word for a model's state (`state` as `status` says it): files being fetched (by any
/// round this server sees) or a download queued is `downloading`, a failed one (until the
/// model is installed) or altered files are `error`.
fn status_word(id: &str, state: &str, active: bool, api: &ApiState) -> &'static str {
    if api.events.is_downloading(id) {
        return "downloading";
    }
    match api.operations.latest_for(id) {
        Some(OpState::Queued | OpState::Running) => return "downloading",
        Some(OpState::Failed) if state != "installed" => return "error",
        _ => {}
    }
    match state {
        "installed" if active => "active",
        "installed" => "installed",
        "drifted" => "error",
        _ => "not_installed",
    }
}

/// `GET /api/models/{id}`: what `modelctl show ID --json` says, with the status word.
pub async fn get(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let api = state.clone();
    blocking(state, move |project| {
        let id = declared(project, &id)?;
        let shown = crate::ops::show::shown(project, &id).map_err(ApiError::internal)?;
        let status = status_word(id.as_str(), shown.state, shown.active, &api);
        let mut value =
            serde_json::to_value(shown).map_err(|e| ApiError::internal(miette::miette!("{e}")))?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert("status".into(), json!(status));
        }
        Ok(value)
    })
    .await
}

/// `GET /api/models/{id}/requirements`: what models.yaml says it needs.
pub async fn requirements(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    blocking(state, move |project| {
        let entry = declared_entry(project, &id)?;
        Ok(crate::ops::show::requirements(entry))
    })
    .await
}

/// `GET /api/models/{id}/compatibility`: whether this machine meets the requirements.
pub async fn compatibility(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    blocking(state, move |project| {
        let entry = declared_entry(project, &id)?;
        let facts = crate::system::gather(project.store.root());
        Ok(crate::ops::show::compatibility(entry, &facts))
    })
    .await
}

/// `GET /api/models/active/{type}`: the model `active/<type>` points at, and its path.
pub async fn active(State(state): State<Arc<ApiState>>, Path(kind): Path<String>) -> Response {
    blocking(state, move |project| {
        let (pointers, _) = crate::store::read_active(&project.store)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let found = pointers
            .iter()
            .find(|(k, _)| k.as_str() == kind)
            .and_then(|(k, p)| match p {
                ActivePointer::Model(id) => Some((k.clone(), id.clone())),
                ActivePointer::Broken(_) => None,
            });
        match found {
            Some((k, id)) => Ok(json!({
                "type": k,
                "id": id,
                "path": project.store.model_dir(&k, &id),
                "stable_path": project.store.active_link(&k),
            })),
            None => Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no model is active for type `{kind}`"),
            )),
        }
    })
    .await
}

/// `GET /api/models/storage/info`: what `modelctl storage --json` says.
pub async fn storage(State(state): State<Arc<ApiState>>) -> Response {
    blocking(state, move |project| {
        crate::ops::gc::usage(project).map_err(ApiError::internal)
    })
    .await
}

/// `GET /api/plan`: what `modelctl plan --json` says.
pub async fn plan(State(state): State<Arc<ApiState>>) -> Response {
    blocking(state, move |project| {
        let scanned = project.scan().map_err(ApiError::internal)?;
        project.plan(&scanned).map_err(ApiError::internal)
    })
    .await
}
