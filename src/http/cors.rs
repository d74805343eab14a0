//! CORS for the origins in `CORS_ALLOWED_ORIGINS` only: an unlisted
//! `Origin` gets no CORS header at all, and is never echoed. Bearer tokens,
//! not cookies, carry identity, so credentials are never allowed.

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode};

use super::response::Reply;
use super::router;

const ALLOWED_HEADERS: &str = "Authorization, Content-Type, X-Request-Id";
const EXPOSED_HEADERS: &str = "X-Next-Cursor, X-Request-Id, Retry-After, WWW-Authenticate";
const MAX_AGE_SECONDS: &str = "600";

/// The request's `Origin` when it is on the list.
pub fn allowed_origin(allowed: &[String], headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    allowed
        .iter()
        .any(|a| a == origin)
        .then(|| origin.to_owned())
}

/// Answers a preflight (`OPTIONS` with `Access-Control-Request-Method`) for
/// a known path; `None` lets the request go through normal routing.
pub fn preflight(method: &Method, path: &str, headers: &HeaderMap, origin: &str) -> Option<Reply> {
    if method != Method::OPTIONS {
        return None;
    }
    let wanted = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)?
        .to_str()
        .ok()?;
    let allow = match router::resolve(wanted, path) {
        Ok(_) => wanted.to_owned(),
        Err((crate::error::ApiError::MethodNotAllowed(methods), _)) => methods.join(", "),
        Err(_) => return None,
    };
    Some(
        Reply::empty(StatusCode::NO_CONTENT)
            .with_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)
            .with_header(header::ACCESS_CONTROL_ALLOW_METHODS, &allow)
            .with_header(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS)
            .with_header(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECONDS)
            .with_header(header::VARY, "Origin"),
    )
}

/// Adds the CORS headers to an answer for an allowed origin.
pub fn decorate(reply: Reply, origin: &str) -> Reply {
    reply
        .with_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)
        .with_header(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED_HEADERS)
        .with_header(HeaderName::from_static("vary"), "Origin")
}
