//! One HTTP/1.1 keep-alive connection per worker, on hyper's low-level
//! client: no pool, no redirects, nothing between the loop and the socket.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resolved socket address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: HeaderValue,
    /// Path prefix from the URL, without a trailing slash ("" for none).
    pub prefix: String,
    /// The URL as given.
    pub url: String,
}

impl Target {
    /// Parses `http://host:port[/prefix]` and resolves the host.
    pub async fn parse(url: &str) -> Result<Target, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("--target {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("--target {url:?}: only http:// URLs are supported"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--target {url:?}: no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("--target {url:?}: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("--target {url:?}: {host} has no address"))?;
        Ok(Target {
            addr,
            host: HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            url: url.to_owned(),
        })
    }
}

/// One request to make.
#[derive(Debug, Clone)]
pub struct Call {
    /// Operation name for the statistics (`login`, `me`, ...).
    pub op: &'static str,
    /// Method.
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `Content-Type`, when there is a body.
    pub content_type: Option<&'static str>,
    /// `Authorization` header value.
    pub auth: Option<HeaderValue>,
    /// Body.
    pub body: Bytes,
}

impl Call {
    /// A request without a body.
    pub fn get(op: &'static str, path: impl Into<String>, auth: Option<HeaderValue>) -> Call {
        Call {
            op,
            method: Method::GET,
            path: path.into(),
            content_type: None,
            auth,
            body: Bytes::new(),
        }
    }

    /// A POST with a JSON body.
    pub fn post_json(
        op: &'static str,
        path: impl Into<String>,
        auth: Option<HeaderValue>,
        body: &serde_json::Value,
    ) -> Call {
        Call {
            op,
            method: Method::POST,
            path: path.into(),
            content_type: Some("application/json"),
            auth,
            body: Bytes::from(body.to_string()),
        }
    }

    /// A POST with a form body (already encoded).
    pub fn post_form(
        op: &'static str,
        path: impl Into<String>,
        auth: Option<HeaderValue>,
        form: String,
    ) -> Call {
        Call {
            op,
            method: Method::POST,
            path: path.into(),
            content_type: Some("application/x-www-form-urlencoded"),
            auth,
            body: Bytes::from(form),
        }
    }
}

/// A response, read in full.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// A `Retry-After` header was present.
    pub retry_after: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON, when it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A string field of a JSON object body.
    pub fn field(&self, name: &str) -> Option<String> {
        self.json()?.get(name)?.as_str().map(str::to_owned)
    }
}

/// Why no response came.
#[derive(Debug)]
pub enum Failure {
    /// Connecting failed or the connection broke mid-request.
    Socket(String),
    /// No complete response within the timeout.
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Socket(e) => write!(f, "socket error: {e}"),
            Failure::Timeout => f.write_str("timeout"),
        }
    }
}

/// A keep-alive connection that reconnects when the server closed it.
pub struct Conn {
    target: std::sync::Arc<Target>,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened (first one included).
    pub connects: u64,
}

/// Form-encodes one value (`application/x-www-form-urlencoded`).
pub fn form_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Conn {
    /// A connection to `target`, opened on first use.
    pub fn new(target: std::sync::Arc<Target>) -> Conn {
        Conn {
            target,
            sender: None,
            connects: 0,
        }
    }

    async fn connect(&mut self) -> Result<(), Failure> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| Failure::Socket(format!("connect {}: {e}", self.target.addr)))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::Socket(format!("handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        self.connects += 1;
        Ok(())
    }

    /// Sends `call` and reads the whole response within `timeout`. A
    /// connection the server closed between requests is reopened without
    /// counting as an error; anything after the request left is one.
    pub async fn send(&mut self, call: &Call, timeout: Duration) -> Result<Reply, Failure> {
        match tokio::time::timeout(timeout, self.send_inner(call)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                // The response may still come on this connection: drop it.
                self.sender = None;
                Err(Failure::Timeout)
            }
        }
    }

    async fn send_inner(&mut self, call: &Call) -> Result<Reply, Failure> {
        let usable = match self.sender.as_mut() {
            Some(s) if !s.is_closed() => s.ready().await.is_ok(),
            _ => false,
        };
        if !usable {
            self.connect().await?;
        }
        let sender = self.sender.as_mut().expect("connected");
        let mut req = Request::builder()
            .method(call.method.clone())
            .uri(match format!("{}{}", self.target.prefix, call.path) {
                p if p.is_empty() => "/".to_owned(),
                p => p,
            })
            .header(HOST, self.target.host.clone())
            .header(USER_AGENT, "auth-load/0.1");
        if let Some(ct) = call.content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        if let Some(auth) = &call.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let req = req
            .body(Full::new(call.body.clone()))
            .map_err(|e| Failure::Socket(format!("bad request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Failure::Socket(e.to_string()))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::Socket(format!("reading body: {e}")))?
            .to_bytes();
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }
}

/// `Bearer <token>` as a header value.
pub fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or(HeaderValue::from_static("Bearer -"))
}
