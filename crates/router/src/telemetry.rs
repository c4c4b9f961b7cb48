//! Logs and Prometheus metrics. Metrics: `http_requests_total{method,route,status}`,
//! `http_request_duration_seconds{method,route}` (histogram), `events_clients` (gauge),
//! `process_uptime_seconds` (gauge), `tenants` (gauge, on scrape).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder (installed on first use; several routers in one test
/// process share it).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0],
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Counts and times every request by its route template (not the raw path, so ids do not
/// explode the label set).
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

/// Prometheus text exposition: with `auth.mode = "entra"`, for the `http.metrics_token`
/// bearer or an access token with the Supervisor or Admin role.
#[utoipa::path(get, path = "/metrics", tag = "service", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain"),
    (status = 401, description = "no metrics token or access token", body = switchboard_api::Problem, content_type = "application/problem+json"),
    (status = 403, description = "an access token without the Supervisor or Admin role", body = switchboard_api::Problem, content_type = "application/problem+json"),
))]
pub async fn metrics_text(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(e) = state
        .auth
        .metrics_reader(crate::auth::authorization(&headers), &state.metrics_token)
        .await
    {
        return e.into_response();
    }
    metrics::gauge!("process_uptime_seconds").set(state.events.uptime_seconds() as f64);
    if let Ok(t) = state.store.list_tenants().await {
        metrics::gauge!("tenants").set(t.len() as f64);
    }
    let body = prometheus().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
