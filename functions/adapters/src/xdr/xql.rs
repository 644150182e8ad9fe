//! XQL in the tenant's data lake: start a query, ask for its results once, read a stream of
//! more than 1,000 rows. Waiting, resuming and the tenant's query slots are the history
//! source's (`sources::xql_history`).

use serde_json::{json, Value};

use dossier_core::ports::XdrError;

use super::{reply_of, XdrHttp};

/// What `xql/get_query_results` answered.
#[derive(Clone, Debug, PartialEq)]
pub enum XqlOutcome {
    Rows(Vec<Value>),
    /// More than 1,000 rows: read them with `get_query_results_stream`.
    Stream(String),
    Failed(String),
}

impl XdrHttp {
    /// `xql/start_xql_query`: the execution id. A fifth parallel query is refused by XDR and
    /// reported as a rate limit.
    pub async fn start_xql_query(&self, query: &str, relative_time_ms: i64) -> Result<String, XdrError> {
        let body = self
            .call("xql/start_xql_query", json!({"query": query, "timeframe": {"relativeTime": relative_time_ms}}))
            .await
            .map_err(|e| match e {
                XdrError::BadReply(m) | XdrError::Server(m) if m.contains("parallel running queries") => XdrError::RateLimited(m),
                other => other,
            })?;
        let reply = reply_of(&body, "xql/start_xql_query")?;
        reply.as_str().map(str::to_string).ok_or_else(|| XdrError::BadReply("start_xql_query: the reply is not an execution id".into()))
    }

    /// One `xql/get_query_results` call: the outcome, or `None` while the query is PENDING.
    pub async fn xql_status(&self, query_id: &str) -> Result<Option<XqlOutcome>, XdrError> {
        let body = self
            .read("xql/get_query_results", json!({"query_id": query_id, "pending_flag": true, "limit": 1000, "format": "json"}))
            .await?;
        let reply = reply_of(&body, "xql/get_query_results")?;
        Ok(match reply.get("status").and_then(Value::as_str).unwrap_or("") {
            "PENDING" => None,
            // PARTIAL_SUCCESS: some tenants or datasets answered, the rest did not — the rows
            // that came are still evidence.
            "SUCCESS" | "PARTIAL_SUCCESS" => {
                let results = reply.get("results").cloned().unwrap_or(Value::Null);
                Some(match results.get("stream_id").and_then(Value::as_str) {
                    Some(stream) => XqlOutcome::Stream(stream.to_string()),
                    None => XqlOutcome::Rows(results.get("data").and_then(Value::as_array).cloned().unwrap_or_default()),
                })
            }
            other => Some(XqlOutcome::Failed(format!("status {other}"))),
        })
    }

    /// `xql/get_query_results_stream`: newline-delimited JSON rows (requested uncompressed).
    pub async fn get_query_results_stream(&self, stream_id: &str) -> Result<Vec<Value>, XdrError> {
        let body = self.read("xql/get_query_results_stream", json!({"stream_id": stream_id, "is_gzip_compressed": false})).await?;
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| XdrError::BadReply(format!("stream row not JSON: {e}"))))
            .collect()
    }
}
