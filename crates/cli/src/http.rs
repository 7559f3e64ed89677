//! The HTTP endpoint of `tailbox run` (hyper, HTTP/1.1, GET only):
//!
//! | path | answer |
//! |---|---|
//! | `/metrics` | Prometheus exposition (OpenMetrics text, [`crate::metrics`]) |
//! | `/healthz` | 200 while the pipeline loop runs, else 503 |
//! | `/readyz` | 200 while streaming and Kafka is reachable, else 503 |
//! | `/status` | JSON: lag, positions, counters, last error |

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::debug;

use crate::ops::{Ops, now_us};

/// A connection that sends no complete request for this long is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` (so a busy port is reported before the pipeline starts).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves requests on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, ops: Arc<Ops>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // E.g. out of file descriptors: wait a little rather than spin.
                debug!(error = %err, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ops = Arc::clone(&ops);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ops = Arc::clone(&ops);
                async move { Ok::<_, Infallible>(respond(&req, &ops)) }
            });
            let mut builder = http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            if let Err(err) = builder.serve_connection(TokioIo::new(stream), service).await {
                debug!(%peer, error = %err, "HTTP connection ended with an error");
            }
        });
    }
}

/// The answer to one request.
pub fn respond(req: &Request<Incoming>, ops: &Ops) -> Response<String> {
    route(req.method(), req.uri().path(), ops)
}

fn route(method: &Method, path: &str, ops: &Ops) -> Response<String> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match path {
        "/metrics" => {
            let mut response = text(StatusCode::OK, crate::metrics::render(ops, now_us()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        "/healthz" => {
            if ops.healthy() {
                text(StatusCode::OK, "ok\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "pipeline loop not running\n".into())
            }
        }
        "/readyz" => {
            let status = if ops.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            text(status, ops.readiness_text())
        }
        "/status" => {
            let body = serde_json::to_string_pretty(&ops.status_json(now_us()))
                .unwrap_or_else(|_| "{}".into());
            let mut response = text(StatusCode::OK, body + "\n");
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            response
        }
        "/" => text(StatusCode::OK, "tailbox: /metrics /healthz /readyz /status\n".into()),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tailbox_pipeline::PipelineMetrics;

    use super::*;

    #[test]
    fn routes() {
        let ops = Ops::new(Arc::new(PipelineMetrics::default()), "s", "p", false);
        let get = |path: &str| route(&Method::GET, path, &ops).status();
        assert_eq!(get("/healthz"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get("/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        ops.loop_alive.store(true, Ordering::Relaxed);
        ops.pipeline.streaming.store(true, Ordering::Relaxed);
        ops.pipeline.kafka_ok.store(true, Ordering::Relaxed);
        assert_eq!(get("/healthz"), StatusCode::OK);
        assert_eq!(get("/readyz"), StatusCode::OK);
        assert_eq!(get("/metrics"), StatusCode::OK);
        assert_eq!(get("/status"), StatusCode::OK);
        assert_eq!(get("/nope"), StatusCode::NOT_FOUND);
        assert_eq!(route(&Method::POST, "/metrics", &ops).status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
