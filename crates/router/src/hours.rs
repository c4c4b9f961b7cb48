//! Opening hours: when a number's calls go where the number says, and when they hear that the
//! tenant is closed (or go to its `closed` route): hours per weekday in the schedule's own
//! time zone (IANA name, daylight saving followed), and holidays closed all day.
//!
//! ```toml
//! [[tenants.schedules]]
//! name = "office"
//! timezone = "Europe/London"
//! weekdays = ["08:30-12:30", "13:30-17:30"]   # Monday to Friday
//! sat = ["09:00-12:00"]                      # days not given are closed
//! holidays = ["2026-12-25", "2026-12-31..2027-01-01"]
//! ```
//!
//! Times are wall-clock times where the schedule is: on the night clocks go forward, an hour
//! that does not exist is simply never reached; on the night they go back, the repeated hour
//! counts twice. `24:00` ends a day; a span past midnight is written as two (`22:00-24:00`
//! one day, `00:00-06:00` the next).

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Deserializer};

/// Minutes in a day: `24:00`.
const DAY: u16 = 24 * 60;
/// Spans one day may have.
const MAX_SPANS: usize = 12;
/// Holiday entries one schedule may have.
const MAX_HOLIDAYS: usize = 1000;

/// A named IANA time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub name: String,
    pub tz: TimeZone,
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        // `TimeZone::get` reads the system's zoneinfo, else the copy built into the router.
        match TimeZone::get(&name) {
            Ok(tz) if !name.is_empty() => Ok(Zone { name, tz }),
            _ => Err(serde::de::Error::custom(format!(
                "{name:?} is not a time zone: use an IANA name such as \"Europe/London\", \"America/New_York\" or \"Asia/Shanghai\""
            ))),
        }
    }
}

/// Open from `from` to `to`, minutes after local midnight (`to` ≤ 1440).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub from: u16,
    pub to: u16,
}

/// A day's opening hours, in order, not overlapping.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DayHours(pub Vec<Span>);

fn minutes(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// One `"HH:MM-HH:MM"`.
fn span(s: &str) -> Result<Span, String> {
    let bad = || {
        format!(
            "{s:?} is not opening hours: write \"HH:MM-HH:MM\" (24-hour clock, e.g. \"08:30-17:30\")"
        )
    };
    let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
    let (from, to) = (
        minutes(a.trim()).ok_or_else(bad)?,
        minutes(b.trim()).ok_or_else(bad)?,
    );
    if from >= to {
        return Err(format!(
            "{s:?} ends before it starts: a span past midnight is two, \"22:00-24:00\" one day and \"00:00-06:00\" the next"
        ));
    }
    Ok(Span { from, to })
}

impl<'de> Deserialize<'de> for DayHours {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        if list.len() > MAX_SPANS {
            return Err(serde::de::Error::custom(format!(
                "{} spans in one day: at most {MAX_SPANS}",
                list.len()
            )));
        }
        let mut spans = list
            .iter()
            .map(|s| span(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(serde::de::Error::custom)?;
        spans.sort();
        if let Some(w) = spans.windows(2).find(|w| w[1].from < w[0].to) {
            return Err(serde::de::Error::custom(format!(
                "opening hours {} and {} overlap",
                show(w[0]),
                show(w[1])
            )));
        }
        Ok(DayHours(spans))
    }
}

fn show(s: Span) -> String {
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        s.from / 60,
        s.from % 60,
        s.to / 60,
        s.to % 60
    )
}

/// Days closed all day, first to last (one day: both the same).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Holiday {
    pub first: Date,
    pub last: Date,
}

impl<'de> Deserialize<'de> for Holiday {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || {
            serde::de::Error::custom(format!(
                "{s:?} is not a holiday: write a date \"2026-12-25\" or dates \"2026-12-24..2026-12-26\""
            ))
        };
        let date = |v: &str| -> Result<Date, D::Error> {
            let v = v.trim();
            // Exactly YYYY-MM-DD: jiff reads other forms too.
            if v.len() != 10 {
                return Err(bad());
            }
            v.parse::<Date>().map_err(|_| bad())
        };
        let (first, last) = match s.split_once("..") {
            Some((a, b)) => (date(a)?, date(b)?),
            None => (date(&s)?, date(&s)?),
        };
        if last < first {
            return Err(serde::de::Error::custom(format!(
                "holiday {s:?} ends before it starts"
            )));
        }
        Ok(Holiday { first, last })
    }
}

fn holidays<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Holiday>, D::Error> {
    let v = Vec::<Holiday>::deserialize(d)?;
    if v.len() > MAX_HOLIDAYS {
        return Err(serde::de::Error::custom(format!(
            "{} holidays: at most {MAX_HOLIDAYS} (write a run of days as \"first..last\")",
            v.len()
        )));
    }
    Ok(v)
}

/// What a schedule says at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hours {
    Open,
    /// Outside the day's hours.
    Closed,
    /// On one of its holidays.
    Holiday,
}

impl Hours {
    /// The word a call record's step uses: `closed`, `holiday` (`open` never is one).
    pub fn word(self) -> &'static str {
        match self {
            Hours::Open => "open",
            Hours::Closed => "closed",
            Hours::Holiday => "holiday",
        }
    }
}

/// Opening hours (`[[tenants.schedules]]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// The name numbers give in `schedule`.
    pub name: String,
    /// Where the hours are kept: an IANA time zone.
    pub timezone: Zone,
    /// Monday to Friday, each day not given on its own.
    #[serde(default)]
    pub weekdays: Option<DayHours>,
    #[serde(default)]
    pub mon: Option<DayHours>,
    #[serde(default)]
    pub tue: Option<DayHours>,
    #[serde(default)]
    pub wed: Option<DayHours>,
    #[serde(default)]
    pub thu: Option<DayHours>,
    #[serde(default)]
    pub fri: Option<DayHours>,
    #[serde(default)]
    pub sat: Option<DayHours>,
    #[serde(default)]
    pub sun: Option<DayHours>,
    /// Days closed all day, local dates.
    #[serde(default, deserialize_with = "holidays")]
    pub holidays: Vec<Holiday>,
}

impl ScheduleSpec {
    /// The hours of one weekday: its own, else `weekdays` (Monday–Friday), else closed.
    pub fn day(&self, w: Weekday) -> &[Span] {
        let own = match w {
            Weekday::Monday => &self.mon,
            Weekday::Tuesday => &self.tue,
            Weekday::Wednesday => &self.wed,
            Weekday::Thursday => &self.thu,
            Weekday::Friday => &self.fri,
            Weekday::Saturday => &self.sat,
            Weekday::Sunday => &self.sun,
        };
        let weekday = !matches!(w, Weekday::Saturday | Weekday::Sunday);
        match (own, &self.weekdays) {
            (Some(d), _) => &d.0,
            (None, Some(d)) if weekday => &d.0,
            _ => &[],
        }
    }

    /// Schedule `name` from the API's settings, read exactly as the configuration file's
    /// `[[tenants.schedules]]` is (the same checks, the same messages).
    pub fn from_settings(
        name: &str,
        s: &switchboard_api::ScheduleSettings,
    ) -> Result<ScheduleSpec, String> {
        let mut v = serde_json::to_value(s).map_err(|e| e.to_string())?;
        if let Some(m) = v.as_object_mut() {
            m.insert("name".into(), serde_json::Value::String(name.to_owned()));
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    /// The schedule as the API shows it (as the file would write it).
    pub fn settings(&self) -> switchboard_api::ScheduleSettings {
        let day = |d: &Option<DayHours>| {
            d.as_ref()
                .map(|d| d.0.iter().map(|s| show(*s)).collect::<Vec<_>>())
        };
        switchboard_api::ScheduleSettings {
            timezone: self.timezone.name.clone(),
            weekdays: day(&self.weekdays),
            mon: day(&self.mon),
            tue: day(&self.tue),
            wed: day(&self.wed),
            thu: day(&self.thu),
            fri: day(&self.fri),
            sat: day(&self.sat),
            sun: day(&self.sun),
            holidays: self
                .holidays
                .iter()
                .map(|h| {
                    if h.first == h.last {
                        h.first.to_string()
                    } else {
                        format!("{}..{}", h.first, h.last)
                    }
                })
                .collect(),
        }
    }

    /// Whether the schedule is open at `at`, closed, or on a holiday.
    pub fn state(&self, at: Timestamp) -> Hours {
        let local = self.timezone.tz.to_datetime(at);
        let date = local.date();
        if self
            .holidays
            .iter()
            .any(|h| h.first <= date && date <= h.last)
        {
            return Hours::Holiday;
        }
        let t = local.time();
        let m = t.hour() as u16 * 60 + t.minute() as u16;
        let open = self
            .day(local.weekday())
            .iter()
            .any(|s| s.from <= m && m < s.to);
        if open {
            Hours::Open
        } else {
            Hours::Closed
        }
    }

    /// Whether the schedule is open at `at`.
    pub fn is_open(&self, at: Timestamp) -> bool {
        self.state(at) == Hours::Open
    }

    /// Whether the schedule is ever open (some day has hours).
    pub fn ever_open(&self) -> bool {
        [
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
            Weekday::Saturday,
            Weekday::Sunday,
        ]
        .into_iter()
        .any(|w| !self.day(w).is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(toml: &str) -> Result<ScheduleSpec, String> {
        toml::from_str(toml).map_err(|e| e.to_string())
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const OFFICE: &str = r#"
name = "office"
timezone = "Europe/London"
weekdays = ["08:30-12:30", "13:30-17:30"]
sat = ["09:00-12:00"]
holidays = ["2026-12-25", "2026-12-31..2027-01-01"]
"#;

    #[test]
    fn open_on_weekdays_in_local_time_and_closed_at_lunch_at_night_and_on_sunday() {
        let s = schedule(OFFICE).unwrap();
        // Wednesday 2 December 2026, London is on GMT (UTC+0).
        assert!(!s.is_open(at("2026-12-02T08:29:59Z")));
        assert!(s.is_open(at("2026-12-02T08:30:00Z")));
        assert!(s.is_open(at("2026-12-02T12:29:59Z")));
        assert!(!s.is_open(at("2026-12-02T12:30:00Z")), "lunch");
        assert!(s.is_open(at("2026-12-02T13:30:00Z")));
        assert!(
            !s.is_open(at("2026-12-02T17:30:00Z")),
            "the end is not open"
        );
        assert!(s.is_open(at("2026-12-05T10:00:00Z")), "Saturday morning");
        assert!(!s.is_open(at("2026-12-05T13:00:00Z")), "Saturday afternoon");
        assert!(!s.is_open(at("2026-12-06T10:00:00Z")), "Sunday");
    }

    #[test]
    fn daylight_saving_time_moves_the_hours_in_utc() {
        let s = schedule(OFFICE).unwrap();
        // Wednesday 1 July 2026, London is on BST (UTC+1): 08:30 local is 07:30 UTC.
        assert!(s.is_open(at("2026-07-01T07:30:00Z")));
        assert!(!s.is_open(at("2026-07-01T16:30:00Z")));
        // Monday 30 March 2026, the day after clocks went forward.
        assert!(s.is_open(at("2026-03-30T07:45:00Z")));
        assert!(
            !s.is_open(at("2026-03-27T07:45:00Z")),
            "the Friday before: 07:45 GMT"
        );
    }

    #[test]
    fn holidays_close_whole_days_and_runs_of_days() {
        let s = schedule(OFFICE).unwrap();
        assert!(
            !s.is_open(at("2026-12-25T10:00:00Z")),
            "Christmas, a Friday"
        );
        assert!(s.is_open(at("2026-12-24T10:00:00Z")));
        assert!(!s.is_open(at("2026-12-31T10:00:00Z")));
        assert!(!s.is_open(at("2027-01-01T10:00:00Z")));
        // The holiday is the local date: 23:30 UTC on the 24th in Shanghai is the 25th.
        let sh = schedule(
            r#"name = "sh"
timezone = "Asia/Shanghai"
weekdays = ["00:00-24:00"]
holidays = ["2026-12-25"]"#,
        )
        .unwrap();
        assert!(!sh.is_open(at("2026-12-24T16:00:00Z")));
        assert!(sh.is_open(at("2026-12-24T15:59:59Z")));
    }

    #[test]
    fn a_day_of_its_own_wins_over_weekdays_and_an_empty_day_is_closed() {
        let s = schedule(
            r#"name = "x"
timezone = "America/New_York"
weekdays = ["09:00-17:00"]
fri = ["09:00-13:00"]
mon = []"#,
        )
        .unwrap();
        // 14:00 New York (EST, UTC-5) is 19:00 UTC.
        assert!(s.is_open(at("2026-12-01T19:00:00Z")), "Tuesday");
        assert!(
            !s.is_open(at("2026-12-04T19:00:00Z")),
            "Friday closes at 13:00"
        );
        assert!(!s.is_open(at("2026-11-30T15:00:00Z")), "Monday is closed");
        assert!(s.ever_open());
        let never = schedule("name = \"n\"\ntimezone = \"UTC\"").unwrap();
        assert!(!never.ever_open());
        assert!(!never.is_open(at("2026-12-01T12:00:00Z")));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let err = |extra: &str| {
            schedule(&format!("name = \"x\"\ntimezone = \"UTC\"\n{extra}")).unwrap_err()
        };
        assert!(err("mon = [\"9:00-17:00\"]").contains("HH:MM-HH:MM"));
        assert!(err("mon = [\"17:00-09:00\"]").contains("past midnight"));
        assert!(err("mon = [\"09:00-09:00\"]").contains("ends before it starts"));
        assert!(err("mon = [\"08:00-12:00\", \"11:00-13:00\"]").contains("overlap"));
        assert!(err("mon = [\"08:00-24:01\"]").contains("HH:MM-HH:MM"));
        assert!(err("holidays = [\"25/12/2026\"]").contains("not a holiday"));
        assert!(err("holidays = [\"2026-12-26..2026-12-24\"]").contains("ends before"));
        assert!(err("holidays = [\"2026-02-30\"]").contains("not a holiday"));
        assert!(err("monday = []").contains("unknown field"));
        let tz = schedule("name = \"x\"\ntimezone = \"Mars/Olympus\"").unwrap_err();
        assert!(tz.contains("IANA"), "{tz}");
        // A day at 24:00 is whole.
        let s = schedule("name = \"x\"\ntimezone = \"UTC\"\nsun = [\"00:00-24:00\"]").unwrap();
        assert!(s.is_open(at("2026-12-06T23:59:59Z")));
        assert!(!s.is_open(at("2026-12-07T00:00:00Z")));
    }
}
