//! Test support shared by the end-to-end and adapter tests: a programmable local HTTP server that
//! plays third-party APIs (Cortex XDR, VirusTotal) from recorded payloads and misbehaves on
//! purpose, fixture loading, and the moto server endpoint the test script started.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

pub mod vendors;
pub mod xdr_tenant;

/// The approval door's request for a signed link's decision, as the confirmation page posts it.
pub fn decide(link_url: &str, decision: &str) -> dossier_core::http::HttpRequest {
    let token = link_url.split("t=").nth(1).unwrap_or_default();
    dossier_core::http::HttpRequest {
        method: "POST".into(),
        path: "/approve".into(),
        headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
        body: format!("t={token}&decision={decision}").into_bytes(),
        ..Default::default()
    }
}

/// One lookup of an indicator source, with the requests it counted.
pub async fn lookup(
    src: &dyn dossier_core::sources::IndicatorSource,
    i: &dossier_core::domain::Indicator,
) -> (Result<dossier_core::sources::Lookup, dossier_core::sources::LookupError>, u32) {
    let calls = dossier_core::sources::CallCounter::default();
    let r = src.lookup(i, &calls).await;
    (r, calls.get())
}

/// The verdict of a lookup that must have found one.
pub fn found(r: Result<dossier_core::sources::Lookup, dossier_core::sources::LookupError>) -> dossier_core::sources::IndicatorVerdict {
    match r {
        Ok(dossier_core::sources::Lookup::Found(v)) => v,
        other => panic!("expected a verdict, got {other:?}"),
    }
}

/// A recorded fixture from `tests/fixtures/` (copied from the shared fixtures; see SOURCES.md).
pub fn fixture(rel: &str) -> String {
    let path = fixtures_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The moto server `tests/run.sh` started. Tests that need AWS fail loudly without it: a skipped
/// AWS test would pass without checking anything.
pub fn moto_endpoint() -> String {
    std::env::var("DOSSIER_TEST_AWS_ENDPOINT")
        .unwrap_or_else(|_| panic!("DOSSIER_TEST_AWS_ENDPOINT is not set: run the tests with tests/run.sh, which starts moto server"))
}

/// A unique prefix per test so tests share one moto server without seeing each other's resources.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("t{}-{test}-{nanos:x}-", std::process::id())
}

/// A reply computed from the request.
#[derive(Clone)]
pub struct DynamicReply(Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>);

impl std::fmt::Debug for DynamicReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<dynamic reply>")
    }
}

#[derive(Clone, Debug)]
pub enum Reply {
    /// Status, body, extra headers.
    Body(u16, String, Vec<(String, String)>),
    /// Waits, then answers.
    Delay(Duration, Box<Reply>),
    /// Computed from the request (stateful fakes: rate limits, per-id answers).
    Dynamic(DynamicReply),
}

impl Reply {
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply::Body(status, body.into(), vec![("content-type".into(), "application/json".into())])
    }
    pub fn with_header(self, name: &str, value: &str) -> Reply {
        match self {
            Reply::Body(s, b, mut h) => {
                h.push((name.into(), value.into()));
                Reply::Body(s, b, h)
            }
            other => other,
        }
    }
    pub fn delayed(self, by: Duration) -> Reply {
        Reply::Delay(by, Box::new(self))
    }
    pub fn dynamic(f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Reply {
        Reply::Dynamic(DynamicReply(Arc::new(f)))
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`), empty when none.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// The query string's parameters, decoded, in order.
    pub fn params(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_bytes()).into_owned().collect()
    }
    pub fn param(&self, name: &str) -> Option<String> {
        self.params().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

struct Route {
    method: String,
    /// Exact path, or a prefix when it ends with `*`.
    path: String,
    once: VecDeque<Reply>,
    default: Option<Reply>,
}

impl Route {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.method == method && if let Some(prefix) = self.path.strip_suffix('*') { path.starts_with(prefix) } else { self.path == path }
    }
}

type Guard = Arc<dyn Fn(&Recorded) -> Option<Reply> + Send + Sync>;

#[derive(Default)]
struct State {
    /// Checked before any route, as the vendor checks credentials and request shape: a refusal
    /// answers instead of the route.
    guard: Option<Guard>,
    /// The vendor's answer for a path it does not serve (default `404 {"error":"no route"}`).
    unknown: Option<Reply>,
    routes: Vec<Route>,
    requests: Vec<Recorded>,
}

/// A local HTTP server with programmable routes. Unknown routes answer 404 `{"error":"no route"}`.
pub struct FakeServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub async fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(answer(&st, req).await) }
                    });
                    // Connection errors (client went away after a timeout) are expected in fault tests.
                    drop(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await);
                });
            }
        });
        FakeServer { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn route(&self, method: &str, path: &str) -> usize {
        let mut st = self.state.lock().expect("fake state");
        if let Some(i) = st.routes.iter().position(|r| r.method == method && r.path == path) {
            return i;
        }
        st.routes.push(Route { method: method.into(), path: path.into(), once: VecDeque::new(), default: None });
        st.routes.len() - 1
    }

    /// The answer for every request to this route (after any queued `once` answers).
    pub fn on(&self, method: &str, path: &str, reply: Reply) -> &Self {
        let i = self.route(method, path);
        self.state.lock().expect("fake state").routes[i].default = Some(reply);
        self
    }

    /// An answer used once, in order, before the default.
    pub fn once(&self, method: &str, path: &str, reply: Reply) -> &Self {
        let i = self.route(method, path);
        self.state.lock().expect("fake state").routes[i].once.push_back(reply);
        self
    }

    /// Checks every request before routing it, as the vendor does (credentials, method, required
    /// parameters, body shape): `Some(reply)` refuses with the vendor's documented error.
    pub fn guard(&self, check: impl Fn(&Recorded) -> Option<Reply> + Send + Sync + 'static) -> &Self {
        self.state.lock().expect("fake state").guard = Some(Arc::new(check));
        self
    }

    /// The vendor's answer for a path it does not serve.
    pub fn unknown_path(&self, reply: Reply) -> &Self {
        self.state.lock().expect("fake state").unknown = Some(reply);
        self
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().expect("fake state").requests.clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }
}

async fn answer(state: &Mutex<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let recorded =
        Recorded { method: method.clone(), path: path.clone(), query, headers, body: String::from_utf8_lossy(&body).into_owned() };
    let (guard, unknown) = {
        let mut st = state.lock().expect("fake state");
        st.requests.push(recorded.clone());
        (st.guard.clone(), st.unknown.clone())
    };
    let refused = guard.and_then(|g| g(&recorded));
    let reply = refused.or_else(|| {
        let mut st = state.lock().expect("fake state");
        st.routes.iter_mut().find(|r| r.matches(&method, &path)).and_then(|r| r.once.pop_front().or_else(|| r.default.clone()))
    });
    let mut reply = reply.or(unknown).unwrap_or_else(|| Reply::json(404, r#"{"error":"no route"}"#));
    loop {
        match reply {
            Reply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                reply = *inner;
            }
            Reply::Dynamic(f) => reply = (f.0)(&recorded),
            Reply::Body(status, body, headers) => {
                let mut b = Response::builder().status(status);
                for (k, v) in headers {
                    b = b.header(k, v);
                }
                return b.body(Full::new(Bytes::from(body))).expect("valid fake response");
            }
        }
    }
}
