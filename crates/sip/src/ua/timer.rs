//! Session timers (RFC 4028): the interval agreed in the INVITE's 2xx, who refreshes, the
//! refreshing re-INVITE, and the BYE when nobody refreshed.

use super::*;

impl UserAgent {
    /// RFC 4028 session timer: the interval we ask for (at least 90 s), or `None` to ask for
    /// none (we still honour a peer's).
    pub fn set_session_timer(&mut self, expires: Option<u32>) {
        self.session_expires = expires.map(|e| e.max(self.min_se));
    }

    /// RFC 4028 §7.4/§9: a re-INVITE with the unchanged session description.
    pub(super) fn refresh_session(&mut self, id: CallId, now: Instant) {
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
            ("Contact", self.cfg.contact()),
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
