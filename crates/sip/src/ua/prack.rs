//! Reliable provisional responses (RFC 3262, 100rel) and early media (RFC 3960): a 183 with
//! an answer, retransmitted until its PRACK, and the PRACKs we send for a peer's.

use super::*;

impl UserAgent {
    /// Early media (RFC 3261 §13.3.1.1, RFC 3960): answers the caller's offer in a 183 Session
    /// Progress so audio (an announcement, ringback, a queue) flows before the call is answered.
    /// Reliable (100rel, RFC 3262) when the caller supports it.
    pub fn early_media(
        &mut self,
        call: CallId,
        media: LocalMedia,
        now: Instant,
    ) -> Result<Negotiated, UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall(call))?;
        if c.state != CallState::Ringing {
            return Err(UaError::WrongState(call, "given early media"));
        }
        let offer = c.their_offer.clone().ok_or(UaError::WrongState(
            call,
            "given early media without an offer",
        ))?;
        c.local_media = media;
        let (answer, neg) = sdp::answer(&offer, &c.local_media, &c.session_id, c.sdp_version)?;
        c.negotiated = Some(neg.clone());
        c.last_local_sdp = Some(answer.clone());
        let reliable = c.peer_supports_100rel;
        let mut headers = Vec::new();
        if reliable {
            c.rseq += 1;
            headers.push("Require: 100rel".to_owned());
            headers.push(format!("RSeq: {}", c.rseq));
        }
        let rseq = c.rseq;
        let sent = self.respond_incoming_with(
            call,
            183,
            "Session Progress",
            Some(answer.to_bytes()),
            headers,
            now,
        );
        if let (true, Some((bytes, to)), Some(c)) = (reliable, sent, self.calls.get_mut(&call)) {
            let t1 = self.cfg.timers.t1;
            c.answered_reliably = true;
            c.reliable_1xx = Some((bytes, to, now + t1, t1, now + t1 * 64, rseq));
        }
        Ok(neg)
    }

    /// RFC 3262 §3: a PRACK names, in RAck, the reliable provisional it acknowledges; that
    /// one stops being retransmitted. A PRACK for one we never sent is 481.
    pub(super) fn on_prack(&mut self, req: Req<'_>, id: CallId, now: Instant) {
        let rack = req
            .msg
            .header("RAck")
            .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
        let ok = match (self.calls.get_mut(&id), rack) {
            (Some(c), Some(r)) => {
                if c.reliable_1xx.as_ref().is_some_and(|x| x.5 == r) {
                    c.reliable_1xx = None;
                    true
                } else {
                    r <= c.rseq && c.answered_reliably
                }
            }
            _ => false,
        };
        self.respond(req, if ok { 200 } else { 481 }, &[], now);
    }

    /// RFC 3262 §3: a reliable provisional goes again (T1 doubling) until PRACKed; without a
    /// PRACK in 64*T1 the INVITE is answered 504 and the call ends.
    pub(super) fn reliable_1xx_timeout(&mut self, id: CallId, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some((bytes, to, next, interval, until, _)) = c.reliable_1xx.as_mut() else {
            return;
        };
        if *until > now {
            if *next <= now {
                let transport = c.transport;
                resend_1xx(&mut self.transmits, bytes, *to, transport);
                *interval *= 2;
                *next = now + *interval;
            }
            return;
        }
        c.reliable_1xx = None;
        tracing::warn!(call = id, "no PRACK for our reliable 183 within 64*T1");
        self.respond_incoming(id, 504, "Server Time-out", None, now);
        self.end_call(id, EndReason::Timeout);
    }
}

pub(super) fn resend_1xx(
    out: &mut VecDeque<Transmit>,
    bytes: &Bytes,
    to: SocketAddr,
    transport: Transport,
) {
    out.push_back(Transmit {
        to: Destination::Addr(to),
        data: bytes.clone(),
        transport,
    });
}

/// What a 1xx to our INVITE asks of us under RFC 3262.
pub(super) enum Reliable1xx {
    /// Not reliable: nothing to acknowledge.
    No,
    /// A new reliable provisional: PRACK it with this RAck value.
    New(String),
    /// A retransmission we already PRACKed: nothing new in it.
    Repeat,
}

/// RFC 3262 §4: a reliable provisional response is PRACKed once per RSeq, inside the early
/// dialog it creates or belongs to (`fork`); the INVITE had CSeq `cseq`.
pub(super) fn reliable_provisional(
    fork: &mut EarlyDialog,
    cseq: u32,
    msg: &Message,
) -> Reliable1xx {
    let rseq = msg
        .header("RSeq")
        .and_then(|v| v.trim().parse::<u32>().ok());
    let (true, Some(rseq)) = (lists_option(msg, "Require", "100rel"), rseq) else {
        return Reliable1xx::No;
    };
    if rseq <= fork.last_rseq {
        return Reliable1xx::Repeat;
    }
    fork.last_rseq = rseq;
    fork.route_set = uac_route_set(msg);
    Reliable1xx::New(format!("{rseq} {cseq} INVITE"))
}

/// The early dialog of a 1xx with To tag `tag` (§12.1.2): found, or made from this response
/// (its Contact the target, its Record-Route the route set). `None` past [`MAX_FORKS`].
pub(super) fn early_dialog(c: &mut Call, tag: &str, msg: &Message) -> Option<usize> {
    let i = match c.forks.iter().position(|f| f.tag == tag) {
        Some(i) => i,
        None if c.forks.len() < MAX_FORKS => {
            c.forks.push(EarlyDialog {
                tag: tag.to_owned(),
                target: None,
                route_set: uac_route_set(msg),
                last_rseq: 0,
                answer: None,
            });
            c.forks.len() - 1
        }
        None => {
            tracing::warn!(
                call = c.id,
                "too many early dialogs; this fork's 1xx is ignored"
            );
            return None;
        }
    };
    if let Some(t) = contact_target(msg) {
        c.forks[i].target = Some(t);
    }
    Some(i)
}

/// Makes fork `i` the call's current early dialog: what we send before the 2xx (PRACK) goes
/// to it, with its tag, target and route set.
pub(super) fn enter_early_dialog(c: &mut Call, i: usize) {
    let Some(f) = c.forks.get(i) else { return };
    c.dialog.remote_tag = Some(f.tag.clone());
    c.dialog.remote_target = match (&f.target, &c.invite) {
        (Some(t), _) => t.clone(),
        (None, Some(inv)) => inv.request_uri.clone(),
        (None, None) => c.dialog.remote_target.clone(),
    };
    c.dialog.route_set = f.route_set.clone();
}
