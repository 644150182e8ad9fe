//! `dossier serve`: plays API Gateway for the two HTTP functions (requests become the same
//! `ApiGatewayV2httpRequest` events the deployed handlers take) and plays the SQS event source
//! mappings with a background pump.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use dossier_adapters::lambda;
use dossier_core::http::HttpResponse;
use dossier_core::stages::HttpHandler;

use crate::backend::LocalPipeline;

/// Largest request body accepted before the handlers see it.
const MAX_BODY: usize = 1024 * 1024;

/// Serves until the process ends. The pump runs every `pump_every`.
pub async fn serve(pipeline: Arc<LocalPipeline>, listener: TcpListener, pump_every: Duration) {
    let pump = pipeline.clone();
    tokio::spawn(async move {
        loop {
            match pump.pump_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => warn!(error = %e, "queue pump failed; retrying"),
            }
            tokio::time::sleep(pump_every).await;
        }
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                continue;
            }
        };
        let pipeline = pipeline.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let pipeline = pipeline.clone();
                async move { Ok::<_, Infallible>(route(&pipeline, req, peer).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                debug!(error = %e, "connection closed with an error");
            }
        });
    }
}

async fn route(pipeline: &LocalPipeline, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let response = match path.as_str() {
        "/webhook" | "/approve" | "/feedback" => match to_event(req, peer).await {
            Ok(event) => match lambda::to_request(&event) {
                Ok(request) if path == "/webhook" => pipeline.intake.handle(&request).await,
                Ok(request) => pipeline.approve.handle(&request).await,
                Err(rejection) => rejection,
            },
            Err(rejection) => rejection,
        },
        "/healthz" => HttpResponse::json(200, serde_json::json!({"status": "ok"})),
        _ => HttpResponse::error(404, "not_found", "routes: POST /webhook, GET|POST /approve, GET|POST /feedback, GET /healthz"),
    };
    from_response(response)
}

/// The API Gateway HTTP API (payload 2.0) event for a request.
async fn to_event(req: Request<Incoming>, peer: SocketAddr) -> Result<ApiGatewayV2httpRequest, HttpResponse> {
    let (parts, body) = req.into_parts();
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| HttpResponse::error(413, "payload_too_large", format!("bodies are limited to {MAX_BODY} bytes")))?
        .to_bytes();
    let mut ev = ApiGatewayV2httpRequest::default();
    ev.raw_path = Some(parts.uri.path().to_string());
    ev.raw_query_string = Some(parts.uri.query().unwrap_or("").to_string());
    ev.headers = parts.headers.clone();
    // As API Gateway does with payload 2.0: cookies leave the headers for `cookies`.
    let cookies: Vec<String> = ev.headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
    ev.headers.remove("cookie");
    if !cookies.is_empty() {
        ev.cookies = Some(cookies);
    }
    ev.request_context.http.method = parts.method.clone();
    ev.request_context.http.path = Some(parts.uri.path().to_string());
    ev.request_context.http.source_ip = Some(peer.ip().to_string());
    ev.request_context.http.user_agent = parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string);
    if !bytes.is_empty() {
        // API Gateway base64-encodes bodies it does not treat as text; doing it always is exact.
        ev.body = Some(STANDARD.encode(&bytes));
        ev.is_base64_encoded = true;
    }
    Ok(ev)
}

fn from_response(r: HttpResponse) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(r.status);
    for (k, v) in &r.headers {
        builder = builder.header(k, v);
    }
    builder.body(Full::new(Bytes::from(r.body))).unwrap_or_else(|_| {
        let mut fallback = Response::new(Full::new(Bytes::from_static(b"internal error")));
        *fallback.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}
