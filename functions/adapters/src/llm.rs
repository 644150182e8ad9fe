//! Language models: any OpenAI-compatible chat completions endpoint (OpenAI, Azure OpenAI, vLLM,
//! Ollama, llama.cpp server), Anthropic Messages, and Amazon Bedrock's Converse API through the
//! AWS SDK. Each asks for schema-shaped JSON and has a timeout; the synthesis stage retries.

use async_trait::async_trait;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, SpecificToolChoice, SystemContentBlock, Tool, ToolChoice,
    ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::{Document, Number};
use serde_json::{json, Value};
use std::time::Duration;

use dossier_core::synthesis::{LanguageModel, LlmError, LlmRequest, LlmResponse};

const TOOL_NAME: &str = "write_dossier";
/// One model call; retries belong to the synthesis stage, which knows the time left.
async fn post_json(req: reqwest::RequestBuilder) -> Result<Value, LlmError> {
    use crate::http_client::{exchange, NoAnswer, Status};
    let reply = exchange(req).await.map_err(|e| match e {
        NoAnswer::TimedOut => LlmError::Timeout,
        other => LlmError::Unavailable(other.to_string()),
    })?;
    let short = reply.short_body();
    match reply.status {
        Status::Success => serde_json::from_str(&reply.body).map_err(|e| LlmError::BadReply(format!("not JSON: {e}"))),
        Status::Unauthorized | Status::Forbidden | Status::PaymentRequired => Err(LlmError::Unauthorized(short)),
        Status::RateLimited => Err(LlmError::RateLimited(short)),
        Status::Server => Err(LlmError::Unavailable(format!("HTTP {}: {short}", reply.code))),
        Status::NotFound | Status::Rejected | Status::Unexpected => Err(LlmError::BadReply(format!("HTTP {}: {short}", reply.code))),
    }
}

// ---------------------------------------------------------------------------------------------

/// `POST {base}/chat/completions` with `response_format: json_schema` (strict).
pub struct OpenAiCompatible {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    model: String,
    api_version: Option<String>,
}

impl OpenAiCompatible {
    /// Azure OpenAI's GA data-plane version, used when a classic deployment URL names none.
    pub const AZURE_DEFAULT_API_VERSION: &'static str = "2024-10-21";

    /// `base_url` ends before `/chat/completions`, e.g. `https://api.openai.com/v1`, or a classic
    /// Azure OpenAI deployment `https://<resource>.openai.azure.com/openai/deployments/<name>`.
    pub fn new(base_url: &str, api_key: Option<String>, model: &str, timeout: Duration) -> OpenAiCompatible {
        OpenAiCompatible {
            http: crate::http_client::client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            model: model.to_string(),
            api_version: None,
        }
    }

    /// The `api-version` for a classic Azure deployment URL (default [`Self::AZURE_DEFAULT_API_VERSION`]).
    pub fn with_api_version(mut self, version: Option<String>) -> OpenAiCompatible {
        self.api_version = version.filter(|v| !v.trim().is_empty());
        self
    }

    /// A classic Azure OpenAI deployment: `api-key` header and an `api-version` query parameter.
    fn is_azure_deployment(&self) -> bool {
        self.base_url.contains("/openai/deployments/")
    }

    /// Reasoning models (o-series, GPT-5) refuse `max_tokens` and a non-default `temperature`;
    /// they take `max_completion_tokens`.
    fn is_reasoning_model(&self) -> bool {
        let m = self.model.to_ascii_lowercase();
        let m = m.rsplit('/').next().unwrap_or(&m);
        ["o1", "o3", "o4", "gpt-5"].iter().any(|p| m == *p || m.starts_with(&format!("{p}-")))
    }

    fn body(&self, r: &LlmRequest) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": [{"role": "system", "content": r.system}, {"role": "user", "content": r.user}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "dossier", "strict": true, "schema": r.schema}},
        });
        if self.is_reasoning_model() {
            body["max_completion_tokens"] = json!(r.max_tokens);
        } else {
            body["max_tokens"] = json!(r.max_tokens);
            body["temperature"] = json!(0);
        }
        body
    }
}

#[async_trait]
impl LanguageModel for OpenAiCompatible {
    fn id(&self) -> &str {
        &self.model
    }

    async fn complete(&self, r: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let body = self.body(r);
        {
            let mut url = format!("{}/chat/completions", self.base_url);
            if self.is_azure_deployment() {
                let version = self.api_version.as_deref().unwrap_or(Self::AZURE_DEFAULT_API_VERSION);
                url = format!("{url}?api-version={}", crate::sources::enc(version));
            }
            let mut req = self.http.post(url).json(&body);
            if self.is_azure_deployment() {
                if let Some(k) = &self.api_key {
                    req = req.header("api-key", k);
                }
            } else if let Some(k) = &self.api_key {
                req = req.bearer_auth(k);
            }
            let v = post_json(req).await?;
            let choice = v.pointer("/choices/0").ok_or_else(|| LlmError::BadReply("no choices".into()))?;
            if let Some(refusal) = choice.pointer("/message/refusal").and_then(Value::as_str) {
                return Err(LlmError::Refused(refusal.chars().take(200).collect()));
            }
            if choice.get("finish_reason").and_then(Value::as_str) == Some("length") {
                return Err(LlmError::BadReply("the answer was cut at the token limit".into()));
            }
            let text = choice
                .pointer("/message/content")
                .and_then(Value::as_str)
                .ok_or_else(|| LlmError::BadReply("no message content".into()))?
                .to_string();
            Ok(LlmResponse {
                text,
                input_tokens: v.pointer("/usage/prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
                output_tokens: v.pointer("/usage/completion_tokens").and_then(Value::as_u64).unwrap_or(0),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// `POST {base}/v1/messages`, the answer forced through one tool whose input schema is ours.
pub struct Anthropic {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    model: String,
}

impl Anthropic {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com";

    pub fn new(base_url: &str, api_key: String, model: &str, timeout: Duration) -> Anthropic {
        Anthropic {
            http: crate::http_client::client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            model: model.to_string(),
        }
    }
}

#[async_trait]
impl LanguageModel for Anthropic {
    fn id(&self) -> &str {
        &self.model
    }

    async fn complete(&self, r: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let body = json!({
            "model": self.model,
            "max_tokens": r.max_tokens,
            "temperature": 0,
            "system": r.system,
            "messages": [{"role": "user", "content": r.user}],
            "tools": [{"name": TOOL_NAME, "description": "Record the dossier.", "input_schema": r.schema}],
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
        });
        {
            let req = self
                .http
                .post(format!("{}/v1/messages", self.base_url))
                .header("x-api-key", &self.api_key)
                .header("anthropic-version", "2023-06-01")
                .json(&body);
            let v = post_json(req).await?;
            match v.get("stop_reason").and_then(Value::as_str) {
                Some("refusal") => return Err(LlmError::Refused("the model refused".into())),
                Some("max_tokens") => return Err(LlmError::BadReply("the answer was cut at the token limit".into())),
                _ => {}
            }
            let content = v.get("content").and_then(Value::as_array).ok_or_else(|| LlmError::BadReply("no content".into()))?;
            let text = content
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("tool_use"))
                .and_then(|c| c.get("input"))
                .map(Value::to_string)
                .or_else(|| content.iter().find_map(|c| c.get("text").and_then(Value::as_str).map(str::to_string)))
                .ok_or_else(|| LlmError::BadReply("no tool_use block".into()))?;
            Ok(LlmResponse {
                text,
                input_tokens: v.pointer("/usage/input_tokens").and_then(Value::as_u64).unwrap_or(0),
                output_tokens: v.pointer("/usage/output_tokens").and_then(Value::as_u64).unwrap_or(0),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Amazon Bedrock Converse, IAM auth through the SDK, the answer forced through one tool.
pub struct Bedrock {
    client: aws_sdk_bedrockruntime::Client,
    model_id: String,
    timeout: Duration,
}

impl Bedrock {
    pub fn new(client: aws_sdk_bedrockruntime::Client, model_id: &str, timeout: Duration) -> Bedrock {
        Bedrock { client, model_id: model_id.to_string(), timeout }
    }
}

/// JSON → Smithy document (the SDK's tool-schema type) and back.
pub fn to_document(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Document::Number(Number::PosInt(u)),
            (_, Some(i), _) => Document::Number(Number::NegInt(i)),
            (_, _, f) => Document::Number(Number::Float(f.unwrap_or(0.0))),
        },
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        Value::Object(o) => Document::Object(o.iter().map(|(k, v)| (k.clone(), to_document(v))).collect()),
    }
}

pub fn from_document(d: &Document) -> Value {
    match d {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => json!(u),
        Document::Number(Number::NegInt(i)) => json!(i),
        Document::Number(Number::Float(f)) => json!(f),
        Document::String(s) => Value::String(s.clone()),
        Document::Array(a) => Value::Array(a.iter().map(from_document).collect()),
        Document::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), from_document(v))).collect()),
    }
}

#[async_trait]
impl LanguageModel for Bedrock {
    fn id(&self) -> &str {
        &self.model_id
    }

    async fn complete(&self, r: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let spec = ToolSpecification::builder()
            .name(TOOL_NAME)
            .description("Record the dossier.")
            .input_schema(ToolInputSchema::Json(to_document(&r.schema)))
            .build()
            .map_err(|e| LlmError::BadReply(e.to_string()))?;
        let tools = ToolConfiguration::builder()
            .tools(Tool::ToolSpec(spec))
            .tool_choice(ToolChoice::Tool(
                SpecificToolChoice::builder().name(TOOL_NAME).build().map_err(|e| LlmError::BadReply(e.to_string()))?,
            ))
            .build()
            .map_err(|e| LlmError::BadReply(e.to_string()))?;
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(r.user.clone()))
            .build()
            .map_err(|e| LlmError::BadReply(e.to_string()))?;
        let call = self
            .client
            .converse()
            .model_id(&self.model_id)
            .system(SystemContentBlock::Text(r.system.clone()))
            .messages(message)
            .inference_config(
                InferenceConfiguration::builder().max_tokens(i32::try_from(r.max_tokens).unwrap_or(4096)).temperature(0.0).build(),
            )
            .tool_config(tools)
            .send();
        // The SDK retries throttling and 5xx itself (standard retry mode).
        let out = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => return Err(LlmError::Timeout),
            Ok(Err(e)) => {
                use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
                let code = e.code().unwrap_or("").to_string();
                let msg = format!("{code} {}", e.message().unwrap_or("")).trim().to_string();
                return Err(match code.as_str() {
                    "ThrottlingException" | "ServiceQuotaExceededException" => LlmError::RateLimited(msg),
                    "AccessDeniedException" | "UnrecognizedClientException" => LlmError::Unauthorized(msg),
                    "ModelTimeoutException" => LlmError::Timeout,
                    "ValidationException" | "ResourceNotFoundException" => LlmError::BadReply(msg),
                    _ => LlmError::Unavailable(if msg.is_empty() { "Bedrock call failed".into() } else { msg }),
                });
            }
            Ok(Ok(out)) => out,
        };
        use aws_sdk_bedrockruntime::types::StopReason;
        if matches!(out.stop_reason(), StopReason::MaxTokens) {
            return Err(LlmError::BadReply("the answer was cut at the token limit".into()));
        }
        let content = out.output().and_then(|o| o.as_message().ok()).map(|m| m.content().to_vec()).unwrap_or_default();
        let text = content
            .iter()
            .find_map(|c| c.as_tool_use().ok().map(|t| from_document(t.input()).to_string()))
            .or_else(|| content.iter().find_map(|c| c.as_text().ok().cloned()))
            .ok_or_else(|| LlmError::BadReply("no toolUse block".into()))?;
        let usage = out.usage();
        Ok(LlmResponse {
            text,
            input_tokens: usage.map_or(0, |u| u64::try_from(u.input_tokens()).unwrap_or(0)),
            output_tokens: usage.map_or(0, |u| u64::try_from(u.output_tokens()).unwrap_or(0)),
        })
    }
}
