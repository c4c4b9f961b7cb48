//! Transfers (RFC 3515 REFER, RFC 3891 Replaces) and their progress (NOTIFY with a
//! `message/sipfrag` body, RFC 3420), in both directions.

use super::*;

impl UserAgent {
    /// Blind transfer: asks the peer to call `target` (REFER, RFC 3515). With `replaces`
    /// (another of our calls, to the target) it is an attended transfer (RFC 3891).
    pub fn transfer(
        &mut self,
        call: CallId,
        target: &str,
        replaces: Option<CallId>,
        now: Instant,
    ) -> Result<(), UaError> {
        self.require_confirmed(call)?;
        let mut refer_to = value_uri(target).to_owned();
        if let Some(other) = replaces {
            let o = self.calls.get(&other).ok_or(UaError::NoSuchCall(other))?;
            let d = &o.dialog;
            let remote_tag = d.remote_tag.clone().unwrap_or_default();
            // The target's view: its to-tag is our remote tag of that dialog.
            let r = format!(
                "{};to-tag={};from-tag={}",
                d.call_id, remote_tag, d.local_tag
            );
            refer_to = format!(
                "{}?Replaces={}",
                o.dialog.remote_target,
                escape_header_value(&r)
            );
        }
        let headers = vec![
            ("Refer-To", format!("<{refer_to}>")),
            ("Referred-By", format!("<{}>", self.cfg.aor())),
        ];
        self.send_in_dialog(call, "REFER", headers, None, now)?;
        Ok(())
    }

    /// Reports the progress of a transfer we were asked to make (NOTIFY with `sipfrag`):
    /// 100 while trying, then the final status of the new call.
    pub fn notify_transfer(&mut self, call: CallId, status: u16, reason: &str, now: Instant) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some(id) = c.refer_sub else { return };
        let final_ = status >= 200;
        let state = if final_ {
            "terminated;reason=noresource".to_owned()
        } else {
            "active;expires=60".to_owned()
        };
        let headers = vec![
            ("Event", format!("refer;id={id}")),
            ("Subscription-State", state),
        ];
        // The sipfrag is a status line (RFC 3420): the same checks as our own responses'.
        if !(100..=699).contains(&status) || !crate::wire::is_clean_value(reason) {
            tracing::warn!(
                call,
                status,
                "NOTIFY of a transfer's progress not sent: bad status line"
            );
            return;
        }
        let body = Bytes::from(format!("SIP/2.0 {status} {reason}\r\n"));
        let _ = self.send_in_dialog(
            call,
            "NOTIFY",
            headers,
            Some(("message/sipfrag;version=2.0", body)),
            now,
        );
        if final_ {
            if let Some(c) = self.calls.get_mut(&call) {
                c.refer_sub = None;
            }
        }
    }

    /// We are asked to transfer (RFC 3515 §2.4): 202, an immediate NOTIFY with 100 Trying,
    /// and an event; the owner decides whether to follow it (see the REFER policy).
    pub(super) fn on_refer(&mut self, req: Req<'_>, id: CallId, cseq: u32, now: Instant) {
        let (target, replaces) = match refer_target(req.msg) {
            Ok(t) => t,
            Err(r) => {
                self.refuse(req, r, now);
                return;
            }
        };
        self.respond(req, 202, &[], now);
        if let Some(c) = self.calls.get_mut(&id) {
            c.refer_sub = Some(cseq);
        }
        self.notify_transfer(id, 100, "Trying", now);
        self.events.push_back(UaEvent::TransferRequested {
            call: id,
            target,
            replaces,
            referred_by: req.msg.header("Referred-By").map(str::to_owned),
        });
    }

    /// The progress of a transfer we asked for: `refer` events only (else 489).
    pub(super) fn on_notify(&mut self, req: Req<'_>, id: CallId, now: Instant) {
        let msg = req.msg;
        let is_refer = msg
            .header("Event")
            .is_some_and(|e| e.trim().to_ascii_lowercase().starts_with("refer"));
        if !is_refer {
            self.respond(req, 489, &[], now);
            return;
        }
        self.respond(req, 200, &[], now);
        let final_ = msg
            .header("Subscription-State")
            .is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("terminated"));
        if let Some(status) = sipfrag_status(msg.body()) {
            self.events.push_back(UaEvent::TransferProgress {
                call: id,
                status,
                final_,
            });
        }
    }
}

impl UserAgent {
    /// The call a REFER's `Replaces` (RFC 3891: `call-id;to-tag=…;from-tag=…`, the to-tag ours)
    /// names, while it lasts: for a B2BUA that carries out an attended transfer itself.
    pub fn replaced_call(&self, replaces: &str) -> Option<CallId> {
        let (cid, to_tag, from_tag) = parse_replaces(replaces)?;
        self.calls
            .values()
            .find(|c| {
                c.dialog.call_id == cid
                    && c.dialog.local_tag == to_tag
                    && c.dialog.remote_tag.as_deref() == Some(from_tag.as_str())
                    && c.state != CallState::Terminated
            })
            .map(|c| c.id)
    }
}

/// RFC 3891 Replaces: `call-id;to-tag=…;from-tag=…`.
pub(super) fn parse_replaces(v: &str) -> Option<(String, String, String)> {
    let mut parts = v.split(';');
    let call_id = parts.next()?.trim().to_owned();
    let (mut to, mut from) = (None, None);
    for p in parts {
        if let Some((k, val)) = p.split_once('=') {
            match k.trim().to_ascii_lowercase().as_str() {
                "to-tag" => to = Some(val.trim().to_owned()),
                "from-tag" => from = Some(val.trim().to_owned()),
                _ => {}
            }
        }
    }
    Some((call_id, to?, from?))
}

/// Percent-decoding for header values carried in a Refer-To URI's `?Replaces=` (RFC 3261 §19.1.1).
pub(super) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn escape_header_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || "-_.!~*'()[]/:+$".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = std::fmt::Write::write_fmt(&mut out, format_args!("%{b:02X}"));
            }
        }
    }
    out
}

/// Status code of a `message/sipfrag` body (`SIP/2.0 200 OK`).
pub(super) fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    text.lines().next()?.split_whitespace().nth(1)?.parse().ok()
}

/// A REFER's target and its `Replaces` (RFC 3891), or why it is refused. Decoded, the
/// `?Replaces=` value is the peer's text: only its checked parts may reach the INVITE we send
/// for it.
fn refer_target(msg: &Message) -> Result<(String, Option<String>), Refusal> {
    let Some(refer_to) = msg.header("Refer-To") else {
        return Err(Refusal::because(400, "Missing Refer-To"));
    };
    let uri = value_uri(refer_to);
    let (target, replaces) = match uri.split_once('?') {
        Some((t, hdrs)) => {
            let rep = hdrs.split('&').find_map(|h| {
                let (k, v) = h.split_once('=')?;
                k.eq_ignore_ascii_case("Replaces").then(|| unescape(v))
            });
            let rep = rep
                .map(|r| crate::wire::Replaces::parse(&r))
                .transpose()
                .map_err(|_| Refusal::because(400, "Bad Replaces in Refer-To"))?;
            (t.to_owned(), rep.map(|r| r.to_string()))
        }
        None => (uri.to_owned(), None),
    };
    if uri_host_port(&target).is_none() || crate::wire::check_uri(&target).is_err() {
        return Err(Refusal::because(400, "Bad Refer-To"));
    }
    Ok((target, replaces))
}
