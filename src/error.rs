//! One error type for the whole request path. Each variant documents the
//! status it renders as; causes are logged, never sent.

use std::fmt;
use std::time::Duration;

/// One invalid or missing field of a request, listed in a 422 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name as the client sent it (`email`, `password`, `limit`).
    pub field: String,
    /// A human message: what is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error from anything string-like.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every way a request can fail.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `bad_request`: the body is not valid JSON or form, or a JSON type is wrong.
    BadRequest(String),
    /// 401 `unauthorized`, always with `WWW-Authenticate: Bearer`.
    Unauthorized(&'static str),
    /// 403 `forbidden`: a member whose role is too low.
    Forbidden,
    /// 404 `not_found`: unknown route or id, or a workspace the caller cannot see.
    NotFound,
    /// 405 `method_not_allowed`, with the `Allow` header listing these methods.
    MethodNotAllowed(&'static [&'static str]),
    /// 409 `conflict`.
    Conflict(&'static str),
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 415 `unsupported_media_type`: the wanted media type(s).
    UnsupportedMediaType(&'static str),
    /// 422 `validation_error`, listing every bad field.
    Validation(Vec<FieldError>),
    /// 429 `rate_limited`, with `Retry-After`.
    RateLimited(Duration),
    /// 503 `unavailable`, with `Retry-After`: the database or the hashing pool
    /// cannot take the request now. The cause is logged.
    Unavailable(String),
    /// 500 `internal`: a bug. The cause is logged, the client sees nothing of it.
    Internal(String),
}

impl ApiError {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden => 403,
            ApiError::NotFound => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Conflict(_) => 409,
            ApiError::PayloadTooLarge => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Validation(_) => 422,
            ApiError::RateLimited(_) => 429,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    /// The machine-readable `code` of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Validation(_) => "validation_error",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The human `detail` of the body: never a cause, never a secret.
    pub fn detail(&self) -> String {
        match self {
            ApiError::BadRequest(msg) => msg.clone(),
            ApiError::Unauthorized(msg) => (*msg).to_owned(),
            ApiError::Forbidden => "Your role in this workspace does not allow this".to_owned(),
            ApiError::NotFound => "Not found".to_owned(),
            ApiError::MethodNotAllowed(_) => "Method not allowed".to_owned(),
            ApiError::Conflict(msg) => (*msg).to_owned(),
            ApiError::PayloadTooLarge => "Request body is larger than 64 KiB".to_owned(),
            ApiError::UnsupportedMediaType(wanted) => format!("Content-Type must be {wanted}"),
            ApiError::Validation(errors) => match errors.as_slice() {
                [one] => format!("{}: {}", one.field, one.message),
                _ => format!("{} fields are invalid", errors.len()),
            },
            ApiError::RateLimited(_) => "Too many requests, try again later".to_owned(),
            ApiError::Unavailable(_) => "Service temporarily unavailable, try again".to_owned(),
            ApiError::Internal(_) => "Internal error".to_owned(),
        }
    }

    /// Seconds for `Retry-After`, where the status carries one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited(wait) => Some(wait.as_secs().max(1)),
            ApiError::Unavailable(_) => Some(1),
            _ => None,
        }
    }

    /// The JSON body `{"detail","code"[,"errors"]}`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "detail": self.detail(), "code": self.code() });
        if let ApiError::Validation(errors) = self {
            body["errors"] = errors
                .iter()
                .map(|e| serde_json::json!({ "field": e.field, "message": e.message }))
                .collect();
        }
        body
    }

    /// A single-field 422.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// The cause worth logging, if any.
    pub fn cause(&self) -> Option<&str> {
        match self {
            ApiError::Unavailable(cause) | ApiError::Internal(cause) => Some(cause),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.code())
    }
}

impl std::error::Error for ApiError {}

/// Database errors: constraint names map to statuses in this one place;
/// connection trouble is a 503, anything else a bug.
impl From<tokio_postgres::Error> for ApiError {
    fn from(err: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        if let Some(db) = err.as_db_error() {
            let code = db.code();
            if *code == SqlState::UNIQUE_VIOLATION {
                return match db.constraint() {
                    Some("users_email_key") => ApiError::Conflict("E-mail already registered"),
                    Some("workspace_members_pkey") => {
                        ApiError::Conflict("User is already a member of this workspace")
                    }
                    _ => ApiError::Conflict("Already exists"),
                };
            }
            if *code == SqlState::QUERY_CANCELED
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
            {
                return ApiError::Unavailable(format!("database: {}", code.code()));
            }
            return ApiError::Internal(format!("database error {}", code.code()));
        }
        // No server error: the connection broke or never came up.
        ApiError::Unavailable(format!("database connection: {err}"))
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => ApiError::from(e),
            other => ApiError::Unavailable(format!("database pool: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_body_lists_every_field() {
        let err = ApiError::Validation(vec![
            FieldError::new("email", "must be a valid e-mail address"),
            FieldError::new("password", "must be at least 8 characters"),
        ]);
        let body = err.body();
        assert_eq!(body["code"], "validation_error");
        assert_eq!(body["errors"].as_array().map(Vec::len), Some(2));
        assert_eq!(body["errors"][1]["field"], "password");
        assert_eq!(err.status(), 422);
    }

    #[test]
    fn causes_never_reach_the_body() {
        let err = ApiError::Internal("SELECT secret FROM users".into());
        let text = err.body().to_string();
        assert!(!text.contains("SELECT"), "{text}");
        let err = ApiError::Unavailable("password=hunter2".into());
        assert!(!err.body().to_string().contains("hunter2"));
        assert_eq!(err.retry_after(), Some(1));
    }
}
