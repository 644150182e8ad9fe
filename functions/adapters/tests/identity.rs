//! Disabling users for approved actions: Okta suspend and Entra ID `accountEnabled = false`.

use std::time::Duration;

use dossier_adapters::identity::{EntraAdmin, OktaAdmin};
use dossier_adapters::sources::msgraph::GraphCredentials;
use dossier_core::ports::{IdentityAdmin, XdrError};
use dossier_tests::{fixture, FakeServer, Reply};

#[tokio::test]
async fn okta_suspends_by_login() {
    let fake = FakeServer::start().await;
    fake.on("POST", "/api/v1/users/j.doe/lifecycle/suspend", Reply::json(200, "{}"));
    fake.on("POST", "/api/v1/users/nobody/lifecycle/suspend", Reply::json(403, fixture("okta/error_403_access_denied.json")));
    let okta = OktaAdmin::new(&fake.url(), "tok".into(), Duration::from_secs(5));
    assert_eq!(okta.disable_user("CORP\\j.doe").await.unwrap(), "user j.doe suspended");
    assert_eq!(fake.requests()[0].header("authorization"), Some("SSWS tok"));
    assert!(matches!(okta.disable_user("nobody").await, Err(XdrError::Forbidden(m)) if m.contains("E0000006")));
}

#[tokio::test]
async fn entra_disables_the_account() {
    let fake = FakeServer::start().await;
    fake.on("POST", "/token", Reply::json(200, r#"{"access_token": "g", "expires_in": 3600}"#));
    fake.on("PATCH", "/v1.0/users/j.doe%40corp.example.com", Reply::Body(204, String::new(), vec![]));
    let creds = GraphCredentials {
        tenant_id: "t".into(),
        client_id: "c".into(),
        client_secret: "s".into(),
        token_url: Some(format!("{}/token", fake.url())),
    };
    let entra = EntraAdmin::new(&format!("{}/v1.0", fake.url()), creds, Some("corp.example.com".into()), Duration::from_secs(5));
    assert!(entra.disable_user("CORP\\j.doe").await.unwrap().contains("accountEnabled=false"));
    let patch = fake.requests_to("/v1.0/users/j.doe%40corp.example.com");
    assert_eq!(patch[0].json(), serde_json::json!({"accountEnabled": false}));
    assert_eq!(patch[0].header("authorization"), Some("Bearer g"));
}
