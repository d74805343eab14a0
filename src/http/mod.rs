//! The HTTP front end: accept loop, connection limits, graceful shutdown,
//! and the dispatch from a route to its handler. Handlers get a parsed
//! [`request::Request`] and return a [`response::Reply`] or an error.

pub mod account;
pub mod audit;
pub mod auth;
pub mod cors;
pub mod docs;
pub mod members;
pub mod ops;
pub mod paging;
pub mod request;
pub mod response;
pub mod router;
pub mod tokens;
pub mod workspaces;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH};
use http::Response;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::state::AppState;
use request::{Request, MAX_BODY};
use response::Reply;
use router::Endpoint;

/// Time a client has to send the whole body once the headers are in.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Largest request head (request line + headers); larger gets 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Serves `listener` until `shutdown` resolves, then stops accepting and
/// gives in-flight requests the configured grace period to finish.
pub async fn serve(listener: TcpListener, app: Arc<AppState>, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(app.config.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // At the connection limit, stop accepting: the kernel backlog holds
        // new clients until a slot frees, instead of this process drowning.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(&app, req, peer).await) }
        });
        let conn = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    let grace = app.config.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = grace.as_secs(),
            "grace period over; closing remaining connections"
        );
    }
}

/// One request, start to finish, with its log line.
async fn handle(
    app: &AppState,
    req: http::Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let request_id = request_id(req.headers().get("x-request-id"));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let api_path = path.starts_with("/api/");
    let origin = cors::allowed_origin(&app.config.cors_allowed_origins, req.headers());
    if let Some(origin) = &origin {
        if let Some(reply) = cors::preflight(&method, &path, req.headers(), origin) {
            return reply.render(api_path, &request_id);
        }
    }
    let (template, result) = match router::resolve(method.as_str(), &path) {
        Ok(matched) => (
            matched.template,
            dispatch(app, matched.endpoint, &matched.params, req, peer).await,
        ),
        Err((err, template)) => (template, Err(err)),
    };
    let reply = match result {
        Ok(reply) => reply,
        Err(err) => {
            if let Some(cause) = err.cause() {
                if err.status() >= 500 && err.status() != 503 {
                    tracing::error!(%cause, request_id = ?request_id, "request failed");
                } else {
                    tracing::warn!(%cause, request_id = ?request_id, "request refused");
                }
            }
            Reply::error(&err)
        }
    };
    let status = reply.status.as_u16();
    crate::metrics::record_request(method.as_str(), template, status, started.elapsed());
    tracing::info!(
        method = %method,
        route = template,
        status,
        latency_us = started.elapsed().as_micros() as u64,
        request_id = request_id.to_str().unwrap_or_default(),
        "request"
    );
    let reply = match &origin {
        Some(origin) => cors::decorate(reply, origin),
        None => reply,
    };
    reply.render(api_path, &request_id)
}

/// The client's `X-Request-Id` when it is sane, else a new one.
fn request_id(given: Option<&HeaderValue>) -> HeaderValue {
    given
        .filter(|v| {
            let bytes = v.as_bytes();
            !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or(HeaderValue::from_static("-"))
        })
}

async fn dispatch(
    app: &AppState,
    endpoint: Endpoint,
    params: &[&str],
    req: http::Request<Incoming>,
    peer: SocketAddr,
) -> Result<Reply, ApiError> {
    let req = read(req, peer, &app.config.trusted_proxies).await?;
    req.refuse_secrets_in_query()?;
    match endpoint {
        Endpoint::Health => Ok(ops::health()),
        Endpoint::Ready => ops::ready(app).await,
        Endpoint::Metrics => crate::metrics::render(app),
        Endpoint::OpenApi => docs::openapi(app),
        Endpoint::SwaggerUi => docs::swagger_ui(app),
        Endpoint::Redoc => docs::redoc(app),
        Endpoint::DocsAsset => docs::asset(app, params),
        Endpoint::Register => auth::register(app, &req).await,
        Endpoint::Login => auth::login(app, &req).await,
        Endpoint::Me => auth::me(app, &req).await,
        Endpoint::VerifyEmailRequest => account::verify_email_request(app, &req).await,
        Endpoint::VerifyEmailConfirm => account::verify_email_confirm(app, &req).await,
        Endpoint::PasswordResetRequest => account::password_reset_request(app, &req).await,
        Endpoint::PasswordResetConfirm => account::password_reset_confirm(app, &req).await,
        Endpoint::PasswordChange => account::password_change(app, &req).await,
        Endpoint::MyAudit => audit::mine(app, &req).await,
        Endpoint::WorkspaceAudit => audit::workspace(app, &req, params).await,
        Endpoint::Refresh => tokens::refresh(app, &req).await,
        Endpoint::Logout => tokens::logout(app, &req).await,
        Endpoint::Introspect => tokens::introspect(app, &req).await,
        Endpoint::ListSessions => tokens::list_sessions(app, &req).await,
        Endpoint::EndSession => tokens::end_session(app, &req, params).await,
        Endpoint::Jwks => tokens::jwks(app),
        Endpoint::OpenIdConfiguration => tokens::openid_configuration(app),
        Endpoint::CreateWorkspace => workspaces::create(app, &req).await,
        Endpoint::ListWorkspaces => workspaces::list(app, &req).await,
        Endpoint::GetWorkspace => workspaces::get(app, &req, params).await,
        Endpoint::UpdateWorkspace => workspaces::update(app, &req, params).await,
        Endpoint::DeleteWorkspace => workspaces::delete(app, &req, params).await,
        Endpoint::ListMembers => members::list(app, &req, params).await,
        Endpoint::AddMember => members::add(app, &req, params).await,
        Endpoint::MyMembership => members::me(app, &req, params).await,
        Endpoint::UpdateMember => members::update(app, &req, params).await,
        Endpoint::RemoveMember => members::remove(app, &req, params).await,
    }
}

/// Reads the body through a limit: a declared or actual size over
/// [`MAX_BODY`] is a 413 without buffering the rest.
async fn read(
    req: http::Request<Incoming>,
    peer: SocketAddr,
    trusted: &[ipnet::IpNet],
) -> Result<Request, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let (parts, body) = req.into_parts();
    // A client that stops sending mid-body must not hold a connection and
    // a task forever.
    let collected = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, MAX_BODY).collect())
        .await
        .map_err(|_| ApiError::BadRequest("Request body was not received in time".into()))?;
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::PayloadTooLarge)
        }
        Err(_) => {
            return Err(ApiError::BadRequest(
                "Request body could not be read".into(),
            ))
        }
    };
    Ok(Request {
        method: parts.method,
        query: parts.uri.query().map(str::to_owned),
        peer: crate::ratelimit::client_ip(peer.ip(), &parts.headers, trusted),
        headers: parts.headers,
        body,
    })
}
