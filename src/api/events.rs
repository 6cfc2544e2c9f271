//! `GET /api/events`: what happens in the store, as server-sent events.
//!
//! Every apply the API or `watch --listen` runs reports into an [`EventBus`] as well as its log:
//! `plan` (what a round is about to do), `start`/`progress`/`done` (downloads, progress at most
//! twice a second per file), `swap` (a type's active model changed: type, from, to, path — how a
//! service learns to reload), `error`, `step`, `summary`, and `operation` (a queued download or
//! deletion changed state). Each SSE message is named after its `event` field and carries the
//! JSON as its data. The bus is a bounded broadcast: a client too slow to keep up is told how
//! many events it missed (`lagged`) instead of holding memory for them, and a comment line is
//! sent every 15 s so idle proxies keep the stream open.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast;

use super::ApiState;
use crate::apply::progress::EventSink;

/// Events kept for subscribers that fall behind.
const BACKLOG: usize = 1024;

/// Fans events out to every `GET /api/events` client, and remembers which models have a
/// download under way (whoever runs it: an operation, a change, a `watch --listen` round), for
/// the `downloading` status.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<serde_json::Value>>,
    /// Files started and not yet done, per model.
    downloading: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            downloading: Arc::default(),
        }
    }
}

impl EventBus {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<serde_json::Value>> {
        self.tx.subscribe()
    }

    /// Whether files of `model` are being downloaded now.
    pub fn is_downloading(&self, model: &str) -> bool {
        self.downloading
            .lock()
            .map(|d| d.contains_key(model))
            .unwrap_or(false)
    }

    /// A file starts (+1), is done (-1), its model fails (cleared), the round ends (all clear).
    fn track(&self, event: &serde_json::Value) {
        let Ok(mut downloading) = self.downloading.lock() else {
            return;
        };
        let model = event.get("model").and_then(|m| m.as_str());
        match (event.get("event").and_then(|e| e.as_str()), model) {
            (Some("start"), Some(model)) => *downloading.entry(model.to_owned()).or_default() += 1,
            (Some("done"), Some(model)) => {
                if let Some(files) = downloading.get_mut(model) {
                    *files = files.saturating_sub(1);
                    if *files == 0 {
                        downloading.remove(model);
                    }
                }
            }
            (Some("error"), Some(model)) => {
                downloading.remove(model);
            }
            (Some("summary"), _) => downloading.clear(),
            _ => {}
        }
    }
}

impl EventSink for EventBus {
    fn emit(&self, event: serde_json::Value) {
        self.track(&event);
        // No subscriber is not an error: nobody is listening right now.
        let _ = self.tx.send(Arc::new(event));
    }
}

/// `GET /api/events`.
pub async fn stream(
    State(state): State<Arc<ApiState>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.events.subscribe();
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(value) => sse(&value),
            Err(broadcast::error::RecvError::Lagged(missed)) => sse(&json!({
                "event": "lagged",
                "missed": missed,
                "message": format!("{missed} events were dropped because this client read too slowly"),
            })),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn sse(value: &serde_json::Value) -> Event {
    let name = value
        .get("event")
        .and_then(|e| e.as_str())
        .unwrap_or("message");
    Event::default().event(name).data(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_downloading_from_its_first_start_to_its_last_done() {
        let bus = EventBus::default();
        let file = |event: &str| json!({"event": event, "model": "a", "path": "f"});
        bus.emit(file("start"));
        bus.emit(file("start"));
        bus.emit(file("done"));
        assert!(bus.is_downloading("a"), "one file is still under way");
        bus.emit(file("done"));
        assert!(!bus.is_downloading("a"));
        bus.emit(file("start"));
        bus.emit(json!({"event": "error", "model": "a", "message": "no"}));
        assert!(
            !bus.is_downloading("a"),
            "a failed model is not downloading"
        );
        bus.emit(file("start"));
        bus.emit(json!({"event": "summary", "message": "interrupted"}));
        assert!(
            !bus.is_downloading("a"),
            "nothing is under way after a round"
        );
    }
}
