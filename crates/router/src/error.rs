//! Every 4xx/5xx the API gives is an RFC 9457 `application/problem+json` body. Handlers return
//! [`ApiError`]; [`problem_layer`] turns the answers that come from outside our handlers
//! (unknown route, wrong method, timeout, panic) into the same shape, and logs each refusal once.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use switchboard_api::Problem;

use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let text = r.body_text();
        match r.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
                "send the body as JSON with the header Content-Type: application/json".into(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(
                "the request body is larger than http.max_body_bytes allows".into(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(text),
            _ => ApiError::BadRequest(text),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DuplicateDomain(_) => ApiError::Conflict(e.to_string()),
            other => {
                tracing::error!(error = %other, "storage failed");
                ApiError::Unavailable(format!("storage is unavailable: {other}"))
            }
        }
    }
}

/// A problem body for `status`, with `detail` for a person.
pub fn problem(status: StatusCode, detail: Option<String>, instance: Option<String>) -> Response {
    let body = Problem {
        problem_type: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail,
        instance,
    };
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = problem(self.status(), Some(self.to_string()), None);
        if let ApiError::Unauthorized(why) = &self {
            // RFC 6750 §3: the scheme, and for a token that failed, why.
            let value = if why.starts_with("sign in first") {
                "Bearer realm=\"switchboard-router\"".to_owned()
            } else {
                format!(
                    "Bearer realm=\"switchboard-router\", error=\"invalid_token\", error_description=\"{}\"",
                    // A header holds visible ASCII only.
                    why.chars()
                        .map(|c| match c {
                            '"' | '\\' => '\'',
                            c if c.is_ascii_graphic() || c == ' ' => c,
                            _ => ' ',
                        })
                        .collect::<String>()
                )
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}

/// Outermost middleware: any error answer that is not problem+json yet becomes one (404 of an
/// unknown route, 405, 408 from the timeout, 500 from a caught panic), `instance` is filled with
/// the path, and every refusal is logged once.
pub async fn problem_layer(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    let resp = if is_problem {
        // Ours: add the instance.
        let (parts, body) = resp.into_parts();
        match axum::body::to_bytes(body, 64 * 1024)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Problem>(&b).ok())
        {
            Some(p) => {
                let mut fresh = problem(status, p.detail, Some(path.clone()));
                if let Some(w) = parts.headers.get(header::WWW_AUTHENTICATE) {
                    fresh
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, w.clone());
                }
                fresh
            }
            None => Response::from_parts(parts, axum::body::Body::empty()),
        }
    } else {
        let detail = match status {
            StatusCode::NOT_FOUND => format!("there is no route {path}; see /v1/openapi.json"),
            StatusCode::METHOD_NOT_ALLOWED => {
                let allow = resp
                    .headers()
                    .get(header::ALLOW)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                format!("{method} is not allowed on {path}; allowed: {allow}")
            }
            StatusCode::REQUEST_TIMEOUT => "the request took too long; try again".into(),
            StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is larger than http.max_body_bytes allows".into()
            }
            s if s.is_server_error() => "an internal error occurred; it has been logged".into(),
            s => s.canonical_reason().unwrap_or("error").into(),
        };
        let allow = resp.headers().get(header::ALLOW).cloned();
        let mut p = problem(status, Some(detail), Some(path.clone()));
        if let Some(a) = allow {
            p.headers_mut().insert(header::ALLOW, a);
        }
        p
    };
    if status.is_server_error() {
        tracing::error!(%method, %path, status = status.as_u16(), "request failed");
    } else {
        tracing::info!(%method, %path, status = status.as_u16(), "request refused");
    }
    resp
}
