//! The language-model port. Adapters: Amazon Bedrock (Converse), any OpenAI-compatible chat
//! completions endpoint, Anthropic Messages.

use async_trait::async_trait;

#[derive(Clone, Debug, PartialEq)]
pub struct LlmRequest {
    pub system: String,
    pub user: String,
    /// The JSON Schema the answer must follow.
    pub schema: serde_json::Value,
    pub max_tokens: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LlmResponse {
    /// The JSON text of the answer.
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("model rate limited: {0}")]
    RateLimited(String),
    #[error("model unavailable: {0}")]
    Unavailable(String),
    #[error("model timed out")]
    Timeout,
    #[error("model credentials or access rejected: {0}")]
    Unauthorized(String),
    #[error("model refused: {0}")]
    Refused(String),
    #[error("model answer unusable: {0}")]
    BadReply(String),
}

#[async_trait]
pub trait LanguageModel: Send + Sync {
    /// The model id recorded with each draft.
    fn id(&self) -> &str;
    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError>;
}
