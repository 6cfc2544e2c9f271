//! `POST /api/models/download` and `GET /api/operations[/{op}]`: downloads that outlive the
//! request that asked for them.
//!
//! A download answers at once (202) with an operation id; the work runs on a thread of its own,
//! one change at a time with every other change the API makes (and under the store lock, with
//! the CLI and `watch`), as a reconcile round narrowed to that model. Its progress, its swap (a
//! model models.yaml wants active is activated once its files are verified) and its end arrive
//! on `/api/events`, each tagged with the operation id. A model has at most one download queued
//! or running: asking again answers 409 with the id of the one under way, so a thousand
//! callers cost one download. Finished operations are kept (the last [`KEEP_FINISHED`]) for
//! `GET /api/operations/{op}`. A client that disconnects changes nothing: the operation runs to
//! its end, and the store's invariants hold whatever happens to it, as for an apply.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ApiState;
use super::models::{ApiError, declared, on_project};
use crate::apply::progress::EventSink;
use crate::names::ModelId;
use crate::ops::execute::ExecOptions;
use crate::ops::reconcile::{Ended, Round, reconcile};

/// Finished operations remembered.
const KEEP_FINISHED: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// One download, as `GET /api/operations/{op}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub id: String,
    pub kind: &'static str,
    pub model: String,
    pub state: OpState,
    /// What happened, once it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Seconds since the Unix epoch.
    pub queued_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
}

/// The operations of this server.
#[derive(Debug, Default)]
pub struct Operations {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    ops: BTreeMap<u64, Operation>,
}

impl Operations {
    /// Queues a download of `model`, or names the one already queued or running.
    fn begin(&self, model: &ModelId) -> Result<Operation, Operation> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(under_way) = table.ops.values().find(|op| {
            op.model == model.as_str() && matches!(op.state, OpState::Queued | OpState::Running)
        }) {
            return Err(under_way.clone());
        }
        table.next += 1;
        let number = table.next;
        let op = Operation {
            id: format!("op-{number}"),
            kind: "download",
            model: model.to_string(),
            state: OpState::Queued,
            message: None,
            queued_at: now(),
            finished_at: None,
        };
        table.ops.insert(number, op.clone());
        Ok(op)
    }

    fn update(&self, id: &str, state: OpState, message: Option<String>) -> Option<Operation> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let op = table.ops.values_mut().find(|op| op.id == id)?;
        op.state = state;
        op.message = message;
        if matches!(state, OpState::Succeeded | OpState::Failed) {
            op.finished_at = Some(now());
        }
        let op = op.clone();
        table.forget_old();
        Some(op)
    }

    pub fn get(&self, id: &str) -> Option<Operation> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.ops.values().find(|op| op.id == id).cloned()
    }

    pub fn all(&self) -> Vec<Operation> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.ops.values().cloned().collect()
    }

    /// The state of `model`'s latest download, if this server ran one.
    pub fn latest_for(&self, model: &str) -> Option<OpState> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table
            .ops
            .values()
            .rev()
            .find(|op| op.model == model)
            .map(|op| op.state)
    }
}

impl Table {
    /// Keeps the last [`KEEP_FINISHED`] finished operations (and every unfinished one).
    fn forget_old(&mut self) {
        let finished: Vec<u64> = self
            .ops
            .iter()
            .filter(|(_, op)| matches!(op.state, OpState::Succeeded | OpState::Failed))
            .map(|(n, _)| *n)
            .collect();
        for n in finished
            .iter()
            .take(finished.len().saturating_sub(KEEP_FINISHED))
        {
            self.ops.remove(n);
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, Deserialize)]
pub struct Target {
    id: String,
}

/// `POST /api/models/download` with `{"id": …}`.
pub async fn download(State(state): State<Arc<ApiState>>, Json(body): Json<Target>) -> Response {
    let id = match on_project(&state, move |project| declared(project, &body.id)).await {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let op = match state.operations.begin(&id) {
        Ok(op) => op,
        Err(under_way) => {
            let message = format!(
                "`{id}` is already being downloaded by {}; follow it at /api/operations/{} or on /api/events",
                under_way.id, under_way.id
            );
            return (
                StatusCode::CONFLICT,
                Json(json!({ "error": message, "operation": under_way })),
            )
                .into_response();
        }
    };
    tell(&state, &op);
    let worker = state.clone();
    let op_id = op.id.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("modelctl-{op_id}"))
        .spawn(move || run(&worker, &op_id, &id));
    if let Err(e) = spawned {
        let failed =
            state
                .operations
                .update(&op.id, OpState::Failed, Some(format!("cannot start: {e}")));
        if let Some(failed) = &failed {
            tell(&state, failed);
        }
        return ApiError::internal(miette::miette!("cannot start the download: {e}"))
            .into_response();
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "operation": op.id,
            "model": op.model,
            "state": op.state,
            "href": format!("/api/operations/{}", op.id),
        })),
    )
        .into_response()
}

/// The operation's thread: waits its turn, then one narrowed reconcile round.
fn run(state: &ApiState, op_id: &str, model: &ModelId) {
    let mut unfinished = Unfinished {
        state,
        op_id: Some(op_id),
    };
    let _one_at_a_time = state.changes.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(op) = state.operations.update(op_id, OpState::Running, None) {
        tell(state, &op);
    }
    let events: Arc<dyn EventSink> = Arc::new(Tagged {
        bus: state.events.clone(),
        operation: op_id.to_owned(),
    });
    let reason = format!("API: download {model} ({op_id})");
    let round = Round {
        only: Some(model),
        prune: false,
        options: ExecOptions::default(),
        reason: &reason,
        events: Some(events),
    };
    let (state_now, message) = match reconcile(&state.settings, &round) {
        Ok(Ended::Applied) => (OpState::Succeeded, format!("`{model}` is installed")),
        Ok(Ended::UpToDate) => (
            OpState::Succeeded,
            format!("`{model}` was already installed"),
        ),
        Ok(Ended::Skipped) => (
            OpState::Failed,
            "models.yaml cannot be used as it is; nothing was downloaded".to_owned(),
        ),
        Err(e) => (OpState::Failed, e.to_string()),
    };
    unfinished.end(state_now, message);
}

/// Ends an operation exactly once: as its round ended, or as failed if its thread unwinds
/// first (a panic must not leave a model `downloading` for ever, refusing every new download).
struct Unfinished<'a> {
    state: &'a ApiState,
    /// `None` once ended.
    op_id: Option<&'a str>,
}

impl Unfinished<'_> {
    fn end(&mut self, outcome: OpState, message: String) {
        let Some(op_id) = self.op_id.take() else {
            return;
        };
        if let Some(op) = self.state.operations.update(op_id, outcome, Some(message)) {
            tell(self.state, &op);
        }
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        self.end(
            OpState::Failed,
            "the operation stopped unexpectedly; see the server's log".to_owned(),
        );
    }
}

/// An `operation` event on the bus.
fn tell(state: &ApiState, op: &Operation) {
    let mut event = json!(op);
    if let Some(fields) = event.as_object_mut() {
        fields.insert("event".into(), json!("operation"));
        fields.insert("operation".into(), json!(op.id));
    }
    state.events.emit(event);
}

/// Puts the operation id on every event of its round.
struct Tagged {
    bus: super::events::EventBus,
    operation: String,
}

impl EventSink for Tagged {
    fn emit(&self, mut event: serde_json::Value) {
        if let Some(fields) = event.as_object_mut() {
            fields.insert("operation".into(), json!(self.operation));
        }
        self.bus.emit(event);
    }
}

/// `GET /api/operations/{op}`.
pub async fn get(State(state): State<Arc<ApiState>>, Path(op): Path<String>) -> Response {
    match state.operations.get(&op) {
        Some(op) => Json(op).into_response(),
        None => ApiError(
            StatusCode::NOT_FOUND,
            format!("no operation `{op}`; GET /api/operations lists them"),
        )
        .into_response(),
    }
}

/// `GET /api/operations`.
pub async fn list(State(state): State<Arc<ApiState>>) -> Response {
    Json(state.operations.all()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_has_one_download_under_way_and_finished_ones_are_bounded() {
        let ops = Operations::default();
        let a = ModelId::parse("a").expect("id");
        let b = ModelId::parse("b").expect("id");
        let first = ops.begin(&a).expect("queued");
        assert_eq!(ops.begin(&a).expect_err("one at a time").id, first.id);
        ops.update(&first.id, OpState::Running, None);
        assert_eq!(ops.begin(&a).expect_err("still under way").id, first.id);
        assert!(ops.begin(&b).is_ok(), "another model is independent");
        ops.update(&first.id, OpState::Failed, Some("no".into()));
        assert_eq!(ops.latest_for("a"), Some(OpState::Failed));
        let second = ops.begin(&a).expect("a new download after the end");
        assert_ne!(second.id, first.id);
        assert_eq!(ops.latest_for("a"), Some(OpState::Queued));
        for _ in 0..KEEP_FINISHED + 10 {
            let op = ops.begin(&b).unwrap_or_else(|op| op);
            ops.update(&op.id, OpState::Succeeded, None);
        }
        let finished = ops
            .all()
            .iter()
            .filter(|op| op.state == OpState::Succeeded)
            .count();
        assert!(finished <= KEEP_FINISHED, "{finished} kept");
        assert_eq!(
            ops.get(&second.id).map(|op| op.state),
            Some(OpState::Queued)
        );
    }
}
