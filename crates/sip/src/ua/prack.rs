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
}

pub(super) fn resend_1xx(out: &mut VecDeque<Transmit>, bytes: &Bytes, to: SocketAddr) {
    out.push_back(Transmit {
        to: Destination::Addr(to),
        data: bytes.clone(),
    });
}
