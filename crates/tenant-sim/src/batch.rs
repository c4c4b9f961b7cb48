//! `POST /v1.0/$batch`: Graph's JSON batching. Up to 20 requests in one call; each runs as
//! its own request against this simulator (the caller's `Authorization` goes with it), so
//! every route, check and error answers inside a batch exactly as outside. Responses come
//! back by `id`; JSON bodies inline, other bodies (photos) base64-encoded, as Graph does.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::errors::GraphError;
use crate::AppState;

/// Graph's limit of requests per batch.
pub const MAX_BATCH: usize = 20;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1.0/$batch", post(batch))
}

#[derive(Deserialize)]
struct BatchBody {
    requests: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    id: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    body: Option<Value>,
}

async fn batch(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, GraphError> {
    let b: BatchBody = serde_json::from_slice(&body)
        .map_err(|e| GraphError::bad_request(format!("Invalid batch payload format: {e}")))?;
    if b.requests.is_empty() {
        return Err(GraphError::bad_request("The batch has no requests."));
    }
    if b.requests.len() > MAX_BATCH {
        return Err(GraphError::bad_request(format!(
            "Number of batch request steps exceeds the maximum of {MAX_BATCH}."
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for r in &b.requests {
        if r.id.is_empty() || !seen.insert(r.id.as_str()) {
            return Err(GraphError::bad_request(
                "Batch request ids must be present and unique.",
            ));
        }
        if !r.url.starts_with('/') || r.url.contains("$batch") || r.url.contains("://") {
            return Err(GraphError::bad_request(format!(
                "Invalid request URL '{}': give a path relative to the version, such as /me.",
                r.url
            )));
        }
    }
    let auth = headers.get(header::AUTHORIZATION).cloned();
    let mut responses = Vec::with_capacity(b.requests.len());
    for r in b.requests {
        let method = reqwest::Method::from_bytes(r.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| GraphError::bad_request(format!("Invalid method '{}'.", r.method)))?;
        let url = format!("{}{}", s.graph_base(), r.url);
        let mut req = s.http.request(method, &url);
        if let Some(a) = &auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        for (k, v) in &r.headers {
            if let Some(v) = v.as_str() {
                req = req.header(k.as_str(), v);
            }
        }
        if let Some(body) = &r.body {
            req = req.json(body);
        }
        let (status, headers, body) = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let mut h = Map::new();
                for name in [header::CONTENT_TYPE, header::RETRY_AFTER] {
                    if let Some(v) = resp.headers().get(&name).and_then(|v| v.to_str().ok()) {
                        h.insert(canonical(name.as_str()), Value::String(v.to_owned()));
                    }
                }
                let json_body = h
                    .get("Content-Type")
                    .and_then(Value::as_str)
                    .is_some_and(|c| c.starts_with("application/json"));
                let bytes = resp.bytes().await.unwrap_or_default();
                let body = if bytes.is_empty() {
                    Value::Null
                } else if json_body {
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
                } else {
                    Value::String(base64::engine::general_purpose::STANDARD.encode(&bytes))
                };
                (status, Value::Object(h), body)
            }
            Err(e) => {
                tracing::warn!(error = %e, "a batch step could not be run");
                (
                    StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
                    json!({}),
                    Value::Null,
                )
            }
        };
        let mut one = json!({ "id": r.id, "status": status, "headers": headers });
        if !body.is_null() {
            one["body"] = body;
        }
        responses.push(one);
    }
    Ok(Json(json!({ "responses": responses })))
}

/// `content-type` → `Content-Type`, as Graph writes header names in batch responses.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}
