//! Changing an established session (RFC 3261 §14, RFC 3311 UPDATE): hold and resume with a
//! re-INVITE, answering the peer's re-offers, and glare — 491 and a randomised retry (§14.1).

use super::*;

impl UserAgent {
    /// Puts the peer on hold (re-INVITE with `sendonly`) or resumes (`sendrecv`).
    pub fn hold(&mut self, call: CallId, on_hold: bool, now: Instant) -> Result<(), UaError> {
        let direction = if on_hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        self.hold_as(call, direction, now)
    }

    /// A re-INVITE offering `direction`: `sendonly` (RFC 3264 §8.4 hold) or `inactive` for
    /// peers that understand no other hold (Microsoft Teams' Direct Routing), `sendrecv` to
    /// resume.
    ///
    /// While another offer/answer exchange is under way (our re-INVITE or session refresh, a
    /// peer's re-INVITE we answered with an offer and whose ACK has not come) a second INVITE
    /// may not start (§14.1): the wish waits and goes when that exchange is over (one waiting
    /// for its retry after a 491 included), the last of several waiting wishes winning. The
    /// change is reported by [`UaEvent::MediaChanged`] once it is agreed.
    pub fn hold_as(
        &mut self,
        call: CallId,
        direction: Direction,
        now: Instant,
    ) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall(call))?;
        if c.state != CallState::Confirmed {
            return Err(UaError::WrongState(call, "put on hold"));
        }
        if c.reinvite.is_some() || c.answering_reinvite || c.refreshing {
            tracing::debug!(
                call,
                ?direction,
                "another offer is under way; the hold waits for it"
            );
            c.queued_hold = Some(direction);
            return Ok(());
        }
        c.queued_hold = None;
        c.reinvite = Some(PendingReinvite {
            direction,
            retry_at: None,
        });
        self.send_reinvite(call, now);
        Ok(())
    }

    /// The offer/answer exchange under way on `call` is over: a hold or resume that waited for
    /// it goes now.
    pub(super) fn send_queued_hold(&mut self, call: CallId, now: Instant) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state != CallState::Confirmed
            || c.reinvite.is_some()
            || c.answering_reinvite
            || c.refreshing
        {
            return;
        }
        if let Some(direction) = c.queued_hold.take() {
            c.reinvite = Some(PendingReinvite {
                direction,
                retry_at: None,
            });
            self.send_reinvite(call, now);
        }
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
        let req = Req::new(msg, key).in_call(id);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let offer = match reoffer_allowed(c, method).and_then(|()| read_reoffer(msg)) {
            Ok(o) => o,
            Err(r) => {
                self.refuse(req, r, now);
                return;
            }
        };
        let timer_headers = restart_session_timer(c, msg, now);
        if method == "UPDATE" && offer.is_none() {
            let extra: Vec<&str> = timer_headers.iter().map(String::as_str).collect();
            self.respond(req, 200, &extra, now);
            return;
        }
        let (body, neg) = match answer_reoffer(c, offer.as_ref()) {
            Ok(a) => a,
            Err(r) => {
                self.refuse(req, r, now);
                return;
            }
        };
        let contact = format!("Contact: {}", self.over_call(id).contact());
        let mut headers: Vec<&str> = vec![&contact];
        headers.extend(timer_headers.iter().map(String::as_str));
        let body = Some(("application/sdp", body.to_bytes()));
        let sent = self.reply_tx(key, msg, 200, "OK", Some(id), &headers, body, now);
        if method == "INVITE" {
            if let Some((bytes, to)) = sent {
                let transport = self.over_call(id).transport;
                let plan = self.retransmit_2xx_plan(bytes, to, transport, now);
                if let Some(c) = self.calls.get_mut(&id) {
                    // With a new answer the media applies now and the ACK confirms it; with
                    // our offer in the 2xx we wait for the ACK's answer.
                    c.answering_reinvite = neg.is_none() && c.our_offer.is_some();
                    c.retransmit_2xx = Some(plan);
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
                self.send_queued_hold(id, now);
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
                // A refresh refused 491 is left to the session timer; a hold that waited for
                // it goes now (one that waits for our own re-INVITE's retry goes after it).
                self.send_queued_hold(id, now);
            }
            _ => {
                let mut was_refresh = false;
                if let Some(c) = self.calls.get_mut(&id) {
                    was_refresh = std::mem::take(&mut c.refreshing) && c.reinvite.is_none();
                    c.reinvite = None;
                    c.our_offer = None;
                }
                if status == 481 || status == 408 {
                    self.end_call(id, EndReason::RemoteBye);
                    return;
                }
                // A failed refresh is tried again by the timer (10 s later), and is no media
                // change.
                if !was_refresh {
                    self.events
                        .push_back(UaEvent::MediaChangeFailed { call: id, status });
                }
                self.send_queued_hold(id, now);
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
        let contact = ("Contact", self.over_call(id).contact());
        let _ = self.send_in_dialog(
            id,
            "INVITE",
            vec![contact],
            Some(("application/sdp", offer.to_bytes())),
            now,
        );
    }

    /// §14.1: after a 491 our re-INVITE goes again at its randomised time.
    pub(super) fn reinvite_retry_timeout(&mut self, id: CallId, now: Instant) {
        let due = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.reinvite.as_mut())
            .filter(|r| r.retry_at.is_some_and(|t| t <= now));
        if let Some(r) = due {
            r.retry_at = None;
            self.send_reinvite(id, now);
        }
    }
}

/// §14.2: a re-INVITE before the call is confirmed is 500 with Retry-After; glare with our own
/// pending re-INVITE is 491; one arriving while we answer the previous is 500.
fn reoffer_allowed(c: &Call, method: &str) -> Result<(), Refusal> {
    if c.state != CallState::Confirmed && method == "INVITE" {
        return Err(Refusal::new(500).with("Retry-After: 1"));
    }
    if c.reinvite.as_ref().is_some_and(|r| r.retry_at.is_none()) {
        return Err(Refusal::new(491));
    }
    if c.answering_reinvite {
        return Err(Refusal::new(500).with("Retry-After: 2"));
    }
    Ok(())
}

/// The new offer of a re-INVITE or UPDATE, if it carries one (488 when it cannot be read).
fn read_reoffer(msg: &Message) -> Result<Option<Sdp>, Refusal> {
    if !is_sdp(msg) {
        return Ok(None);
    }
    Sdp::parse(msg.body())
        .map(Some)
        .map_err(|e| Refusal::new(488).with(format!("Warning: 399 switchboard \"{e}\"")))
}

/// Our SDP for a re-offer: the answer to `offer` with what it negotiates (`None` when nothing
/// changed), or — for an offerless re-INVITE — our own offer, which the ACK answers. An answer
/// that changes nothing keeps its version (RFC 3264 §8).
fn answer_reoffer(c: &mut Call, offer: Option<&Sdp>) -> Result<(Sdp, Option<Negotiated>), Refusal> {
    c.sdp_version += 1;
    // An ICE restart from the full agent: a lite agent answers with new credentials too
    // (RFC 8445 §9; the media goes on over the pair in use until the next nomination).
    if let Some(o) = offer.filter(|_| c.local_media.ice.is_some()) {
        if sdp::ice_restarts(o, c.negotiated.as_ref()) {
            c.local_media.ice = Some(sdp::IceLite::generate());
        }
    }
    let (body, neg) = match offer {
        Some(o) => sdp::answer(o, &c.local_media, &c.session_id, c.sdp_version)
            .map(|(a, n)| (a, Some(n)))
            .map_err(|e| {
                c.sdp_version -= 1;
                Refusal::new(488).with(format!("Warning: 304 switchboard \"{e}\""))
            })?,
        None => {
            if let Some(n) = &c.negotiated {
                c.local_media.keep_agreed_crypto(n);
            }
            let o = sdp::offer(&c.local_media, &c.session_id, c.sdp_version);
            c.our_offer = Some(o.clone());
            (o, None)
        }
    };
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
    Ok((body, if unchanged { None } else { neg }))
}
