//! Captures every log line a case produces, in the exact JSON format Lambda writes to CloudWatch,
//! at `debug` (stricter than production's `info`), and checks that no secret and nothing sent to
//! or received from the model appears in any of them. Its own test binary: it owns the global
//! subscriber.

use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dossier_adapters::llm::OpenAiCompatible;
use dossier_core::config::{Phase, PipelineConfig};
use dossier_core::domain::CaseKey;
use dossier_core::embedded::RecordingXdr;
use dossier_core::http::HttpRequest;
use dossier_core::ports::{Clock, SystemClock};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, IntelFeed, PerIndicator, Source};
use dossier_core::stages::HttpHandler;
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};
use dossier_tests::{FakeServer, Reply};
use tracing_subscriber::EnvFilter;

const DEMO: &str = include_str!("../../infra/local/samples/xdr/demo_powershell_stager.json");
const FEED: &str = include_str!("../../infra/local/samples/intel-feed.csv");

const WEBHOOK_SECRET: &str = "whsec-LOGTEST-7f3a9c";
const LLM_KEY: &str = "sk-LOGTEST-b81d22e4";
const SIGNING_SECRET: [u8; 32] = [0x5a; 32];
/// In every model answer: if it shows up in a log line, raw model output was logged.
const ANSWER_MARKER: &str = "ANSWER-MARKER-q8z";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_prompt_or_model_answer_reaches_a_log_line() {
    let logs = Captured::default();
    let sink = logs.clone();
    dossier_adapters::telemetry::init_json_to(EnvFilter::new("debug"), move || sink.clone());

    // The model answers with something unusable twice (first try and the repair), so the
    // validation-failure paths log too.
    let fake = FakeServer::start().await;
    let bad = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": format!("{{\"summary\": \"{ANSWER_MARKER} j.doe on fin-ws-0231\", oops")}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 10, "completion_tokens": 5}});
    fake.on("POST", "/v1/chat/completions", Reply::json(200, bad.to_string()));

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sources: Vec<Arc<dyn Source>> =
        vec![Arc::new(AttackSource), Arc::new(PerIndicator::new(IntelFeed::from_csv(FEED).expect("sample feed")))];
    let xdr = Arc::new(RecordingXdr::serving(DEMO.to_string()));
    let model =
        Arc::new(OpenAiCompatible::new(&format!("{}/v1", fake.url()), Some(LLM_KEY.into()), "fake-gpt", Duration::from_millis(1500)));
    let pipeline = LocalPipeline::new(PipelineParts {
        backend: Backend::embedded(clock.clone()),
        config: PipelineConfig {
            phase: Phase(2),
            approvers: vec!["soc-lead".into()],
            public_base_url: "https://dossier.example".into(),
            ..PipelineConfig::default()
        },
        clock: clock.clone(),
        xdr: xdr.clone(),
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k1".into(), secret: SIGNING_SECRET.to_vec() }]).expect("signer")),
        webhook_secrets: dossier_core::xdr::WebhookSecrets::single("default", WEBHOOK_SECRET.as_bytes()).unwrap(),
        model: Some(model),
        identity: None,
        notifiers: Vec::new(),
    });

    // A refused webhook (wrong secret) logs too; then the real one.
    for bearer in ["whsec-wrong", WEBHOOK_SECRET] {
        let req = HttpRequest {
            method: "POST".into(),
            path: "/webhook".into(),
            headers: vec![("authorization".into(), format!("Bearer {bearer}"))],
            body: json!({"case_id": "4711", "severity": "high"}).to_string().into_bytes(),
            ..Default::default()
        };
        pipeline.intake.handle(&req).await;
    }
    let key = CaseKey::new("default", "4711").expect("key");
    assert!(pipeline.run_until_settled(std::slice::from_ref(&key), Duration::from_secs(60)).await.expect("pump"));
    let case = pipeline.case(&key).await.expect("store").expect("case exists");
    assert!(case.draft_id.is_some(), "the case completed with a dossier despite the model");
    assert!(!xdr.writes().is_empty(), "the dossier was written back");

    let prompts: Vec<String> =
        fake.requests().iter().map(|r| r.json()["messages"][1]["content"].as_str().unwrap_or("").to_string()).collect();
    assert!(!prompts.is_empty(), "the model was asked");
    // Signed link tokens (feedback, approvals) as they appear in the written comments.
    let written: String = xdr.writes().iter().map(|w| w.body.to_string()).collect();
    let tokens: Vec<String> = written
        .split("?t=")
        .skip(1)
        .map(|rest| rest.chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect())
        .collect();
    assert!(!tokens.is_empty(), "the comment carries signed links");

    let text = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf-8 logs");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 10, "logs were captured: {} lines", lines.len());
    for line in &lines {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(parsed.get("level").is_some() && parsed.get("fields").is_some(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"span\"") && l.contains("4711")), "stage logs carry the case id in their span");

    let hex_key: String = SIGNING_SECRET.iter().map(|b| format!("{b:02x}")).collect();
    let mut forbidden: Vec<(String, &str)> = vec![
        (WEBHOOK_SECRET.into(), "webhook secret"),
        (LLM_KEY.into(), "model API key"),
        (hex_key, "signing key (hex)"),
        ("WlpaWlpa".into(), "signing key (base64)"),
        (ANSWER_MARKER.into(), "raw model answer"),
        (dossier_core::synthesis::PROMPT_TEXT.lines().find(|l| l.len() > 40).unwrap_or_default().to_string(), "system prompt"),
    ];
    for p in &prompts {
        // Any 60-character run of the evidence sent to the model (between the tags; the rest of
        // a repair request is Dossier's own wording, such as the validation error it logs).
        let evidence = p.split("<evidence>").nth(1).and_then(|e| e.split("</evidence>").next()).unwrap_or(p);
        let chars: Vec<char> = evidence.chars().collect();
        for chunk in chars.chunks(60).filter(|c| c.len() == 60) {
            forbidden.push((chunk.iter().collect(), "evidence sent to the model"));
        }
    }
    for token in &tokens {
        forbidden.push((token.clone(), "signed link token"));
    }
    for (needle, what) in &forbidden {
        if let Some(line) = lines.iter().find(|l| l.contains(needle.as_str())) {
            panic!("{what} in a log line (`{needle}`): {line}");
        }
    }
}
