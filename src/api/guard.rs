//! The checks every API request passes first (docs/reliability.md A1).
//!
//! DNS rebinding: a page on `evil.example` whose name is made to resolve to 127.0.0.1 reaches
//! the API with `Host: evil.example`; only hosts naming this machine (or the address the server
//! was told to listen on) are answered. Cross-site requests: a browser adds `Origin` to them; one
//! that is not the API's own origin is refused, so a page the user visits cannot use the API.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::models::error;

pub async fn check(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    if let Err(why) = allowed(request.headers(), &state) {
        return error(StatusCode::FORBIDDEN, &why).into_response();
    }
    next.run(request).await
}

fn allowed(headers: &HeaderMap, state: &ApiState) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or("a Host header is required")?;
    if !local_host(host, state) {
        return Err(format!(
            "Host `{host}` is not this machine; the API answers only requests addressed to it (DNS rebinding protection)"
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != format!("http://{host}")
    {
        return Err(format!(
            "requests from `{origin}` are refused: the API does not serve web pages of other origins"
        ));
    }
    Ok(())
}

/// `localhost`, a loopback address, or the address the server listens on, with any port.
fn local_host(host: &str, state: &ApiState) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == state.listen.ip(),
        Err(_) => false,
    }
}
