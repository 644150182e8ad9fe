//! Knowledge for the `knowledge` source: a folder read from disk, and Amazon Bedrock Knowledge
//! Bases `Retrieve` against its strict fake.

use dossier_adapters::knowledge::{read_folder, BedrockKnowledgeBase};
use dossier_core::knowledge::{RetrieveError, Retriever};
use dossier_tests::{vendors, FakeServer, Reply};

#[test]
fn a_folder_is_read_recursively_markdown_html_and_text_only() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/local/samples/knowledge"));
    let docs = read_folder(root).unwrap();
    let names: Vec<&str> = docs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["reports/2024-03-ransomware-precursor.md", "runbooks/brute-force.md", "runbooks/encoded-powershell.md", "runbooks/phishing.html"]
    );
    assert!(read_folder(std::path::Path::new("/nonexistent/knowledge")).is_err());
}

#[tokio::test]
async fn bedrock_retrieve_maps_passages_and_faults() {
    let fake = FakeServer::start().await;
    vendors::bedrock_knowledge_base(&fake, "KB12345678");
    fake.once(
        "POST",
        "/knowledgebases/KB12345678/retrieve",
        Reply::json(
            200,
            r##"{"retrievalResults": [
                {"content": {"text": "# Triage\nDecode the -EncodedCommand argument."}, "location": {"type": "S3", "s3Location": {"uri": "s3://soc-wiki/runbooks/encoded-powershell.md"}}, "score": 0.82},
                {"content": {"text": "Isolate the host."}, "location": {"type": "WEB", "webLocation": {"url": "https://wiki.example/ir"}}, "score": 0.41}
            ]}"##,
        ),
    );
    // After that, throttled (the SDK's own retries see it too).
    fake.on(
        "POST",
        "/knowledgebases/KB12345678/retrieve",
        Reply::json(429, r#"{"message": "Rate exceeded"}"#).with_header("x-amzn-errortype", "ThrottlingException"),
    );
    let sdk = dossier_adapters::aws::sdk_config_for(&fake.url()).await;
    let kb = BedrockKnowledgeBase::new(aws_sdk_bedrockagentruntime::Client::new(&sdk), "KB12345678".into());
    assert!(kb.external());
    let passages = kb.retrieve("T1059.001 PowerShell", 3).await.unwrap();
    assert_eq!(passages.len(), 2);
    assert_eq!((passages[0].document.as_str(), passages[0].section.as_str()), ("s3://soc-wiki/runbooks/encoded-powershell.md", "Triage"));
    assert_eq!(passages[1].document, "https://wiki.example/ir");
    let sent = fake.requests()[0].json();
    assert_eq!(sent["retrievalQuery"]["text"], "T1059.001 PowerShell");
    assert_eq!(sent["retrievalConfiguration"]["vectorSearchConfiguration"]["numberOfResults"], 3);
    assert!(matches!(kb.retrieve("x", 3).await, Err(RetrieveError::Retryable(_))), "throttled: later");
    let other = BedrockKnowledgeBase::new(aws_sdk_bedrockagentruntime::Client::new(&sdk), "KBNOTTHERE0".into());
    assert!(matches!(other.retrieve("x", 3).await, Err(RetrieveError::Refused(m)) if m.contains("ResourceNotFound")));
}
