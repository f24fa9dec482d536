//! The guards in front of the routes: the caller of every API route (client key or passthrough), and the admin key in front of the operator's endpoints.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine;
use http::{HeaderMap, header};

use crate::{
    digest::{hex, same, sha256},
    error::GatewayError,
    observe::RequestRecord,
    state::AppState,
};

/// Resolves the caller and puts it in the request's extensions, or answers 401 (429 for an
/// address that keeps failing). The client's key is never echoed or logged.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    match state
        .runtime()
        .auth
        .authenticate(request.headers(), peer, state.keyring())
    {
        Ok(caller) => {
            if let Some(record) = request.extensions().get::<RequestRecord>() {
                record.0.set_caller(caller.name.clone(), caller.subject().clone());
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// The admin key from `Authorization: Bearer <key>` or HTTP Basic (any user name, the key as
/// password: what a browser sends after its login prompt, so the dashboard needs no login page).
fn presented_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

/// Route layer for everything behind the admin key. Failures count against the same
/// per-address throttle as client keys, so the admin key cannot be brute-forced either.
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let runtime = state.runtime();
    let Some(expected) = runtime.config.admin.key_sha256.as_deref() else {
        return GatewayError::AdminDisabled.into_response();
    };
    let presented = presented_key(request.headers()).map(|key| hex(&sha256(key.as_bytes())));
    let matches = presented.is_some_and(|p| same(p.as_bytes(), expected.to_ascii_lowercase().as_bytes()));
    if matches {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    runtime.auth.admin_failed(peer).into_response()
}
