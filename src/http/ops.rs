//! Liveness and readiness.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use super::response::Reply;
use crate::error::ApiError;
use crate::state::AppState;

/// Readiness waits this long for the database at most.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health`: the process runs.
pub fn health() -> Reply {
    Reply::json(StatusCode::OK, &json!({ "status": "ok" }))
}

/// `GET /ready`: the database answers a query in time.
pub async fn ready(app: &AppState) -> Result<Reply, ApiError> {
    let check = async {
        let client = app.db.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok::<(), ApiError>(())
    };
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(Reply::json(StatusCode::OK, &json!({ "status": "ready" }))),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!("readiness: {e}"))),
        Err(_) => Err(ApiError::Unavailable(
            "readiness: database timed out".into(),
        )),
    }
}
