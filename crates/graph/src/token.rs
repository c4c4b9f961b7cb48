//! How the client gets access tokens: a small trait the identity crate implements.

use std::future::Future;
use std::pin::Pin;

use crate::error::TokenError;

/// A boxed token future (the trait stays object-safe).
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<String, TokenError>> + Send + 'a>>;

/// What the client asks for.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// Graph scopes the call needs (e.g. `["Presence.Read.All"]`), for incremental consent.
    pub scopes: &'a [&'a str],
    /// Graph refused the last token (401): do not return a cached one.
    pub force_refresh: bool,
    /// A claims challenge Graph sent with its 401 (`WWW-Authenticate: ... claims="..."`,
    /// decoded JSON): ask the identity platform for a token that satisfies it. When that
    /// needs the person (MFA, a revoked session), the provider fails with
    /// `interaction_required` and the caller signs in again with these claims.
    pub claims: Option<&'a str>,
}

/// Gives bearer tokens for Microsoft Graph. `switchboard-identity` implements it over its
/// token cache; [`StaticToken`] serves tests and scripts.
pub trait AccessTokenProvider: Send + Sync {
    /// A valid access token whose audience is Graph.
    fn access_token<'a>(&'a self, request: TokenRequest<'a>) -> TokenFuture<'a>;
}

/// A fixed token (scripts, tests, a token from elsewhere).
#[derive(Clone)]
pub struct StaticToken(String);

impl StaticToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken(<redacted>)")
    }
}

impl AccessTokenProvider for StaticToken {
    fn access_token<'a>(&'a self, _request: TokenRequest<'a>) -> TokenFuture<'a> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

impl<T: AccessTokenProvider + ?Sized> AccessTokenProvider for std::sync::Arc<T> {
    fn access_token<'a>(&'a self, request: TokenRequest<'a>) -> TokenFuture<'a> {
        (**self).access_token(request)
    }
}
