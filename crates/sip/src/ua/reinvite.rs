//! Changing an established session (RFC 3261 §14, RFC 3311 UPDATE): hold and resume with a
//! re-INVITE, answering the peer's re-offers, and glare — 491 and a randomised retry (§14.1).

use super::*;

impl UserAgent {
    /// Puts the peer on hold (re-INVITE with `sendonly`) or resumes (`sendrecv`).
    pub fn hold(&mut self, call: CallId, on_hold: bool, now: Instant) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall(call))?;
        if c.state != CallState::Confirmed {
            return Err(UaError::WrongState(call, "put on hold"));
        }
        let direction = if on_hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        if c.reinvite.is_some() || c.answering_reinvite {
            return Err(UaError::Busy(call));
        }
        c.reinvite = Some(PendingReinvite {
            direction,
            retry_at: None,
        });
        self.send_reinvite(call, now);
        Ok(())
    }

    /// A re-INVITE or UPDATE with (or without) a new offer.
    pub(super) fn handle_reoffer(
        &mut self,
        msg: &Message,
        method: &str,
        id: CallId,
        key: &(String, String),
        now: Instant,
    ) {
        let (pending_ours, answering, state) = {
            let c = &self.calls[&id];
            (
                c.reinvite.is_some() && c.reinvite.as_ref().is_some_and(|r| r.retry_at.is_none()),
                c.answering_reinvite,
                c.state,
            )
        };
        if state != CallState::Confirmed && method == "INVITE" {
            self.reply(
                key,
                msg,
                500,
                "Server Internal Error",
                Some(id),
                &["Retry-After: 1"],
                None,
                now,
            );
            return;
        }
        // §14.2: glare with our own pending re-INVITE → 491; an unfinished incoming one → 500.
        if pending_ours {
            self.reply(key, msg, 491, "Request Pending", Some(id), &[], None, now);
            return;
        }
        if answering {
            self.reply(
                key,
                msg,
                500,
                "Server Internal Error",
                Some(id),
                &["Retry-After: 2"],
                None,
                now,
            );
            return;
        }
        let offer = if is_sdp(msg) {
            match Sdp::parse(msg.body()) {
                Ok(s) => Some(s),
                Err(e) => {
                    let w = format!("Warning: 399 switchboard \"{e}\"");
                    self.reply(
                        key,
                        msg,
                        488,
                        "Not Acceptable Here",
                        Some(id),
                        &[&w],
                        None,
                        now,
                    );
                    return;
                }
            }
        } else {
            None
        };
        let se = parse_session_expires(msg);
        let peer_timer = lists_option(msg, "Supported", "timer");
        let mut timer_headers: Vec<String> = Vec::new();
        if let Some(c) = self.calls.get_mut(&id) {
            // RFC 4028 §9: a refresh (or any re-INVITE/UPDATE) restarts the timer; the request
            // says who refreshes next.
            let interval = se.as_ref().map(|(n, _)| *n).or(c.timer.map(|t| t.interval));
            if let Some(n) = interval {
                let refresher = match se.as_ref().and_then(|(_, r)| r.clone()) {
                    Some(r) if r == "uas" => "uas",
                    Some(_) => "uac",
                    None if peer_timer => "uac",
                    None => "uas",
                };
                timer_headers.push(format!("Session-Expires: {n};refresher={refresher}"));
                if peer_timer {
                    timer_headers.push("Require: timer".to_owned());
                }
                c.timer = Some(SessionTimer::new(n, refresher == "uas", now));
            }
        }
        if method == "UPDATE" && offer.is_none() {
            let extra: Vec<&str> = timer_headers.iter().map(String::as_str).collect();
            self.reply(key, msg, 200, "OK", Some(id), &extra, None, now);
            return;
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.sdp_version += 1;
        let (body, neg) = match &offer {
            Some(o) => match sdp::answer(o, &c.local_media, &c.session_id, c.sdp_version) {
                Ok((a, n)) => (a, Some(n)),
                Err(e) => {
                    let w = format!("Warning: 304 switchboard \"{e}\"");
                    self.reply(
                        key,
                        msg,
                        488,
                        "Not Acceptable Here",
                        Some(id),
                        &[&w],
                        None,
                        now,
                    );
                    return;
                }
            },
            None => {
                // An offerless re-INVITE: we offer, the ACK answers.
                if let Some(n) = &c.negotiated {
                    c.local_media.keep_agreed_crypto(n);
                }
                let o = sdp::offer(&c.local_media, &c.session_id, c.sdp_version);
                c.our_offer = Some(o.clone());
                (o, None)
            }
        };
        // An answer that changes nothing keeps the version (RFC 3264 §8).
        let body = match &c.last_local_sdp {
            Some(last) if last.media == body.media && neg.is_some() => {
                c.sdp_version -= 1;
                last.clone()
            }
            _ => body,
        };
        c.last_local_sdp = Some(body.clone());
        let unchanged = neg.is_some() && c.negotiated == neg;
        if let Some(n) = &neg {
            c.negotiated = Some(n.clone());
        }
        let neg = if unchanged { None } else { neg };
        let contact = format!("Contact: {}", self.cfg.contact());
        let mut headers: Vec<&str> = vec![&contact];
        headers.extend(timer_headers.iter().map(String::as_str));
        let sent = self.reply_tx(
            key,
            msg,
            200,
            "OK",
            Some(id),
            &headers,
            Some(("application/sdp", body.to_bytes())),
            now,
        );
        if method == "INVITE" {
            if let (Some(c), Some((bytes, to))) = (self.calls.get_mut(&id), sent) {
                c.answering_reinvite = neg.is_some() || c.our_offer.is_some();
                let t1 = self.cfg.timers.t1;
                if self.cfg.transport == Transport::Udp {
                    c.retransmit_2xx = Some((bytes, to, now + t1, t1, now + t1 * 64));
                } else {
                    c.retransmit_2xx = Some((bytes, to, now + t1 * 64, t1 * 64, now + t1 * 64));
                }
                if neg.is_some() {
                    // The media applies now; the ACK confirms it.
                    c.answering_reinvite = false;
                }
            }
        }
        if let Some(media) = neg {
            self.events.push_back(UaEvent::MediaChanged {
                call: id,
                media,
                by_peer: true,
            });
        }
    }

    pub(super) fn on_reinvite_response(
        &mut self,
        id: CallId,
        status: u16,
        msg: &Message,
        now: Instant,
    ) {
        match status {
            100..=199 => {}
            200..=299 => {
                let cseq = msg.cseq().map(|(n, _)| n).unwrap_or(0);
                self.send_ack(id, cseq, now);
                let mut changed = None;
                let mut was_refresh = false;
                let mut unchanged = false;
                if let Some(c) = self.calls.get_mut(&id) {
                    was_refresh = std::mem::take(&mut c.refreshing) && c.reinvite.is_none();
                    c.reinvite = None;
                    if let (Some(offer), true) = (c.our_offer.take(), is_sdp(msg)) {
                        if let Ok(n) = Sdp::parse(msg.body())
                            .ok()
                            .and_then(|a| sdp::accept_answer(&offer, &a).ok())
                            .ok_or(())
                        {
                            unchanged = c.negotiated.as_ref() == Some(&n);
                            c.negotiated = Some(n.clone());
                            changed = Some(n);
                        }
                    }
                    // Any 2xx to a re-INVITE restarts the session timer (RFC 4028 §10).
                    match (parse_session_expires(msg), c.timer) {
                        (Some((se, r)), _) => {
                            c.timer = Some(SessionTimer::new(se, r.as_deref() != Some("uas"), now))
                        }
                        (None, Some(t)) => {
                            c.timer = Some(SessionTimer::new(t.interval, t.we_refresh, now))
                        }
                        (None, None) => {}
                    }
                }
                match changed {
                    _ if was_refresh && (unchanged || changed.is_none()) => {}
                    Some(media) => self.events.push_back(UaEvent::MediaChanged {
                        call: id,
                        media,
                        by_peer: false,
                    }),
                    None => self
                        .events
                        .push_back(UaEvent::MediaChangeFailed { call: id, status }),
                }
            }
            491 => {
                // §14.1: glare. Retry after 2.1–4 s if we own the Call-ID, else 0–2 s.
                let mut r = rand::rng();
                if let Some(c) = self.calls.get_mut(&id) {
                    let ms = if c.dialog.we_called {
                        r.random_range(2100..=4000)
                    } else {
                        r.random_range(0..=2000)
                    };
                    c.our_offer = None;
                    c.refreshing = false;
                    if let Some(p) = c.reinvite.as_mut() {
                        p.retry_at = Some(now + Duration::from_millis(ms));
                    }
                }
            }
            _ => {
                let mut was_refresh = false;
                if let Some(c) = self.calls.get_mut(&id) {
                    was_refresh = std::mem::take(&mut c.refreshing) && c.reinvite.is_none();
                    c.reinvite = None;
                    c.our_offer = None;
                }
                if was_refresh && status != 481 && status != 408 {
                    // The next attempt comes from the timer (10 s later).
                    return;
                }
                if status == 481 || status == 408 {
                    self.end_call(id, EndReason::RemoteBye);
                } else {
                    self.events
                        .push_back(UaEvent::MediaChangeFailed { call: id, status });
                }
            }
        }
    }

    // ----- output helpers -------------------------------------------------------------------

    pub(super) fn send_reinvite(&mut self, id: CallId, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(p) = c.reinvite.as_ref() else { return };
        c.local_media.direction = p.direction;
        if let Some(n) = &c.negotiated {
            c.local_media.keep_agreed_crypto(n);
        }
        c.sdp_version += 1;
        let offer = sdp::offer(&c.local_media, &c.session_id, c.sdp_version);
        c.our_offer = Some(offer.clone());
        c.last_local_sdp = Some(offer.clone());
        let contact = ("Contact", self.cfg.contact());
        let _ = self.send_in_dialog(
            id,
            "INVITE",
            vec![contact],
            Some(("application/sdp", offer.to_bytes())),
            now,
        );
    }
}
