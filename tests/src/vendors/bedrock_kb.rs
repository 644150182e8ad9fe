//! Strict fake of Amazon Bedrock Knowledge Bases `Retrieve` (bedrock-agent-runtime).

use crate::{FakeServer, Reply};

fn aws_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(status, serde_json::json!({"message": message}).to_string()).with_header("x-amzn-errortype", kind)
}

/// `Retrieve` (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_agent-runtime_Retrieve.html):
/// SigV4 for the `bedrock` service (403 otherwise), `POST /knowledgebases/{id}/retrieve`, a
/// `retrievalQuery.text` of 1–1,000 characters and `numberOfResults` 1–100 (400
/// `ValidationException`), an unknown knowledge base 404 `ResourceNotFoundException`.
pub fn bedrock_knowledge_base(server: &FakeServer, knowledge_base_id: &str) {
    let id = knowledge_base_id.to_string();
    server.unknown_path(aws_error(404, "UnknownOperationException", "Unknown operation"));
    server.guard(move |r| {
        let signed = r.header("authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 ") && a.contains("/bedrock/aws4_request"));
        if !signed {
            return Some(aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token"));
        }
        let rest = r.path.strip_prefix("/knowledgebases/")?;
        let (kb, "retrieve") = rest.split_once('/')? else { return None };
        if r.method != "POST" {
            return Some(aws_error(405, "UnknownOperationException", "Method not allowed"));
        }
        if kb != id {
            return Some(aws_error(404, "ResourceNotFoundException", &format!("Knowledge base {kb} not found")));
        }
        let body = r.json();
        let text = body["retrievalQuery"]["text"].as_str().unwrap_or("");
        if text.is_empty() || text.chars().count() > 1000 {
            return Some(aws_error(400, "ValidationException", "retrievalQuery.text must be 1-1000 characters"));
        }
        let n = body["retrievalConfiguration"]["vectorSearchConfiguration"]["numberOfResults"].as_i64().unwrap_or(5);
        if !(1..=100).contains(&n) {
            return Some(aws_error(400, "ValidationException", "numberOfResults must be 1-100"));
        }
        None
    });
}
