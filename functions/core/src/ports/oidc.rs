//! The approvers' OpenID Connect provider (Entra ID, Okta, Cognito, Google, ...): discovery, the
//! code-for-token exchange and the signing keys. Verifying the ID token is the core's job
//! (`crate::signin`), so that no adapter decides who an approver is.

use async_trait::async_trait;

/// What discovery (`<issuer>/.well-known/openid-configuration`) says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered 5xx / 429: try again.
    #[error("the sign-in provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused (a used or expired code, a wrong client secret, a bad verifier).
    #[error("the sign-in provider refused: {0}")]
    Refused(String),
    #[error("the sign-in provider answered something unusable: {0}")]
    BadReply(String),
}

#[async_trait]
pub trait OidcProvider: Send + Sync {
    /// Discovery, cached by the adapter.
    async fn metadata(&self) -> Result<ProviderMetadata, OidcError>;
    /// Redeems an authorization code with its PKCE verifier; the raw `id_token`.
    async fn redeem(&self, code: &str, verifier: &str, redirect_uri: &str) -> Result<String, OidcError>;
    /// The JWKS document as published; `refresh` skips the adapter's cache (a key id not seen
    /// yet: the provider rotated).
    async fn keys(&self, refresh: bool) -> Result<String, OidcError>;
}
