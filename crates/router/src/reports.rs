//! Historical reports: the call records of a period, counted per queue and interval (hour, day
//! or the whole period, in a time zone of the reader's choosing), as JSON or CSV.
//! `GET /v1/reports/queues`; Supervisors and Admins, their tenants only.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use switchboard_api::{CallOutcome, CallRecord, QueueReport};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// The longest period one report covers, in days.
pub const MAX_DAYS: i64 = 93;
/// Calls hung up within this many seconds are short abandons (as in the live figures).
const SHORT_ABANDON_SECONDS: f64 = 5.0;

/// How a report cuts its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Hour,
    #[default]
    Day,
    /// The whole period as one interval.
    Total,
}

/// What a report is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// `GET /v1/reports/queues` query.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// The first day (`2026-12-01`), from its midnight in `timezone`.
    #[param(value_type = String, format = Date)]
    pub from: String,
    /// How many days (1–93; default 1).
    #[param(minimum = 1, maximum = 93)]
    pub days: Option<i64>,
    /// `hour`, `day` (default) or `total`.
    pub interval: Option<Interval>,
    /// The IANA time zone days and hours are cut in (default `UTC`); the document lists
    /// every name the router knows.
    pub timezone: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<Format>,
}

/// Sums for one (interval, tenant, queue).
#[derive(Debug, Default, Clone)]
struct Sums {
    calls: u64,
    answered: u64,
    answered_in_time: u64,
    abandoned: u64,
    abandoned_short: u64,
    overflowed: u64,
    closed: u64,
    refused: u64,
    failed: u64,
    wait_answered: f64,
    talk: f64,
    longest_wait: Option<f64>,
}

fn seconds(a: time::OffsetDateTime, b: time::OffsetDateTime) -> f64 {
    (b - a).as_seconds_f64().max(0.0)
}

fn timestamp(t: time::OffsetDateTime) -> jiff::Timestamp {
    // Every OffsetDateTime the store holds is in jiff's range (years -9999 to 9999).
    jiff::Timestamp::new(t.unix_timestamp(), t.nanosecond() as i32)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Counts records into rows. `service_level` gives a queue's threshold in seconds.
pub struct Report {
    tz: jiff::tz::TimeZone,
    interval: Interval,
    from: jiff::Timestamp,
    rows: BTreeMap<(jiff::Timestamp, String, Option<String>), Sums>,
}

impl Report {
    pub fn new(from: time::OffsetDateTime, interval: Interval, tz: jiff::tz::TimeZone) -> Self {
        Self {
            tz,
            interval,
            from: timestamp(from),
            rows: BTreeMap::new(),
        }
    }

    /// The start of the interval `t` falls in.
    fn bucket(&self, t: jiff::Timestamp) -> jiff::Timestamp {
        let local = self.tz.to_datetime(t);
        let start = match self.interval {
            Interval::Total => return self.from,
            // The local hour's start is so far back in absolute time (an hour repeated when
            // clocks go back is two hours here, as it was on the wall twice).
            Interval::Hour => {
                let into = i64::from(local.minute()) * 60_000_000_000
                    + i64::from(local.second()) * 1_000_000_000
                    + i64::from(local.subsec_nanosecond());
                return t
                    .checked_sub(jiff::SignedDuration::from_nanos(into))
                    .unwrap_or(t);
            }
            Interval::Day => local.date().at(0, 0, 0, 0),
        };
        // A local time that does not exist (a day starting inside a DST gap) resolves to
        // the instant after the gap; it is never later than `t`.
        self.tz
            .to_ambiguous_timestamp(start)
            .compatible()
            .map_or(t, |s| s.min(t))
    }

    pub fn add(&mut self, r: &CallRecord, service_level: impl Fn(&str, &str) -> u64) {
        let at = self.bucket(timestamp(r.started_at));
        let s = self
            .rows
            .entry((at, r.tenant.clone(), r.queue.clone()))
            .or_default();
        s.calls += 1;
        let mut waited = |w: f64| {
            s.longest_wait = Some(s.longest_wait.map_or(w, |l: f64| l.max(w)));
        };
        // A call an outside number took counts as answered where an agent had it first (they
        // passed it on), else as sent away (overflowed).
        let outcome = match r.outcome {
            CallOutcome::CalledBack => CallOutcome::Answered,
            CallOutcome::Transferred if r.agent.is_some() => CallOutcome::Answered,
            CallOutcome::Transferred => CallOutcome::Overflowed,
            o => o,
        };
        match outcome {
            CallOutcome::Answered => {
                let wait = r.answered_at.map_or(0.0, |a| seconds(r.started_at, a));
                waited(wait);
                s.answered += 1;
                s.wait_answered += wait;
                let threshold = r
                    .queue
                    .as_deref()
                    .map_or(20, |q| service_level(&r.tenant, q));
                if wait <= threshold as f64 {
                    s.answered_in_time += 1;
                }
                if let (Some(a), Some(e)) = (r.answered_at, r.ended_at) {
                    s.talk += seconds(a, e);
                }
            }
            CallOutcome::Abandoned => {
                let wait = r.ended_at.map_or(0.0, |e| seconds(r.started_at, e));
                if wait <= SHORT_ABANDON_SECONDS {
                    s.abandoned_short += 1;
                } else {
                    waited(wait);
                    s.abandoned += 1;
                }
            }
            CallOutcome::Overflowed => s.overflowed += 1,
            CallOutcome::Closed => s.closed += 1,
            CallOutcome::Refused => s.refused += 1,
            CallOutcome::Failed | CallOutcome::Interrupted => s.failed += 1,
            // Still going: counted, not judged.
            CallOutcome::InProgress => {}
            CallOutcome::CalledBack | CallOutcome::Transferred => {}
        }
    }

    pub fn rows(self) -> Vec<QueueReport> {
        let tz = self.tz;
        self.rows
            .into_iter()
            .map(|((at, tenant, queue), s)| {
                let judged = s.answered + s.abandoned + s.overflowed;
                let per_answered = |v: f64| (s.answered > 0).then(|| v / s.answered as f64);
                QueueReport {
                    interval_start: at
                        .to_zoned_datetime(tz.clone())
                        .strftime("%Y-%m-%dT%H:%M:%S%:z")
                        .to_string(),
                    tenant,
                    queue,
                    calls: s.calls,
                    answered: s.answered,
                    answered_in_time: s.answered_in_time,
                    abandoned: s.abandoned,
                    abandoned_short: s.abandoned_short,
                    overflowed: s.overflowed,
                    closed: s.closed,
                    refused: s.refused,
                    failed: s.failed,
                    service_level: (judged > 0)
                        .then(|| 100.0 * s.answered_in_time as f64 / judged as f64),
                    asa_seconds: per_answered(s.wait_answered),
                    average_talk_seconds: per_answered(s.talk),
                    longest_wait_seconds: s.longest_wait,
                }
            })
            .collect()
    }
}

/// The rows as CSV (RFC 4180: a header line, CRLF line ends, fields quoted where they need
/// it; empty where a figure has no value).
pub fn csv(rows: &[QueueReport]) -> String {
    fn field(v: &str) -> String {
        if v.contains([',', '"', '\r', '\n']) {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v.to_owned()
        }
    }
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_default();
    let mut out = String::from("interval_start,tenant,queue,calls,answered,answered_in_time,abandoned,abandoned_short,overflowed,closed,refused,failed,service_level,asa_seconds,average_talk_seconds,longest_wait_seconds\r\n");
    for r in rows {
        let line = [
            field(&r.interval_start),
            field(&r.tenant),
            field(r.queue.as_deref().unwrap_or("")),
            r.calls.to_string(),
            r.answered.to_string(),
            r.answered_in_time.to_string(),
            r.abandoned.to_string(),
            r.abandoned_short.to_string(),
            r.overflowed.to_string(),
            r.closed.to_string(),
            r.refused.to_string(),
            r.failed.to_string(),
            opt(r.service_level),
            opt(r.asa_seconds),
            opt(r.average_talk_seconds),
            opt(r.longest_wait_seconds),
        ]
        .join(",");
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

/// The period `[start, end)`: `days` local days from `from`'s midnight in `tz`; `None` when
/// it lies outside what the store can hold (no records are there).
fn period(
    from: jiff::civil::Date,
    days: i64,
    tz: &jiff::tz::TimeZone,
) -> Option<(time::OffsetDateTime, time::OffsetDateTime)> {
    let midnight = |d: jiff::civil::Date| {
        tz.to_ambiguous_timestamp(d.at(0, 0, 0, 0))
            .compatible()
            .ok()
    };
    let start = midnight(from)?;
    let end = from
        .checked_add(jiff::Span::new().days(days))
        .ok()
        .and_then(midnight)
        .unwrap_or(jiff::Timestamp::MAX);
    let odt = |t: jiff::Timestamp| {
        time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond()).ok()
    };
    Some((
        odt(start)?,
        odt(end).unwrap_or(time::PrimitiveDateTime::MAX.assume_utc()),
    ))
}

#[utoipa::path(
    get, path = "/v1/reports/queues", tag = "calls", params(ReportQuery),
    responses(
        (status = 200, description = "each queue's calls per interval, as JSON or (format=csv) CSV", content(
            (Vec<QueueReport> = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "a query that does not read", body = switchboard_api::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not a Supervisor or Admin", body = switchboard_api::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a day that is not a date, or a time zone the router does not know", body = switchboard_api::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn queues(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(q) = query.map_err(|e| ApiError::BadRequest(format!("{e}")))?;
    let day = (q.from.len() == 10)
        .then(|| q.from.parse::<jiff::civil::Date>().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "from {:?} is not a day: write YYYY-MM-DD, e.g. 2026-12-01",
                q.from
            ))
        })?;
    let days = q.days.unwrap_or(1);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::Unprocessable(format!(
            "{days} days: ask for 1 to {MAX_DAYS}"
        )));
    }
    let interval = q.interval.unwrap_or_default();
    let zone = q.timezone.as_deref().unwrap_or("UTC");
    let tz = jiff::tz::TimeZone::get(zone).map_err(|_| {
        ApiError::Unprocessable(format!(
            "{zone:?} is not a time zone: use an IANA name such as Europe/London"
        ))
    })?;
    let tenants = crate::agents_http::readable_tenants(&state, &caller)?;
    let levels: std::collections::HashMap<(String, String), u64> = state.center.with(|d| {
        d.tenants
            .iter()
            .flat_map(|t| {
                t.queues
                    .iter()
                    .map(|q| ((t.spec.id.clone(), q.name.clone()), q.service_level_seconds))
            })
            .collect()
    });
    let rows = match period(day, days, &tz) {
        Some((from, to)) => {
            let mut report = Report::new(from, interval, tz);
            state
                .store
                .for_each_call(tenants.as_deref(), from, to, |r| {
                    report.add(&r, |t, q| {
                        levels
                            .get(&(t.to_owned(), q.to_owned()))
                            .copied()
                            .unwrap_or(20)
                    })
                })
                .await?;
            report.rows()
        }
        None => Vec::new(),
    };
    Ok(match q.format.unwrap_or_default() {
        Format::Json => Json(rows).into_response(),
        Format::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"queues.csv\"",
                ),
            ],
            csv(&rows),
        )
            .into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn record(
        queue: Option<&str>,
        outcome: CallOutcome,
        start: time::OffsetDateTime,
        answer_after: Option<i64>,
        end_after: i64,
    ) -> CallRecord {
        CallRecord {
            id: uuid::Uuid::new_v4().to_string(),
            tenant: "contoso".into(),
            trunk: "carrier".into(),
            caller: "+15550001".into(),
            dialled: "+18005550100".into(),
            started_at: start,
            answered_at: answer_after.map(|s| start + time::Duration::seconds(s)),
            ended_at: Some(start + time::Duration::seconds(end_after)),
            choices: vec![],
            queue: queue.map(str::to_owned),
            steps: vec![],
            offers: vec![],
            agent: None,
            outcome,
            reason: None,
            hold_seconds: 0,
            transfers: Vec::new(),
            wrap_up_seconds: None,
            disposition: None,
            notes: None,
            language: None,
        }
    }

    #[test]
    fn calls_called_back_or_passed_to_an_outside_number_count_as_answered_or_sent_away() {
        let from = datetime!(2026-12-01 00:00 UTC);
        let mut r = Report::new(from, Interval::Day, jiff::tz::TimeZone::UTC);
        let t = datetime!(2026-12-01 09:00 UTC);
        let by_agent = |outcome, answer, end| CallRecord {
            agent: Some("adele@contoso.example".into()),
            ..record(Some("billing"), outcome, t, Some(answer), end)
        };
        for rec in [
            by_agent(CallOutcome::CalledBack, 10, 70),  // in time
            by_agent(CallOutcome::Transferred, 30, 90), // late, then passed on
            // A route sent it to the number, no agent had it.
            record(Some("billing"), CallOutcome::Transferred, t, Some(50), 80),
        ] {
            r.add(&rec, |_, _| 20);
        }
        let rows = r.rows();
        assert_eq!(rows.len(), 1, "{rows:?}");
        let b = &rows[0];
        assert_eq!(
            (b.calls, b.answered, b.answered_in_time, b.overflowed),
            (3, 2, 1, 1),
            "{b:?}"
        );
        assert_eq!(b.asa_seconds, Some(20.0));
    }

    #[test]
    fn a_day_of_calls_counts_as_the_live_figures_define() {
        let from = datetime!(2026-12-01 00:00 UTC);
        let mut r = Report::new(from, Interval::Day, jiff::tz::TimeZone::UTC);
        let t = datetime!(2026-12-01 09:00 UTC);
        use CallOutcome::*;
        for rec in [
            record(Some("billing"), Answered, t, Some(10), 70), // in time, talk 60
            record(Some("billing"), Answered, t, Some(40), 160), // late, talk 120
            record(Some("billing"), Abandoned, t, None, 3),     // short
            record(Some("billing"), Abandoned, t, None, 50),    // counts
            record(Some("billing"), Overflowed, t, None, 90),
            record(None, Closed, t, None, 8),
            record(None, Refused, t, None, 8),
        ] {
            r.add(&rec, |_, _| 20);
        }
        let rows = r.rows();
        assert_eq!(rows.len(), 2, "{rows:?}");
        let b = rows
            .iter()
            .find(|x| x.queue.as_deref() == Some("billing"))
            .unwrap();
        assert_eq!(b.interval_start, "2026-12-01T00:00:00+00:00");
        assert_eq!((b.calls, b.answered, b.answered_in_time), (5, 2, 1));
        assert_eq!((b.abandoned, b.abandoned_short, b.overflowed), (1, 1, 1));
        // 1 in time ÷ (2 answered + 1 abandoned + 1 overflowed).
        assert_eq!(b.service_level, Some(25.0));
        assert_eq!(b.asa_seconds, Some(25.0));
        assert_eq!(b.average_talk_seconds, Some(90.0));
        assert_eq!(b.longest_wait_seconds, Some(50.0));
        let none = rows.iter().find(|x| x.queue.is_none()).unwrap();
        assert_eq!((none.calls, none.closed, none.refused), (2, 1, 1));
        assert_eq!(none.service_level, None);
    }

    #[test]
    fn days_and_hours_are_cut_in_the_readers_time_zone() {
        let from = datetime!(2026-12-01 00:00 UTC);
        let sh = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        let mut r = Report::new(from, Interval::Day, sh.clone());
        // 15:59 and 16:00 UTC on 1 December are 23:59 on the 1st and 00:00 on the 2nd there.
        for t in [
            datetime!(2026-12-01 15:59 UTC),
            datetime!(2026-12-01 16:00 UTC),
        ] {
            r.add(
                &record(Some("q"), CallOutcome::Answered, t, Some(1), 2),
                |_, _| 20,
            );
        }
        let days: Vec<String> = r.rows().into_iter().map(|x| x.interval_start).collect();
        assert_eq!(
            days,
            ["2026-12-01T00:00:00+08:00", "2026-12-02T00:00:00+08:00"]
        );
        // Hours in London across the autumn change: 00:30 BST and 01:30 GMT on 25 October
        // 2026 are different hours, both labelled 01:00 local with their own offsets.
        let mut r = Report::new(
            from,
            Interval::Hour,
            jiff::tz::TimeZone::get("Europe/London").unwrap(),
        );
        for t in [
            datetime!(2026-10-25 00:30 UTC),
            datetime!(2026-10-25 01:30 UTC),
        ] {
            r.add(
                &record(Some("q"), CallOutcome::Answered, t, Some(1), 2),
                |_, _| 20,
            );
        }
        let hours: Vec<String> = r.rows().into_iter().map(|x| x.interval_start).collect();
        assert_eq!(
            hours,
            ["2026-10-25T01:00:00+01:00", "2026-10-25T01:00:00+00:00"]
        );
        // Total: one interval from the period's start.
        let mut r = Report::new(from, Interval::Total, sh);
        r.add(
            &record(
                Some("q"),
                CallOutcome::Answered,
                datetime!(2026-12-03 10:00 UTC),
                Some(1),
                2,
            ),
            |_, _| 20,
        );
        assert_eq!(r.rows()[0].interval_start, "2026-12-01T08:00:00+08:00");
    }

    #[test]
    fn a_period_is_whole_local_days_and_the_far_ends_of_the_calendar_do_not_break_it() {
        let london = jiff::tz::TimeZone::get("Europe/London").unwrap();
        let d = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
        // 1 July in London starts at 23:00 UTC the day before; two days end 48 h later.
        let (from, to) = period(d("2026-07-01"), 2, &london).unwrap();
        assert_eq!(from, datetime!(2026-06-30 23:00 UTC));
        assert_eq!(to, datetime!(2026-07-02 23:00 UTC));
        // The day clocks go back is 25 hours long.
        let (from, to) = period(d("2026-10-25"), 1, &london).unwrap();
        assert_eq!((to - from).whole_hours(), 25);
        // The last days of the calendar: the end is clamped, nothing overflows.
        // (beyond them, no period: the report is empty, never an error or a panic).
        let (start, end) = period(d("9999-12-29"), 93, &jiff::tz::TimeZone::UTC).unwrap();
        assert!(end > start, "{start} {end}");
        assert!(period(d("9999-12-31"), 93, &jiff::tz::TimeZone::UTC).is_none());
        assert!(period(d("0000-01-01"), 1, &jiff::tz::TimeZone::UTC).is_some());
    }

    #[test]
    fn every_time_zone_the_document_lists_loads() {
        for name in jiff::tz::db().available() {
            assert!(
                jiff::tz::TimeZone::get(name.as_str()).is_ok(),
                "{}",
                name.as_str()
            );
        }
    }

    #[test]
    fn csv_has_a_header_quotes_what_needs_it_and_leaves_missing_figures_empty() {
        let from = datetime!(2026-12-01 00:00 UTC);
        let mut r = Report::new(from, Interval::Day, jiff::tz::TimeZone::UTC);
        r.add(
            &record(
                None,
                CallOutcome::Closed,
                datetime!(2026-12-01 09:00 UTC),
                None,
                8,
            ),
            |_, _| 20,
        );
        let mut rows = r.rows();
        rows[0].tenant = "a,\"b\"".into();
        let text = csv(&rows);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert!(lines[0].starts_with("interval_start,tenant,queue,calls,"));
        assert_eq!(
            lines[1],
            "2026-12-01T00:00:00+00:00,\"a,\"\"b\"\"\",,1,0,0,0,0,0,1,0,0,,,,"
        );
        assert_eq!(lines.len(), 3, "a CRLF after the last line");
    }
}
