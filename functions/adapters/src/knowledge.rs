//! Knowledge for the `knowledge` source: a folder of runbooks, wiki exports and past reports read
//! from disk (indexed in core), or an Amazon Bedrock knowledge base queried with `Retrieve`.

use async_trait::async_trait;
use std::path::Path;

use dossier_core::knowledge::{Passage, RetrieveError, Retriever, MAX_PASSAGE_CHARS};

/// Files read from a knowledge folder: Markdown, HTML and text.
const EXTENSIONS: &[&str] = &["md", "markdown", "html", "htm", "txt"];
/// Bounds on what one folder may hold.
const MAX_FILES: usize = 5_000;
const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;

/// Every Markdown, HTML and text file under `root`, as (path relative to `root`, content), in
/// path order. Other files are skipped; an unreadable folder is an error.
pub fn read_folder(root: &Path) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            if !EXTENSIONS.contains(&ext.as_str()) || meta.len() > MAX_FILE_BYTES {
                continue;
            }
            if out.len() >= MAX_FILES {
                return Err(format!("{} holds more than {MAX_FILES} documents", root.display()));
            }
            let content = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            out.push((rel, String::from_utf8_lossy(&content).into_owned()));
        }
    }
    out.sort();
    Ok(out)
}

/// Amazon Bedrock Knowledge Bases `Retrieve` (bedrock-agent-runtime): the passages a vector
/// search finds for the query, with their source location.
pub struct BedrockKnowledgeBase {
    client: aws_sdk_bedrockagentruntime::Client,
    knowledge_base_id: String,
}

impl BedrockKnowledgeBase {
    pub fn new(client: aws_sdk_bedrockagentruntime::Client, knowledge_base_id: String) -> BedrockKnowledgeBase {
        BedrockKnowledgeBase { client, knowledge_base_id }
    }
}

#[async_trait]
impl Retriever for BedrockKnowledgeBase {
    fn external(&self) -> bool {
        true
    }

    async fn retrieve(&self, query: &str, limit: usize) -> Result<Vec<Passage>, RetrieveError> {
        use aws_sdk_bedrockagentruntime::error::ProvideErrorMetadata;
        use aws_sdk_bedrockagentruntime::types::{
            KnowledgeBaseQuery, KnowledgeBaseRetrievalConfiguration, KnowledgeBaseVectorSearchConfiguration,
        };
        let query = KnowledgeBaseQuery::builder().text(query).build();
        let config = KnowledgeBaseRetrievalConfiguration::builder()
            .vector_search_configuration(
                KnowledgeBaseVectorSearchConfiguration::builder().number_of_results(i32::try_from(limit).unwrap_or(5)).build(),
            )
            .build();
        let answer = self
            .client
            .retrieve()
            .knowledge_base_id(&self.knowledge_base_id)
            .retrieval_query(query)
            .retrieval_configuration(config)
            .send()
            .await
            .map_err(|e| {
                let code = e.code().unwrap_or("").to_string();
                let message = format!("{code} {}", e.message().unwrap_or("")).trim().to_string();
                match code.as_str() {
                    "ThrottlingException" | "InternalServerException" | "ServiceQuotaExceededException" | "" => {
                        RetrieveError::Retryable(if message.is_empty() { "Bedrock unreachable".into() } else { message })
                    }
                    _ => RetrieveError::Refused(message),
                }
            })?;
        Ok(answer
            .retrieval_results()
            .iter()
            .filter_map(|r| {
                let text = r.content()?.text();
                let location = r.location();
                let document = location
                    .and_then(|l| l.s3_location().and_then(|s| s.uri()).or_else(|| l.web_location().and_then(|w| w.url())))
                    .or_else(|| location.and_then(|l| l.confluence_location().and_then(|c| c.url())))
                    .unwrap_or("knowledge base")
                    .to_string();
                // The first line of a chunk is usually its heading; the document name otherwise.
                let section = text.lines().next().map(|l| l.trim_start_matches('#').trim()).filter(|l| !l.is_empty() && l.len() <= 120);
                Some(Passage {
                    section: section.unwrap_or("passage").to_string(),
                    document,
                    text: dossier_core::text::clean_text(text, MAX_PASSAGE_CHARS),
                    score: r.score().unwrap_or(0.0) as f32,
                })
            })
            .collect())
    }
}
