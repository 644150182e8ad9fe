//! Splunk history (search REST API, https://docs.splunk.com/Documentation/Splunk/latest/RESTREF/RESTsearch):
//! the same question as the XDR history — what a host, user or IP did over 24 hours and 7 days
//! (process starts, network connections, failed logons) — as a versioned SPL template over the
//! CIM field names (`host`/`dest`, `user`, `src`/`dest_ip`) and Windows event codes. The search
//! is a job with a bounded time range (`earliest_time=-7d`), polled with backoff within the
//! lookup's budget, then read once; a job given up on is cancelled so it does not hold one of
//! the search head's concurrent-search slots. Auth: `Authorization: Bearer <token>` (a Splunk
//! authentication token).

use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;

use super::{send, text};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::history::{history_verdict, is_history_entity};
use dossier_core::sources::{CallCounter, IndicatorSource, Lookup, LookupError};

pub const NAME: &str = "splunk";
pub const TEMPLATES_VERSION: &str = "spl-history-v1";

/// A double-quoted SPL string: backslash and quote escaped; control characters cannot occur
/// in an indicator (they are rejected at extraction) but are dropped here too.
pub fn spl_quote(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control()).collect();
    format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Template v1: the entity's events over 7 days by kind, with failed logons (4625, CIM
/// `action=failure` on authentication) and the same counts for the last 24 hours.
pub fn history_search(indicator: &Indicator) -> Option<String> {
    let v = spl_quote(&indicator.value);
    let filter = match indicator.kind {
        IndicatorKind::Hostname => format!("(host={v} OR dest={v} OR ComputerName={v})"),
        IndicatorKind::User => format!("(user={v} OR src_user={v} OR Account_Name={v} OR TargetUserName={v})"),
        IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => format!("(src={v} OR dest={v} OR src_ip={v} OR dest_ip={v})"),
        _ => return None,
    };
    Some(format!(
        "search index=* {filter} \
         | eval failed_logon=if(EventCode=4625 OR (tag=\"authentication\" AND action=\"failure\"), 1, 0), \
         recent=if(_time >= relative_time(now(), \"-24h\"), 1, 0), \
         event_type=case(EventCode=4688 OR (EventCode=1 AND like(sourcetype, \"%Sysmon%\")) OR tag=\"process\", \"PROCESS\", \
         EventCode=3 OR tag=\"network\", \"NETWORK\", true(), \"OTHER\") \
         | eval recent_failed=recent*failed_logon \
         | stats count as events, sum(failed_logon) as failed_logons, sum(recent) as events_24h, sum(recent_failed) as failed_logons_24h by event_type"
    ))
}

pub struct Splunk {
    http: reqwest::Client,
    base_url: String,
    token: String,
    /// First wait between status polls; it doubles up to 4 s.
    pub first_poll: Duration,
    /// Longest one lookup waits for its job.
    pub max_wait: Duration,
}

impl Splunk {
    /// `base_url` is the management endpoint, e.g. `https://splunk.example.com:8089`.
    pub fn new(base_url: &str, token: String, timeout: Duration) -> Splunk {
        Splunk {
            http: crate::http_client::client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            first_poll: Duration::from_millis(250),
            max_wait: timeout * 2,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base_url)).bearer_auth(&self.token).header("Accept", "application/json")
    }

    /// Starts the job; its search id.
    async fn start(&self, search: &str, calls: &CallCounter) -> Result<String, LookupError> {
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("search", search),
                ("exec_mode", "normal"),
                ("earliest_time", "-7d"),
                ("latest_time", "now"),
                ("output_mode", "json"),
            ])
            .finish();
        let req = self
            .request(reqwest::Method::POST, "/services/search/jobs")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form);
        let answer = send(req, calls).await?.ok_or_else(|| LookupError::BadReply("no search jobs endpoint (HTTP 404)".into()))?;
        text(&answer.json, "/sid")
            .ok_or_else(|| LookupError::BadReply(format!("no sid in {}", answer.raw.chars().take(200).collect::<String>())))
    }

    /// Polls until the job is done (`Some`), failed (an error) or the budget is spent (`None`).
    async fn wait(&self, sid: &str, calls: &CallCounter) -> Result<Option<()>, LookupError> {
        let started = tokio::time::Instant::now();
        let mut pause = self.first_poll;
        loop {
            let path = format!("/services/search/jobs/{}?output_mode=json", super::enc(sid));
            let answer = send(self.request(reqwest::Method::GET, &path), calls)
                .await?
                .ok_or_else(|| LookupError::BadReply(format!("job {sid} is gone")))?;
            let content = answer.json.pointer("/entry/0/content").cloned().unwrap_or(Value::Null);
            let state = text(&content, "/dispatchState").unwrap_or_default();
            let failed = content.get("isFailed").is_some_and(|f| f.as_bool() == Some(true) || f.as_str() == Some("1"));
            if failed || state == "FAILED" {
                let why = content.get("messages").map(Value::to_string).unwrap_or_default();
                return Err(LookupError::BadReply(format!("search failed: {}", why.chars().take(200).collect::<String>())));
            }
            if content.get("isDone").is_some_and(|d| d.as_bool() == Some(true) || d.as_str() == Some("1")) || state == "DONE" {
                return Ok(Some(()));
            }
            if started.elapsed() + pause > self.max_wait {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(4));
        }
    }

    async fn cancel(&self, sid: &str, calls: &CallCounter) {
        let path = format!("/services/search/jobs/{}/control", super::enc(sid));
        let req =
            self.request(reqwest::Method::POST, &path).header("Content-Type", "application/x-www-form-urlencoded").body("action=cancel");
        if let Err(e) = send(req, calls).await {
            tracing::warn!(error = %e, "Splunk job not cancelled; it ends at its own time limit");
        }
    }
}

#[async_trait]
impl IndicatorSource for Splunk {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        is_history_entity(kind)
    }
    fn sends_externally(&self) -> bool {
        // The organisation's own log platform.
        false
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        let Some(search) = history_search(indicator) else { return Ok(Lookup::NotFound) };
        let sid = self.start(&search, calls).await?;
        match self.wait(&sid, calls).await {
            Ok(Some(())) => {}
            Ok(None) => {
                self.cancel(&sid, calls).await;
                return Err(LookupError::Timeout);
            }
            Err(e) => return Err(e),
        }
        let path = format!("/services/search/jobs/{}/results?output_mode=json&count=100", super::enc(&sid));
        let answer = send(self.request(reqwest::Method::GET, &path), calls)
            .await?
            .ok_or_else(|| LookupError::BadReply(format!("no results for job {sid}")))?;
        let rows =
            answer.json.get("results").and_then(Value::as_array).ok_or_else(|| LookupError::BadReply("no `results` array".into()))?;
        Ok(history_verdict(indicator, rows, "Splunk", TEMPLATES_VERSION, &search).map_or(Lookup::NotFound, Lookup::Found))
    }
}
