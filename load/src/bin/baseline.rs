//! `baseline`: a bare hyper server answering a fixed ~150-byte JSON body on
//! any path, with the same hyper-util auto builder settings as the service.
//! Its throughput is the HTTP ceiling of this machine for the load tool.
//!
//! `baseline [--bind 127.0.0.1:0] [--threads N]`; prints `listening on ADDR`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

const BODY: &[u8] = br#"{"id":"0190f3a2-6a2b-7c3d-9e4f-5a6b7c8d9e0f","email":"baseline@example.com","is_active":true,"is_verified":false,"created_at":"2025-01-01T00:00:00Z"}"#;

fn main() {
    let mut bind = "127.0.0.1:0".to_owned();
    let mut threads: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bind" => bind = args.next().unwrap_or_else(|| usage()),
            "--threads" => threads = args.next().and_then(|t| t.parse().ok()).or_else(|| usage()),
            "-h" | "--help" => {
                println!("usage: baseline [--bind 127.0.0.1:0] [--threads N]\nA bare hyper server: a fixed {}-byte JSON body on any path.", BODY.len());
                return;
            }
            _ => usage(),
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = threads {
        rt.worker_threads(t.max(1));
    }
    rt.enable_all().build().expect("runtime").block_on(serve(bind));
}

fn usage() -> ! {
    eprintln!("usage: baseline [--bind 127.0.0.1:0] [--threads N]");
    std::process::exit(2)
}

async fn handle(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn serve(bind: String) {
    let listener = tokio::net::TcpListener::bind(&bind).await.unwrap_or_else(|e| {
        eprintln!("baseline: cannot listen on {bind}: {e}");
        std::process::exit(1)
    });
    let addr = listener.local_addr().expect("local addr");
    println!("listening on {addr}");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true)
        .max_buf_size(24 * 1024);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    };
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => { tokio::time::sleep(Duration::from_millis(20)).await; continue; }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = builder
            .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle))
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
