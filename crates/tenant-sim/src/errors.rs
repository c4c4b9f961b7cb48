//! Error bodies in Microsoft's shapes: the identity platform's AADSTS errors and Graph's
//! `{"error": {"code", "message", "innerError"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// An identity-platform error (`/oauth2/v2.0/token`, `/devicecode`, discovery).
#[derive(Debug, Clone)]
pub struct AadError {
    /// HTTP status (400 for almost everything, 401 for invalid_client).
    pub status: StatusCode,
    /// OAuth `error` (`invalid_grant`, `authorization_pending`, ...).
    pub error: &'static str,
    /// The AADSTS number.
    pub code: u32,
    /// Text after `AADSTSnnnn: `.
    pub description: String,
}

#[derive(Serialize)]
struct AadBody<'a> {
    error: &'a str,
    error_description: String,
    error_codes: [u32; 1],
    timestamp: String,
    trace_id: String,
    correlation_id: String,
    error_uri: String,
}

impl AadError {
    /// A 400 error.
    pub fn new(error: &'static str, code: u32, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            code,
            description: description.into(),
        }
    }

    /// The `error_description` text as Microsoft writes it.
    pub fn full_description(&self, trace: &str, correlation: &str, now: OffsetDateTime) -> String {
        format!(
            "AADSTS{}: {} Trace ID: {} Correlation ID: {} Timestamp: {}",
            self.code,
            self.description,
            trace,
            correlation,
            aad_timestamp(now)
        )
    }
}

fn aad_timestamp(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl IntoResponse for AadError {
    fn into_response(self) -> Response {
        let now = OffsetDateTime::now_utc();
        let trace = Uuid::new_v4().to_string();
        let correlation = Uuid::new_v4().to_string();
        let body = AadBody {
            error: self.error,
            error_description: self.full_description(&trace, &correlation, now),
            error_codes: [self.code],
            timestamp: aad_timestamp(now),
            trace_id: trace,
            correlation_id: correlation,
            error_uri: format!("https://login.microsoftonline.com/error?code={}", self.code),
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// A Microsoft Graph error.
#[derive(Debug, Clone)]
pub struct GraphError {
    /// HTTP status.
    pub status: StatusCode,
    /// Graph's `code` (`Request_UnsupportedQuery`, `InvalidAuthenticationToken`, ...).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `Retry-After` seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct GraphBody<'a> {
    error: GraphBodyInner<'a>,
}

#[derive(Serialize)]
struct GraphBodyInner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(rename = "innerError")]
    inner_error: InnerError,
}

#[derive(Serialize)]
struct InnerError {
    date: String,
    #[serde(rename = "request-id")]
    request_id: String,
    #[serde(rename = "client-request-id")]
    client_request_id: String,
}

impl GraphError {
    /// Any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    /// 404 for a user id that is not in the directory.
    pub fn user_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        )
    }
    /// 401 for a missing or bad token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    }
    /// 403 for a token without the needed scope.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let now = OffsetDateTime::now_utc();
        let body = GraphBody {
            error: GraphBodyInner {
                code: self.code,
                message: &self.message,
                inner_error: InnerError {
                    date: format!(
                        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                        now.year(),
                        u8::from(now.month()),
                        now.day(),
                        now.hour(),
                        now.minute(),
                        now.second()
                    ),
                    request_id: Uuid::new_v4().to_string(),
                    client_request_id: Uuid::new_v4().to_string(),
                },
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_description_has_microsofts_layout() {
        let e = AadError::new(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity.",
        );
        let t = OffsetDateTime::from_unix_timestamp(1_566_926_344).unwrap();
        let d = e.full_description("tr", "co", t);
        assert_eq!(
            d,
            "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity. Trace ID: tr Correlation ID: co Timestamp: 2019-08-27 17:19:04Z"
        );
    }
}
