//! The prompt and the answer schema are files in the repository (`functions/core/prompts/`),
//! versioned by name; every draft records the version and the hash of what was sent.

use sha2::{Digest, Sha256};

pub const PROMPT_VERSION: &str = "dossier-v2";
pub const PROMPT_TEXT: &str = include_str!("../../prompts/dossier-v2.md");
const SCHEMA_TEXT: &str = include_str!("../../prompts/dossier.schema.json");

/// First 16 hex digits of SHA-256 over the prompt and the schema.
pub fn prompt_hash() -> String {
    let mut h = Sha256::new();
    h.update(PROMPT_TEXT.as_bytes());
    h.update(SCHEMA_TEXT.as_bytes());
    hex::encode(h.finalize())[..16].to_string()
}

pub fn schema() -> serde_json::Value {
    serde_json::from_str(SCHEMA_TEXT).expect("the bundled schema is valid JSON")
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_is_strict_mode_compatible() {
        // OpenAI strict mode: every object lists all its properties as required, no extras.
        fn check(v: &serde_json::Value, path: &str) {
            if v.get("type").and_then(|t| t.as_str()) == Some("object") {
                let props = v["properties"].as_object().unwrap_or_else(|| panic!("{path}: properties"));
                let required: Vec<&str> = v["required"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
                assert_eq!(v["additionalProperties"], false, "{path}");
                for k in props.keys() {
                    assert!(required.contains(&k.as_str()), "{path}.{k} not required");
                    check(&props[k], &format!("{path}.{k}"));
                }
            }
            if let Some(items) = v.get("items") {
                check(items, &format!("{path}[]"));
            }
        }
        check(&super::schema(), "$");
        assert_eq!(super::prompt_hash().len(), 16);
    }
}
