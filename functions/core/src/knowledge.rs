//! Knowledge retrieval: runbooks, wiki exports and past incident reports that fit a case. Locally
//! (and as the embedded default) a BM25 index over a folder of Markdown, HTML and text, split
//! into sections by heading; deployed, Amazon Bedrock Knowledge Bases when one is configured.
//! The dossier cites passages by document and section; a model may cite only what was retrieved.

use async_trait::async_trait;
use bm25::{Document, SearchEngine, SearchEngineBuilder, Tokenizer};
use serde::{Deserialize, Serialize};

/// One retrieved passage: where it comes from and what it says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// The document: a path under the knowledge folder, an S3 URI, `closure <incident>`.
    pub document: String,
    /// The section heading the passage sits under (the document's title when none).
    pub section: String,
    /// The passage, bounded.
    pub text: String,
    pub score: f32,
}

/// Distinct query words a section must contain to be cited.
pub const MIN_SHARED_WORDS: usize = 2;

/// Longest passage kept.
pub const MAX_PASSAGE_CHARS: usize = 600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetrieveError {
    #[error("knowledge base unavailable, will retry: {0}")]
    Retryable(String),
    #[error("knowledge base refused the request: {0}")]
    Refused(String),
}

/// Where passages come from.
#[async_trait]
pub trait Retriever: Send + Sync {
    /// True when the query leaves the process for a service (internal names are then
    /// pseudonymised in it).
    fn external(&self) -> bool;
    async fn retrieve(&self, query: &str, limit: usize) -> Result<Vec<Passage>, RetrieveError>;
}

/// Lower-case word tokens of two or more characters, without the most common English words:
/// runbooks and alert names are English; identifiers (T1059.001, powershell.exe) stay whole.
#[derive(Clone, Copy, Debug, Default)]
pub struct WordTokenizer;

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "in", "is", "it", "its", "of", "on", "or", "that", "the",
    "this", "to", "was", "were", "will", "with",
];

impl Tokenizer for WordTokenizer {
    fn tokenize(&self, input_text: &str) -> Vec<String> {
        input_text
            .split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '_' || c == '-'))
            .map(|w| w.trim_matches(|c: char| c == '.' || c == '-' || c == '_').to_lowercase())
            .filter(|w| w.chars().count() >= 2 && !STOP_WORDS.contains(&w.as_str()))
            .collect()
    }
}

/// A section of a document, before indexing.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub document: String,
    pub section: String,
    pub text: String,
}

/// Splits a document into sections: Markdown by `#` headings, HTML by `<h1>`–`<h3>` (tags
/// stripped), plain text by blank-line paragraphs grouped to a few hundred words.
pub fn sections_of(document: &str, content: &str) -> Vec<Section> {
    let lower = document.to_ascii_lowercase();
    let text = if lower.ends_with(".html") || lower.ends_with(".htm") { html_to_markdown(content) } else { content.to_string() };
    let title = document.rsplit('/').next().unwrap_or(document).to_string();
    let mut out = Vec::new();
    let mut heading = title.clone();
    let mut body = String::new();
    let flush = |heading: &str, body: &mut String, out: &mut Vec<Section>| {
        let t = body.trim();
        if !t.is_empty() {
            out.push(Section { document: document.to_string(), section: heading.to_string(), text: t.to_string() });
        }
        body.clear();
    };
    let markdown = lower.ends_with(".md") || lower.ends_with(".markdown") || lower.ends_with(".html") || lower.ends_with(".htm");
    for line in text.lines() {
        let trimmed = line.trim_start();
        if markdown && trimmed.starts_with('#') {
            flush(&heading, &mut body, &mut out);
            heading = trimmed.trim_start_matches('#').trim().to_string();
            if heading.is_empty() {
                heading = title.clone();
            }
        } else if !markdown && trimmed.is_empty() && body.split_whitespace().count() > 200 {
            flush(&heading, &mut body, &mut out);
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    flush(&heading, &mut body, &mut out);
    out
}

/// Headings to Markdown headings, other tags dropped, entities for `<`, `>`, `&` read.
fn html_to_markdown(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else { break };
        let tag = rest[start + 1..start + end].trim().to_ascii_lowercase();
        match tag.as_str() {
            "h1" => out.push_str("\n# "),
            "h2" => out.push_str("\n## "),
            "h3" => out.push_str("\n### "),
            t if t.starts_with("/h1") || t.starts_with("/h2") || t.starts_with("/h3") || t.starts_with("/p") || t.starts_with("br") => {
                out.push('\n')
            }
            t if t.starts_with("li") => out.push_str("\n- "),
            _ => {}
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&nbsp;", " ")
}

/// A BM25 index over sections, built once.
pub struct KnowledgeIndex {
    sections: Vec<Section>,
    engine: SearchEngine<u32, u32, WordTokenizer>,
}

impl KnowledgeIndex {
    /// Indexes `(document path, content)` pairs.
    pub fn build(documents: &[(String, String)]) -> KnowledgeIndex {
        KnowledgeIndex::from_sections(documents.iter().flat_map(|(d, c)| sections_of(d, c)).collect())
    }

    /// Indexes sections as given (past reports are stored already split).
    pub fn from_sections(sections: Vec<Section>) -> KnowledgeIndex {
        let docs: Vec<Document<u32>> =
            sections.iter().enumerate().map(|(i, s)| Document::new(i as u32, format!("{}\n{}", s.section, s.text))).collect();
        let engine = SearchEngineBuilder::<u32, u32, WordTokenizer>::with_tokenizer_and_documents(WordTokenizer, docs).build();
        KnowledgeIndex { sections, engine }
    }

    pub fn len(&self) -> usize {
        self.sections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// The best sections for `query`, at most `limit`, each with its score. Only sections that
    /// fit: at least `MIN_SHARED_WORDS` distinct query words, and a quarter of the best score (one
    /// shared word — "file", "host" — is no reason to cite a runbook).
    pub fn search(&self, query: &str, limit: usize) -> Vec<Passage> {
        let wanted: std::collections::BTreeSet<String> = WordTokenizer.tokenize(query).into_iter().collect();
        let shared = |id: u32| {
            let Some(s) = self.sections.get(id as usize) else { return 0 };
            let words: std::collections::BTreeSet<String> =
                WordTokenizer.tokenize(&format!("{}\n{}", s.section, s.text)).into_iter().collect();
            wanted.intersection(&words).count()
        };
        let hits: Vec<_> = self.engine.search(query, limit).into_iter().filter(|r| shared(r.document.id) >= MIN_SHARED_WORDS).collect();
        let floor = hits.first().map_or(0.0, |h| h.score * 0.25);
        hits.into_iter()
            .filter(|r| r.score >= floor)
            .filter_map(|r| {
                let s = self.sections.get(r.document.id as usize)?;
                Some(Passage {
                    document: s.document.clone(),
                    section: s.section.clone(),
                    text: crate::text::clean_text(&s.text.split_whitespace().collect::<Vec<_>>().join(" "), MAX_PASSAGE_CHARS),
                    score: r.score,
                })
            })
            .collect()
    }
}

#[async_trait]
impl Retriever for KnowledgeIndex {
    fn external(&self) -> bool {
        false
    }
    async fn retrieve(&self, query: &str, limit: usize) -> Result<Vec<Passage>, RetrieveError> {
        Ok(self.search(query, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<(String, String)> {
        vec![
            (
                "runbooks/encoded-powershell.md".into(),
                "# Encoded PowerShell\nIntro.\n## Triage\nDecode the -EncodedCommand argument; check the parent (winword.exe means a macro).\n## Containment\nIsolate the host when a second stage was downloaded.".into(),
            ),
            ("runbooks/phishing.html".into(), "<h1>Phishing</h1><p>Check the sender domain &amp; reply-to.</p><h2>Click-through</h2><p>Find who clicked the URL.</p>".into()),
            ("notes/ransomware.txt".into(), "Ransomware: look for vssadmin delete shadows and T1490 inhibit system recovery.".into()),
        ]
    }

    #[test]
    fn sections_follow_headings_in_markdown_and_html() {
        let s = sections_of("runbooks/encoded-powershell.md", &docs()[0].1);
        assert_eq!(s.iter().map(|x| x.section.as_str()).collect::<Vec<_>>(), ["Encoded PowerShell", "Triage", "Containment"]);
        let h = sections_of("runbooks/phishing.html", &docs()[1].1);
        assert_eq!(h.iter().map(|x| x.section.as_str()).collect::<Vec<_>>(), ["Phishing", "Click-through"]);
        assert!(h[0].text.contains("sender domain & reply-to"), "{:?}", h[0].text);
        assert_eq!(sections_of("notes/ransomware.txt", &docs()[2].1)[0].section, "ransomware.txt");
    }

    #[test]
    fn the_fitting_section_ranks_first() {
        let index = KnowledgeIndex::build(&docs());
        let hits = index.search("powershell encodedcommand winword.exe macro T1059.001", 3);
        assert_eq!((hits[0].document.as_str(), hits[0].section.as_str()), ("runbooks/encoded-powershell.md", "Triage"), "{hits:?}");
        let hits = index.search("vssadmin shadows T1490", 3);
        assert_eq!(hits[0].document, "notes/ransomware.txt");
        assert!(index.search("kerberoasting", 3).is_empty(), "nothing that fits: nothing cited");
        // Generic words alone ("file", "host") cite nothing.
        assert!(index.search("malicious file on a host", 3).is_empty(), "{:?}", index.search("malicious file on a host", 3));
    }
}
