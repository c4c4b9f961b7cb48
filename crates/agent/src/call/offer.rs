//! What a router says about a call it offers, in `X-Switchboard-*` headers: shown to the
//! person, never acted on (anyone who can reach the phone can send these headers).

use serde::Serialize;

/// The longest text kept from what a stranger wrote: an `X-Switchboard-*` header value.
pub const HEADER_VALUE_MAX: usize = 128;

/// Text someone else wrote, fit to print: no control characters (so no line breaks or
/// terminal escapes) and no invisible bidirectional or zero-width marks, trimmed, at most
/// `max` characters; `None` when nothing is left.
pub fn printable(v: &str, max: usize) -> Option<String> {
    let invisible = |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}');
    let kept: String = v
        .chars()
        .filter(|c| !c.is_control() && !invisible(*c))
        .take(max)
        .collect();
    let kept = kept.trim();
    (!kept.is_empty()).then(|| kept.to_owned())
}

/// The router's account of a call it offers: `queue`, `call_record` (the router's call record
/// id), `caller`, `dialled`, `choices` (the attendant keys pressed) and `waited` (seconds since
/// the call arrived, at most a day), each when present and printable. Serialised, absent fields
/// are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct RouterOffer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_record: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialled: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited: Option<u32>,
    /// A supervisor's call to listen in on an agent's (`listen adele@contoso.example`,
    /// `whisper …`, `barge …`): shown, so they know what they answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<String>,
}

impl RouterOffer {
    /// Reads the `X-Switchboard-*` headers of an incoming INVITE (names in any case).
    pub fn from_headers(x_headers: &[(String, String)]) -> Self {
        let get = |header: &str| {
            x_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(header))
                .and_then(|(_, value)| printable(value, HEADER_VALUE_MAX))
        };
        Self {
            queue: get("X-Switchboard-Queue"),
            call_record: get("X-Switchboard-Call"),
            caller: get("X-Switchboard-Caller"),
            dialled: get("X-Switchboard-Dialled"),
            choices: get("X-Switchboard-Choices"),
            waited: get("X-Switchboard-Waited")
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|s| *s <= 86_400),
            monitor: get("X-Switchboard-Monitor"),
        }
    }

    /// Whether the call carried none of them (not a router's offer).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_printable_and_short() {
        assert_eq!(printable("  billing ", 128).as_deref(), Some("billing"));
        assert_eq!(
            printable("bill\r\nVia: evil\u{1b}[31m", 128).as_deref(),
            Some("billVia: evil[31m")
        );
        assert_eq!(
            printable("\u{202E}gnillib\u{200B}", 128).as_deref(),
            Some("gnillib")
        );
        assert_eq!(printable("\u{7}\t ", 128), None);
        let long = "q".repeat(10_000);
        assert_eq!(printable(&long, HEADER_VALUE_MAX).unwrap().len(), 128);
        // Several bytes a character: cut at characters, never inside one.
        assert_eq!(
            printable(&"é".repeat(200), 128).unwrap().chars().count(),
            128
        );
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        let offer = RouterOffer::from_headers(&h(&[
            ("X-Switchboard-Queue", "billing"),
            ("x-switchboard-call", "c-42"),
            ("X-Other", "ignored"),
            ("X-Switchboard-Choices", "1,2"),
            ("X-Switchboard-Monitor", "listen adele@contoso.example\r\n"),
        ]));
        assert_eq!(
            serde_json::to_value(&offer).unwrap(),
            serde_json::json!({"queue": "billing", "call_record": "c-42", "choices": "1,2", "monitor": "listen adele@contoso.example"})
        );
        assert!(!offer.is_empty());
        let empty = RouterOffer::from_headers(&h(&[("X-Switchboard-Queue", "\r\n")]));
        assert!(empty.is_empty());
        assert_eq!(serde_json::to_value(&empty).unwrap(), serde_json::json!({}));
        // The wait: whole seconds, at most a day; anything else is left out.
        let waited = |v: &str| RouterOffer::from_headers(&h(&[("X-Switchboard-Waited", v)])).waited;
        assert_eq!(waited("75"), Some(75));
        assert_eq!(waited(" 0 "), Some(0));
        for bad in ["-5", "1e3", "90000", "12 s", "99999999999"] {
            assert_eq!(waited(bad), None, "{bad}");
        }
    }
}
