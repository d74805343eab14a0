//! What handlers return, and how it becomes an HTTP response with the
//! headers every response carries.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::error::ApiError;

/// A handler's answer before rendering.
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Body and its content type.
    pub body: Option<(Bytes, &'static str)>,
    /// Extra headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

const JSON: &str = "application/json; charset=utf-8";

impl Reply {
    /// A JSON body with `status`.
    pub fn json(status: StatusCode, value: &impl Serialize) -> Reply {
        match serde_json::to_vec(value) {
            Ok(bytes) => Reply {
                status,
                body: Some((Bytes::from(bytes), JSON)),
                headers: Vec::new(),
            },
            Err(e) => Reply::error(&ApiError::Internal(format!("serialising a response: {e}"))),
        }
    }

    /// No body (204).
    pub fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            body: None,
            headers: Vec::new(),
        }
    }

    /// A fixed body with its content type.
    pub fn raw(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Reply {
        Reply {
            status,
            body: Some((body.into(), content_type)),
            headers: Vec::new(),
        }
    }

    /// Adds a header; a value that is not a valid header is dropped.
    pub fn with_header(mut self, name: HeaderName, value: &str) -> Reply {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    /// The `{"detail","code"}` rendering of an error, with its headers.
    pub fn error(err: &ApiError) -> Reply {
        let status =
            StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = Bytes::from(err.body().to_string());
        let mut reply = Reply {
            status,
            body: Some((body, JSON)),
            headers: Vec::new(),
        };
        match err {
            ApiError::Unauthorized(_) => {
                reply
                    .headers
                    .push((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            ApiError::MethodNotAllowed(methods) => {
                reply = reply.with_header(header::ALLOW, &methods.join(", "));
            }
            _ => {}
        }
        if let Some(seconds) = err.retry_after() {
            reply = reply.with_header(header::RETRY_AFTER, &seconds.to_string());
        }
        reply
    }

    /// Renders with the headers API.md puts on every response.
    pub fn render(self, api_path: bool, request_id: &HeaderValue) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if let Some((body, content_type)) = self.body {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            *response.body_mut() = Full::new(body);
        }
        let headers = response.headers_mut();
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if api_path {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        headers.insert(HeaderName::from_static("x-request-id"), request_id.clone());
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

/// A time as API.md wants it: RFC 3339, UTC, `Z`.
pub fn timestamp(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
