//! Session timers (RFC 4028): the interval agreed in the INVITE's 2xx, who refreshes, the
//! refreshing re-INVITE, and the BYE when nobody refreshed.

use super::*;

/// RFC 4028 session timer of one call.
#[derive(Debug, Clone, Copy)]
pub(super) struct SessionTimer {
    pub(super) interval: u32,
    pub(super) we_refresh: bool,
    /// When to refresh (refresher) or give up (the other side).
    pub(super) at: Instant,
}

impl SessionTimer {
    pub(super) fn new(interval: u32, we_refresh: bool, now: Instant) -> Self {
        let i = u64::from(interval.max(1));
        let at = if we_refresh {
            now + Duration::from_secs(i / 2)
        } else {
            // §10: BYE at expiry minus min(32, SE/3) when nobody refreshed.
            now + Duration::from_secs(i - (i / 3).min(32))
        };
        Self {
            interval,
            we_refresh,
            at,
        }
    }
}

impl UserAgent {
    /// RFC 4028 session timer: the interval we ask for (at least 90 s), or `None` to ask for
    /// none (we still honour a peer's).
    pub fn set_session_timer(&mut self, expires: Option<u32>) {
        self.session_expires = expires.map(|e| e.max(self.min_se));
    }

    /// RFC 4028 §7.4/§9: a re-INVITE with the unchanged session description.
    pub(super) fn refresh_session(&mut self, id: CallId, now: Instant) {
        let contact = self.over_call(id).contact();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(t) = c.timer else { return };
        let Some(sdp) = c.last_local_sdp.clone() else {
            return;
        };
        c.refreshing = true;
        c.our_offer = Some(sdp.clone());
        let headers = vec![
            ("Contact", contact),
            ("Supported", "timer".to_owned()),
            ("Session-Expires", format!("{};refresher=uac", t.interval)),
        ];
        let _ = self.send_in_dialog(
            id,
            "INVITE",
            headers,
            Some(("application/sdp", sdp.to_bytes())),
            now,
        );
    }

    /// RFC 4028 §7.4: a 422 to our INVITE — ask again, once, with at least the Min-SE the
    /// peer wants.
    pub(super) fn retry_with_longer_interval(&mut self, id: CallId, msg: &Message) -> bool {
        let min = msg
            .header("Min-SE")
            .and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok());
        match (self.calls.get_mut(&id), min) {
            (Some(c), Some(m)) if !c.retried_422 && c.state == CallState::Calling => {
                c.retried_422 = true;
                c.se_requested = c.se_requested.max(m);
                true
            }
            _ => false,
        }
    }

    /// RFC 4028 §10: the refresher re-INVITEs at half the interval (and tries again every
    /// 10 s until the answer resets the timer); the other side ends an unrefreshed session.
    pub(super) fn session_timer_timeout(&mut self, id: CallId, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let busy = c.refreshing || c.reinvite.is_some();
        let Some(t) = c.timer.as_mut() else { return };
        if t.at > now || c.state != CallState::Confirmed {
            return;
        }
        if t.we_refresh {
            t.at = now + Duration::from_secs(10);
            if !busy {
                self.refresh_session(id, now);
            }
        } else {
            tracing::info!(
                call = id,
                "the session timer expired without a refresh; ending the call"
            );
            self.send_bye(id, now);
            self.end_call(id, EndReason::Timeout);
        }
    }
}

/// `Session-Expires: 1800;refresher=uac` (RFC 4028 §4).
pub(super) fn parse_session_expires(msg: &Message) -> Option<(u32, Option<String>)> {
    let v = msg.header("Session-Expires")?;
    let mut parts = v.split(';');
    let n = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("refresher")
            .then(|| v.trim().to_ascii_lowercase())
    });
    Some((n, refresher))
}

/// RFC 4028 §7.2: the 2xx to our INVITE says the interval and who refreshes; we are the UAC,
/// so we refresh unless it names the UAS.
pub(super) fn uac_session_timer(msg: &Message, now: Instant) -> Option<SessionTimer> {
    let (se, refresher) = parse_session_expires(msg)?;
    Some(SessionTimer::new(
        se,
        refresher.as_deref() != Some("uas"),
        now,
    ))
}

/// RFC 4028 §9: a refresh (or any re-INVITE/UPDATE) restarts the timer, and the request says
/// who refreshes next. Returns the headers our 2xx carries for it.
pub(super) fn restart_session_timer(c: &mut Call, msg: &Message, now: Instant) -> Vec<String> {
    let se = parse_session_expires(msg);
    let peer_timer = lists_option(msg, "Supported", "timer");
    let Some(n) = se.as_ref().map(|(n, _)| *n).or(c.timer.map(|t| t.interval)) else {
        return Vec::new();
    };
    let refresher = match se.and_then(|(_, r)| r) {
        Some(r) if r == "uas" => "uas",
        Some(_) => "uac",
        None if peer_timer => "uac",
        None => "uas",
    };
    c.timer = Some(SessionTimer::new(n, refresher == "uas", now));
    let mut headers = vec![format!("Session-Expires: {n};refresher={refresher}")];
    if peer_timer {
        headers.push("Require: timer".to_owned());
    }
    headers
}

/// RFC 4028 §9, UAS: the interval our 2xx states — the caller's, or ours when it supports
/// timers — who refreshes, and the headers that say so.
pub(super) fn uas_session_timer(
    c: &Call,
    ours: Option<u32>,
    now: Instant,
) -> Option<(SessionTimer, Vec<String>)> {
    let n = match (c.remote_se.as_ref(), ours) {
        (Some((n, _)), _) => *n,
        (None, Some(ours)) if c.peer_supports_timer => ours,
        _ => return None,
    };
    let refresher = match c.remote_se.as_ref().and_then(|(_, r)| r.as_deref()) {
        Some(r @ ("uac" | "uas")) => r,
        _ if c.peer_supports_timer => "uac",
        _ => "uas",
    };
    let mut headers = vec![format!("Session-Expires: {n};refresher={refresher}")];
    if c.peer_supports_timer {
        headers.push("Require: timer".to_owned());
    }
    Some((SessionTimer::new(n, refresher == "uas", now), headers))
}
