//! Errors that axum answers itself, in the API's own shape.
//!
//! Handlers answer `{"error": "..."}`, but a request can fail before it reaches one: a body the
//! `Json` extractor cannot parse (400/422) or one with no JSON content type (415), a method a
//! route does not have (405), a path that is no route at all (404). axum answers those in plain
//! text or with an empty body; this layer re-dresses every such error response as JSON, keeping
//! its status and headers (`Allow`, `WWW-Authenticate`), so a client parses one error format.

use axum::Json;
use axum::extract::Request;
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Longest plain-text error body carried over into the JSON message.
const MESSAGE_LIMIT: usize = 4096;

/// The router's fallback: no such endpoint.
pub async fn no_route(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "error": format!("no endpoint `{method} {path}`; GET /api/openapi.json lists them")
        })),
    )
        .into_response()
}

/// Middleware: a 4xx or 5xx answer that is not JSON becomes `{"error": its text}`.
pub async fn as_json(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MESSAGE_LIMIT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_owned()
    } else {
        text
    };
    let mut dressed = (status, Json(json!({ "error": message }))).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            dressed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    dressed
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
