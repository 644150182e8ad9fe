//! Lambda event glue: API Gateway HTTP API (payload v2) events to and from the core's plain HTTP
//! types, and SQS batches with partial batch failure reporting.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{HeaderName, HeaderValue};
use tracing::error;

use dossier_core::http::{HttpRequest, HttpResponse};
use dossier_core::ports::{Queue, QueueName};
use dossier_core::stages::{dispose, Deadline, Disposition, HttpHandler, MessageHandler};
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;

pub fn to_request(ev: &ApiGatewayV2httpRequest) -> Result<HttpRequest, HttpResponse> {
    let body = match (&ev.body, ev.is_base64_encoded) {
        (None, _) => Vec::new(),
        (Some(b), false) => b.as_bytes().to_vec(),
        (Some(b), true) => {
            STANDARD.decode(b).map_err(|_| HttpResponse::error(400, "invalid_body", "the request body is not valid base64"))?
        }
    };
    let mut headers: Vec<(String, String)> =
        ev.headers.iter().filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_string()))).collect();
    // Payload format 2.0 moves the browser's cookies out of the headers into `cookies`.
    if let Some(cookies) = ev.cookies.as_ref().filter(|c| !c.is_empty()) {
        headers.push(("cookie".into(), cookies.join("; ")));
    }
    Ok(HttpRequest {
        method: ev.request_context.http.method.as_str().to_string(),
        path: ev.raw_path.clone().or_else(|| ev.request_context.http.path.clone()).unwrap_or_default(),
        headers,
        query: ev.raw_query_string.as_deref().map(form_pairs).unwrap_or_default(),
        body,
        source_ip: ev.request_context.http.source_ip.clone(),
    })
}

fn form_pairs(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

pub fn to_response(r: HttpResponse) -> ApiGatewayV2httpResponse {
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(r.status);
    for (k, v) in r.headers {
        // Payload format 2.0 sets cookies from `cookies`, one entry per Set-Cookie.
        if k.eq_ignore_ascii_case("set-cookie") {
            out.cookies.push(v);
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v.as_str())) {
            out.headers.insert(name, value);
        }
    }
    out.body = Some(Body::Text(r.body));
    out
}

/// Handles an SQS batch with the core's disposition rule: failed messages are reported so only
/// they come back (and reach the DLQ intact after the redrive limit); a message that waits is
/// sent again with its delay and acknowledged, so waiting never counts toward the DLQ. The
/// deadline is the invocation's (the Lambda context): stages cut their budgets from it.
pub async fn process_sqs_batch(
    handler: &dyn MessageHandler,
    queue: &dyn Queue,
    queue_name: &QueueName,
    event: SqsEvent,
    deadline: Deadline,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let Some(body) = record.body.as_deref() else {
            error!(message_id = %id, "SQS record without a body");
            response.add_failure(id);
            continue;
        };
        if let Disposition::Fail { .. } = dispose(handler, queue, queue_name, body, deadline).await {
            response.add_failure(id);
        }
    }
    response
}

/// Runs an HTTP door as a Lambda behind an API Gateway HTTP API (payload 2.0).
pub async fn serve_http(handler: Arc<dyn HttpHandler>) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let handler = handler.clone();
        async move {
            let response = match to_request(&event.payload) {
                Ok(request) => handler.handle(&request).await,
                Err(rejection) => rejection,
            };
            Ok::<_, lambda_runtime::Error>(to_response(response))
        }
    }))
    .await
}

/// Set when the function received its first event: init is over.
static SERVING: std::sync::OnceLock<()> = std::sync::OnceLock::new();
static SERVING_CHANGED: tokio::sync::Notify = tokio::sync::Notify::const_new();

fn mark_serving() {
    if SERVING.set(()).is_ok() {
        SERVING_CHANGED.notify_waiters();
    }
}

/// Resolves once the function has received its first event: for work that must not lengthen
/// init (a cold start) nor compete with it for the network.
pub async fn serving() {
    loop {
        let changed = SERVING_CHANGED.notified();
        if SERVING.get().is_some() {
            return;
        }
        changed.await;
    }
}

/// Runs a queue consumer as a Lambda behind an SQS event source mapping with
/// `ReportBatchItemFailures`.
pub async fn serve_queue(
    handler: Arc<dyn MessageHandler>,
    queue: Arc<dyn Queue>,
    queue_name: QueueName,
) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        mark_serving();
        let (handler, queue, queue_name) = (handler.clone(), queue.clone(), queue_name.clone());
        let deadline = Deadline { at_ms: i64::try_from(event.context.deadline).unwrap_or(i64::MAX) };
        async move { Ok::<_, lambda_runtime::Error>(process_sqs_batch(&*handler, &*queue, &queue_name, event.payload, deadline).await) }
    }))
    .await
}
