//! Disabling a user for an approved `disable_user` action: Okta (lifecycle suspend) or Microsoft
//! Entra ID (Graph `PATCH /users/{id}` with `accountEnabled: false`).

use async_trait::async_trait;
use serde_json::json;
use std::time::Duration;

use crate::sources::enc;
use crate::sources::msgraph::GraphCredentials;
use dossier_core::ports::{IdentityAdmin, XdrError};

use crate::http_client::{exchange, NoAnswer, Reply, Status};

fn err_of(reply: &Reply) -> XdrError {
    let short = reply.short_body();
    match reply.status {
        Status::Unauthorized => XdrError::Unauthorized(short),
        Status::Forbidden | Status::PaymentRequired => XdrError::Forbidden(short),
        Status::NotFound => XdrError::NotFound(short),
        Status::RateLimited => XdrError::RateLimited(short),
        Status::Server => XdrError::Server(short),
        Status::Rejected => XdrError::Rejected(format!("HTTP {}: {short}", reply.code)),
        Status::Success | Status::Unexpected => XdrError::BadReply(format!("HTTP {}: {short}", reply.code)),
    }
}

async fn send(req: reqwest::RequestBuilder) -> Result<Reply, XdrError> {
    exchange(req).await.map_err(|e| match e {
        NoAnswer::NotSent(why) => XdrError::Unreachable(why),
        other => XdrError::Transport(other.to_string()),
    })
}

pub struct OktaAdmin {
    http: reqwest::Client,
    base_url: String,
    api_token: String,
}

impl OktaAdmin {
    pub fn new(base_url: &str, api_token: String, timeout: Duration) -> OktaAdmin {
        OktaAdmin { http: crate::http_client::client(timeout), base_url: base_url.trim_end_matches('/').to_string(), api_token }
    }
}

#[async_trait]
impl IdentityAdmin for OktaAdmin {
    fn name(&self) -> &str {
        "okta"
    }

    async fn disable_user(&self, user: &str) -> Result<String, XdrError> {
        let login = crate::sources::okta::login_of(user);
        let req = self
            .http
            .post(format!("{}/api/v1/users/{}/lifecycle/suspend", self.base_url, enc(login)))
            .header("Authorization", format!("SSWS {}", self.api_token))
            .header("Accept", "application/json");
        match send(req).await? {
            r if r.status == Status::Success => Ok(format!("user {login} suspended")),
            // Okta suspends only ACTIVE users (400 E0000001 otherwise): one already suspended or
            // deprovisioned is the goal reached, anything else stays a refusal.
            r if r.code == 400 && r.body.contains("E0000001") => match self.is_disabled(user).await? {
                Some(true) => Ok(format!("user {login} was already disabled in Okta")),
                _ => Err(err_of(&r)),
            },
            r => Err(err_of(&r)),
        }
    }

    async fn is_disabled(&self, user: &str) -> Result<Option<bool>, XdrError> {
        let login = crate::sources::okta::login_of(user);
        let req = self
            .http
            .get(format!("{}/api/v1/users/{}", self.base_url, enc(login)))
            .header("Authorization", format!("SSWS {}", self.api_token))
            .header("Accept", "application/json");
        let r = send(req).await?;
        match r.status {
            Status::Success => {
                let v: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| XdrError::BadReply(format!("Okta user: {e}")))?;
                Ok(v.get("status").and_then(|s| s.as_str()).map(|s| matches!(s, "SUSPENDED" | "DEPROVISIONED")))
            }
            Status::NotFound => Ok(None),
            _ => Err(err_of(&r)),
        }
    }
}

pub struct EntraAdmin {
    http: reqwest::Client,
    graph: crate::sources::msgraph::MsGraph,
    base_url: String,
}

impl EntraAdmin {
    pub fn new(base_url: &str, creds: GraphCredentials, upn_suffix: Option<String>, timeout: Duration) -> EntraAdmin {
        let mut graph = crate::sources::msgraph::MsGraph::new(base_url, creds, timeout);
        graph.upn_suffix = upn_suffix;
        EntraAdmin { http: crate::http_client::client(timeout), graph, base_url: base_url.trim_end_matches('/').to_string() }
    }
}

#[async_trait]
impl IdentityAdmin for EntraAdmin {
    fn name(&self) -> &str {
        "entra-id"
    }

    async fn disable_user(&self, user: &str) -> Result<String, XdrError> {
        let upn = self
            .graph
            .user_ref(user)
            .ok_or_else(|| XdrError::NotConfigured(format!("`{user}` has no UPN and no UPN suffix is configured")))?;
        let token = self.graph.token(&Default::default()).await.map_err(|e| XdrError::Forbidden(e.to_string()))?;
        let req =
            self.http.patch(format!("{}/users/{}", self.base_url, enc(&upn))).bearer_auth(token).json(&json!({"accountEnabled": false}));
        match send(req).await? {
            r if r.status == Status::Success => Ok(format!("account {upn} disabled (accountEnabled=false)")),
            r => Err(err_of(&r)),
        }
    }

    async fn is_disabled(&self, user: &str) -> Result<Option<bool>, XdrError> {
        let Some(upn) = self.graph.user_ref(user) else { return Ok(None) };
        let token = self.graph.token(&Default::default()).await.map_err(|e| XdrError::Forbidden(e.to_string()))?;
        let req = self.http.get(format!("{}/users/{}?$select=accountEnabled", self.base_url, enc(&upn))).bearer_auth(token);
        let r = send(req).await?;
        match r.status {
            Status::Success => {
                let v: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| XdrError::BadReply(format!("Graph user: {e}")))?;
                Ok(v.get("accountEnabled").and_then(serde_json::Value::as_bool).map(|enabled| !enabled))
            }
            Status::NotFound => Ok(None),
            _ => Err(err_of(&r)),
        }
    }
}
