//! Errors of the Graph client.

use std::time::Duration;

/// Why a token could not be had (from an [`crate::AccessTokenProvider`]).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    /// What happened and what to do ("sign in again", ...).
    pub message: String,
    /// Whether the person has to sign in interactively.
    pub interaction_required: bool,
    /// The cause.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TokenError {
    /// A token error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            interaction_required: false,
            source: None,
        }
    }
    /// A token error that needs the person to sign in.
    pub fn interaction_required(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            interaction_required: true,
            source: None,
        }
    }
}

/// What went wrong talking to Microsoft Graph.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// No access token.
    #[error("could not get an access token for Microsoft Graph: {0}")]
    Token(#[from] TokenError),
    /// The request did not reach Graph or the answer did not come back.
    #[error("could not reach Microsoft Graph ({url}): {source}; check the network and the Graph base URL")]
    Transport {
        /// The URL (without query).
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// Graph answered with an error.
    #[error("Microsoft Graph refused the request: {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Graph's error code (`Request_ResourceNotFound`, `Forbidden`, ...).
        code: String,
        /// Graph's message.
        message: String,
        /// `request-id` for support cases.
        request_id: Option<String>,
        /// The `claims` of a `WWW-Authenticate` claims challenge: sign in again with them.
        claims_challenge: Option<String>,
    },
    /// Throttled (429) or unavailable (503) for longer than the retry policy allows.
    #[error("Microsoft Graph kept answering {status} (throttled or unavailable) after {attempts} attempts; retry after {retry_after:?}")]
    Throttled {
        /// The last status (429 or 503).
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The last `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The answer was not the JSON expected.
    #[error("Microsoft Graph sent a response that is not valid {what} JSON: {source}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The request was refused before sending (bad argument or unsafe link).
    #[error("invalid Graph request: {0}")]
    InvalidRequest(String),
}

impl GraphError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Api { status, .. } | GraphError::Throttled { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// The claims to sign in again with, when Graph sent a challenge no silent renewal met.
    pub fn claims_challenge(&self) -> Option<&str> {
        match self {
            GraphError::Api {
                claims_challenge: Some(c),
                ..
            } => Some(c),
            _ => None,
        }
    }
    /// Whether the person must sign in again (401 with a claims challenge, or the token
    /// provider said so).
    pub fn needs_sign_in(&self) -> bool {
        match self {
            GraphError::Token(t) => t.interaction_required,
            GraphError::Api { status: 401, .. } => true,
            GraphError::Api {
                claims_challenge: Some(_),
                ..
            } => true,
            _ => false,
        }
    }
}
