//! Requests inside a dialog (RFC 3261 §12.2.2): ordering by CSeq, target refresh, and the
//! dispatch to BYE, re-offers, PRACK, INFO (DTMF, RFC 6086), REFER/NOTIFY and OPTIONS.

use super::*;

impl UserAgent {
    pub(super) fn handle_in_dialog(
        &mut self,
        msg: &Message,
        method: &str,
        cseq: u32,
        key: &(String, String),
        now: Instant,
    ) {
        let Some(id) = self.find_dialog(msg) else {
            self.respond(Req::new(msg, key), 481, &[], now);
            return;
        };
        let req = Req::new(msg, key).in_call(id);
        // §12.2.2: requests out of order are refused with 500.
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.dialog.remote_cseq.is_some_and(|r| cseq <= r) {
            self.respond(req, 500, &["Retry-After: 1"], now);
            return;
        }
        c.dialog.remote_cseq = Some(cseq);
        // A target refresh updates the remote target (§12.2.2).
        if matches!(method, "INVITE" | "UPDATE") {
            if let Some(t) = contact_target(msg) {
                c.dialog.remote_target = t;
            }
        }
        let allow = format!("Allow: {ALLOW}");
        match method {
            "BYE" => self.on_bye(req, id, now),
            "INVITE" | "UPDATE" => self.handle_reoffer(msg, method, id, key, now),
            "PRACK" => self.on_prack(req, id, now),
            "INFO" => self.on_info(req, id, now),
            "REFER" => self.on_refer(req, id, cseq, now),
            "NOTIFY" => self.on_notify(req, id, now),
            "OPTIONS" => self.respond(req, 200, &[&allow], now),
            _ => self.respond(req, 405, &[&allow], now),
        }
    }

    /// §15.1.2: BYE ends the call; on a call not answered yet it also ends its INVITE.
    fn on_bye(&mut self, req: Req<'_>, id: CallId, now: Instant) {
        self.respond(req, 200, &[], now);
        if self.calls.get(&id).map(|c| c.state) == Some(CallState::Ringing) {
            self.respond_incoming(id, 487, "Request Terminated", None, now);
        }
        self.end_call(id, EndReason::RemoteBye);
    }

    /// INFO (RFC 6086) carrying a DTMF digit; an empty one is a keep-alive some equipment
    /// sends; another body is refused saying what we read.
    fn on_info(&mut self, req: Req<'_>, id: CallId, now: Instant) {
        match parse_info_dtmf(req.msg) {
            Some((digit, duration_ms)) => {
                self.respond(req, 200, &[], now);
                self.events.push_back(UaEvent::Dtmf {
                    call: id,
                    digit,
                    duration_ms,
                });
            }
            None if req.msg.body().is_empty() => self.respond(req, 200, &[], now),
            None => self.respond(
                req,
                415,
                &["Accept: application/dtmf-relay, application/dtmf"],
                now,
            ),
        }
    }

    /// Sends a DTMF digit as SIP INFO (`application/dtmf-relay`).
    pub fn send_dtmf_info(
        &mut self,
        call: CallId,
        digit: char,
        duration_ms: u32,
        now: Instant,
    ) -> Result<(), UaError> {
        let d = digit.to_ascii_uppercase();
        if !(d.is_ascii_digit() || matches!(d, '*' | '#' | 'A'..='D')) {
            return Err(UaError::BadDigit(digit));
        }
        self.require_confirmed(call)?;
        let body = format!("Signal={d}\r\nDuration={duration_ms}\r\n");
        self.send_in_dialog(
            call,
            "INFO",
            Vec::new(),
            Some(("application/dtmf-relay", Bytes::from(body))),
            now,
        )?;
        Ok(())
    }
}

/// DTMF from an INFO body: `application/dtmf-relay` (`Signal=5\r\nDuration=160`) or
/// `application/dtmf` (just the digit).
pub(super) fn parse_info_dtmf(msg: &Message) -> Option<(char, u32)> {
    let ct = msg.header("Content-Type")?.split(';').next()?.trim();
    let body = std::str::from_utf8(msg.body()).ok()?;
    let valid = |c: char| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D');
    if ct.eq_ignore_ascii_case("application/dtmf-relay") {
        let mut digit = None;
        let mut duration = 250;
        for line in body.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "signal" => {
                    let v = v.trim();
                    digit = match v {
                        "10" => Some('*'),
                        "11" => Some('#'),
                        _ => v
                            .chars()
                            .next()
                            .map(|c| c.to_ascii_uppercase())
                            .filter(|&c| valid(c)),
                    };
                }
                "duration" => duration = v.trim().parse().unwrap_or(250),
                _ => {}
            }
        }
        return digit.map(|d| (d, duration));
    }
    if ct.eq_ignore_ascii_case("application/dtmf") {
        let d = body.trim().chars().next()?.to_ascii_uppercase();
        return valid(d).then_some((d, 250));
    }
    None
}
