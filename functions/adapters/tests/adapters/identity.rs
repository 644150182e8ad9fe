//! Disabling users for approved actions: Okta suspend and Entra ID `accountEnabled = false`.

use std::time::Duration;

use dossier_adapters::identity::{EntraAdmin, OktaAdmin};
use dossier_adapters::sources::msgraph::GraphCredentials;
use dossier_core::ports::{IdentityAdmin, XdrError};
use dossier_tests::{fixture, vendors, FakeServer, Reply};

#[tokio::test]
async fn okta_suspends_by_login() {
    let fake = FakeServer::start().await;
    vendors::okta(&fake, "tok");
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
    vendors::graph(&fake, "c", "s", "g");
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

/// Okta suspends only ACTIVE users: an account already suspended answers 400 `E0000001`, which
/// is the goal reached (read back), while the same refusal for an active account stays an error.
#[tokio::test]
async fn okta_already_suspended_is_done_not_failed() {
    let fake = FakeServer::start().await;
    vendors::okta(&fake, "tok");
    let not_active = r#"{"errorCode": "E0000001", "errorSummary": "Api validation failed: Cannot suspend a user that is not active", "errorCauses": []}"#;
    fake.on("POST", "/api/v1/users/gone/lifecycle/suspend", Reply::json(400, not_active));
    fake.on("GET", "/api/v1/users/gone", Reply::json(200, r#"{"id": "00u1", "status": "SUSPENDED"}"#));
    fake.on("POST", "/api/v1/users/odd/lifecycle/suspend", Reply::json(400, not_active));
    fake.on("GET", "/api/v1/users/odd", Reply::json(200, r#"{"id": "00u2", "status": "ACTIVE"}"#));
    let okta = OktaAdmin::new(&fake.url(), "tok".into(), Duration::from_secs(5));
    assert!(okta.disable_user("gone").await.unwrap().contains("already disabled"));
    assert!(matches!(okta.disable_user("odd").await, Err(XdrError::Rejected(_))));
    let wrong = OktaAdmin::new(&fake.url(), "stolen".into(), Duration::from_secs(5));
    assert!(matches!(wrong.disable_user("gone").await, Err(XdrError::Unauthorized(m)) if m.contains("E0000011")));
}
