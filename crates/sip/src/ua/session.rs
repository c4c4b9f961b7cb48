//! INVITE sessions and their dialogs (RFC 3261 §12–§15): placing a call (with digest
//! retries and CANCEL), receiving one (ringing, answering, refusing, Replaces of RFC 3891),
//! the ACK of a 2xx, and ending with BYE.

use super::*;

/// The largest request sent over UDP as it is (RFC 3261 §18.1.1, where the path MTU is not
/// known): an INVITE past it is trimmed.
pub(crate) const UDP_FIT: usize = 1300;

impl UserAgent {
    /// Calls `target` (a `sip:` URI) offering `media`. `extra_headers` are added verbatim
    /// (e.g. `Replaces: …`, `Referred-By: …`).
    pub fn invite(
        &mut self,
        target: &str,
        media: LocalMedia,
        extra_headers: Vec<String>,
        now: Instant,
    ) -> Result<CallId, UaError> {
        self.invite_over(target, None, media, extra_headers, now)
    }

    /// [`Self::invite`] with the next hop given: the transport and the address to send to
    /// (a registered phone's connection, say) instead of what `target` names. Over a stream,
    /// requests inside the dialog then take that connection too.
    pub fn invite_over(
        &mut self,
        target: &str,
        hop: Option<(Transport, SocketAddr)>,
        media: LocalMedia,
        extra_headers: Vec<String>,
        now: Instant,
    ) -> Result<CallId, UaError> {
        let how = Placement {
            hop,
            ..Placement::default()
        };
        self.invite_with(target, how, media, extra_headers, now)
    }

    /// [`Self::invite`] placed as `how` says: next hop, our From, our face in the call, and
    /// other servers to fail over to.
    pub fn invite_with(
        &mut self,
        target: &str,
        how: Placement,
        media: LocalMedia,
        extra_headers: Vec<String>,
        now: Instant,
    ) -> Result<CallId, UaError> {
        let Placement {
            hop,
            from,
            face,
            alternates,
        } = how;
        let target_uri = value_uri(target).to_owned();
        crate::wire::check_uri(&target_uri).map_err(|_| UaError::BadUri(target.into()))?;
        for h in &extra_headers {
            crate::wire::check_header_line(h)?;
        }
        for a in &alternates {
            crate::wire::check_uri(a).map_err(|_| UaError::BadUri(a.clone()))?;
            Destination::from_uri(a).ok_or_else(|| UaError::BadUri(a.clone()))?;
        }
        if let Some(f) = &from {
            crate::wire::check_uri(f).map_err(|_| UaError::BadUri(f.clone()))?;
        }
        if let Some(f) = &face {
            check_face(f)?;
        }
        let (destination, transport) = match (hop, &self.cfg.outbound_proxy) {
            (Some((t, addr)), _) if self.speaks(t) => (Destination::Addr(addr), t),
            (Some((t, _)), _) => return Err(UaError::NoTransport(t)),
            (None, Some(p)) => (p.clone(), self.cfg.transport),
            (None, None) => (
                Destination::from_uri(&target_uri).ok_or_else(|| UaError::BadUri(target.into()))?,
                self.transport_for(target),
            ),
        };
        if self.calls.len() >= self.limits.calls {
            return Err(UaError::TooManyCalls);
        }
        let id = self.next_call;
        self.next_call += 1;
        let aor = from.unwrap_or_else(|| self.cfg.aor());
        let local_uri = match &self.cfg.display_name {
            Some(d) => format!("\"{}\" <{aor}>", d.replace('"', "")),
            None => format!("<{aor}>"),
        };
        let dialog = Dialog {
            call_id: format!("{}@switchboard", random_token(20)),
            local_tag: random_token(10),
            remote_tag: None,
            local_uri,
            remote_uri: format!("<{target_uri}>"),
            local_cseq: 0,
            remote_cseq: None,
            remote_target: target_uri.clone(),
            route_set: Vec::new(),
            we_called: true,
        };
        let mut call = Call::new(id, CallState::Calling, dialog, media, transport);
        call.flow = hop.filter(|(t, _)| t.is_stream()).map(|(_, addr)| addr);
        call.face = face;
        let offer = sdp::offer(&call.local_media, &call.session_id, 1);
        call.last_local_sdp = Some(offer.clone());
        call.our_offer = Some(offer);
        call.invite = Some(OutgoingInvite {
            request_uri: target_uri,
            branch: String::new(),
            via: String::new(),
            cseq: 0,
            routes: Vec::new(),
            destination,
            extra_headers,
            alternates: alternates.into(),
        });
        call.se_requested = self.session_expires.unwrap_or(0);
        self.calls.insert(id, call);
        self.send_initial_invite(id, now);
        Ok(id)
    }

    /// Sends 180 Ringing for an incoming call.
    pub fn ring(&mut self, call: CallId, now: Instant) {
        self.respond_incoming(call, 180, "Ringing", None, now);
    }

    /// Answers an incoming call with `media` (200 OK with our SDP answer).
    pub fn answer(&mut self, call: CallId, media: LocalMedia, now: Instant) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall(call))?;
        if c.state != CallState::Ringing {
            return Err(UaError::WrongState(call, "answered"));
        }
        if c.negotiated.is_some() && c.last_local_sdp.is_some() {
            // The answer went out in a 183 already: the 2xx repeats it (unreliable 183) or
            // carries none (reliable 183, RFC 3262 §5).
            let body = (!c.answered_reliably)
                .then(|| c.last_local_sdp.as_ref().map(|s| s.to_bytes()))
                .flatten();
            self.respond_incoming(call, 200, "OK", body, now);
            return Ok(());
        }
        c.local_media = media;
        let offer = c.their_offer.clone();
        let (body, neg) = match offer {
            Some(o) => match sdp::answer(&o, &c.local_media, &c.session_id, c.sdp_version) {
                Ok((a, n)) => (a, Some(n)),
                Err(e) => {
                    let why = e.to_string();
                    self.reject(call, 488, now);
                    self.end_call(call, EndReason::MediaFailed(why));
                    return Err(UaError::Media(e));
                }
            },
            // Late offer: we offer in the 2xx, the ACK carries the answer.
            None => (
                sdp::offer(&c.local_media, &c.session_id, c.sdp_version),
                None,
            ),
        };
        if neg.is_none() {
            c.our_offer = Some(body.clone());
        }
        c.negotiated = neg;
        c.last_local_sdp = Some(body.clone());
        self.respond_incoming(call, 200, "OK", Some(body.to_bytes()), now);
        Ok(())
    }

    /// Refuses an incoming call (486 Busy Here, 603 Decline, …).
    pub fn reject(&mut self, call: CallId, status: u16, now: Instant) {
        let reason = reason_phrase(status);
        if self.calls.get(&call).map(|c| c.state) == Some(CallState::Ringing) {
            self.respond_incoming(call, status, reason, None, now);
            self.end_call(call, EndReason::Declined { status });
        }
    }

    /// Hangs up: CANCEL before an answer, BYE after, a refusal for an unanswered incoming call.
    pub fn hangup(&mut self, call: CallId, now: Instant) {
        let Some(state) = self.calls.get(&call).map(|c| c.state) else {
            return;
        };
        match state {
            CallState::Calling => self.cancel(call, now),
            CallState::Ringing => self.reject(call, 603, now),
            CallState::Answered | CallState::Confirmed => {
                self.send_bye(call, now);
                self.end_call(call, EndReason::Local);
            }
            CallState::Cancelling | CallState::Terminated => {}
        }
    }

    pub(super) fn require_confirmed(&self, call: CallId) -> Result<(), UaError> {
        match self.calls.get(&call).map(|c| c.state) {
            Some(CallState::Confirmed) | Some(CallState::Answered) => Ok(()),
            Some(_) => Err(UaError::WrongState(call, "used before it is answered")),
            None => Err(UaError::NoSuchCall(call)),
        }
    }

    // ----- input ----------------------------------------------------------------------------

    pub(super) fn handle_new_invite(
        &mut self,
        msg: &Message,
        source: SocketAddr,
        key: &(String, String),
        now: Instant,
    ) {
        let req = Req::new(msg, key);
        // 100 Trying at once, so the caller's timer A stops (§17.2.1).
        self.respond(req, 100, &[], now);
        let checked = if self.calls.len() >= self.limits.calls {
            Err(Refusal::new(486))
        } else {
            self.screen_invite(msg)
        };
        let (offer, contact, replaces) = match checked {
            Ok(c) => c,
            Err(r) => {
                self.refuse(req, r, now);
                return;
            }
        };
        let from = msg.header("From").unwrap_or("").to_owned();
        let to = msg.header("To").unwrap_or("").to_owned();
        let id = self.next_call;
        self.next_call += 1;
        let (cseq, _) = msg.cseq().unwrap_or((1, String::new()));
        let dialog = Dialog {
            call_id: msg.call_id().unwrap_or("").to_owned(),
            local_tag: random_token(10),
            remote_tag: header_param(&from, "tag").map(str::to_owned),
            local_uri: without_tag(&to),
            remote_uri: without_tag(&from),
            local_cseq: rand::random::<u16>() as u32,
            remote_cseq: Some(cseq),
            remote_target: contact,
            route_set: msg.headers("Record-Route").flat_map(split_list).collect(),
            we_called: false,
        };
        let placeholder = LocalMedia::new(std::net::Ipv4Addr::LOCALHOST.into(), 0);
        let transport = self.arrived_on;
        let mut call = Call::new(id, CallState::Ringing, dialog, placeholder, transport);
        call.flow = transport.is_stream().then_some(source);
        call.their_offer = offer;
        call.incoming = Some((msg.clone(), source, key.0.clone()));
        call.replaces = replaces;
        call.remote_se = parse_session_expires(msg);
        call.peer_supports_timer =
            lists_option(msg, "Supported", "timer") || lists_option(msg, "Require", "timer");
        call.peer_supports_100rel =
            lists_option(msg, "Supported", "100rel") || lists_option(msg, "Require", "100rel");
        call.rseq = rand::rng().random_range(1..=0x7fff_ffff);
        self.calls.insert(id, call);
        let x_headers = msg
            .headers_starting("X-")
            .filter(|(_, v)| v.len() <= super::MAX_X_HEADER_VALUE)
            .take(super::MAX_X_HEADERS)
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        self.events.push_back(UaEvent::IncomingCall {
            call: id,
            from,
            to,
            replaces,
            x_headers,
        });
    }

    /// What a new INVITE must pass before it rings (§8.2, RFC 4475's cases, RFC 4028 §8.1,
    /// RFC 3891 §3): its offer, the Contact that becomes our Request-URI, and the call it
    /// replaces.
    #[allow(clippy::type_complexity)]
    fn screen_invite(
        &self,
        msg: &Message,
    ) -> Result<(Option<Sdp>, String, Option<CallId>), Refusal> {
        let offer = read_offer(msg)?;
        let from = msg.header("From").unwrap_or("");
        // RFC 2543 peers send neither a From tag nor, at times, a Contact (RFC 4475 §3.4.1):
        // the dialog then has no remote tag and its remote target is the From URI.
        let legacy = !msg
            .top_via_branch()
            .is_some_and(|b| b.starts_with("z9hG4bK"));
        if header_param(from, "tag").is_none() && !legacy {
            return Err(Refusal::because(400, "Missing From tag"));
        }
        let contact = match msg.header("Contact") {
            Some(c) => value_uri(c).to_owned(),
            None if legacy => value_uri(from).to_owned(),
            None => return Err(Refusal::because(400, "Missing Contact")),
        };
        // The Contact becomes the Request-URI of everything we send in this dialog.
        if !usable_target(&contact) {
            return Err(Refusal::because(400, "Bad Contact"));
        }
        // RFC 4028 §8.1: too short a session interval → 422 with our Min-SE.
        if parse_session_expires(msg).is_some_and(|(se, _)| se < self.min_se) {
            return Err(Refusal::new(422).with(format!("Min-SE: {}", self.min_se)));
        }
        let replaces = match msg.header("Replaces").and_then(parse_replaces) {
            Some((cid, to_tag, from_tag)) => {
                let found = self.calls.values().find(|c| {
                    c.dialog.call_id == cid
                        && c.dialog.local_tag == to_tag
                        && c.dialog.remote_tag.as_deref() == Some(from_tag.as_str())
                });
                match found {
                    Some(c) if c.state != CallState::Terminated => Some(c.id),
                    _ => return Err(Refusal::new(481)),
                }
            }
            None => None,
        };
        Ok((offer, contact, replaces))
    }

    pub(super) fn handle_cancel(&mut self, msg: &Message, key: &(String, String), now: Instant) {
        let invite_key = (key.0.clone(), "INVITE".to_owned());
        let call = self.calls.values().find_map(|c| {
            c.incoming
                .as_ref()
                .filter(|(_, _, b)| *b == key.0 && c.state == CallState::Ringing)
                .map(|_| c.id)
        });
        match (self.server.contains_key(&invite_key), call) {
            (true, Some(id)) => {
                self.reply(key, msg, 200, "OK", None, &[], None, now);
                self.respond_incoming(id, 487, "Request Terminated", None, now);
                self.end_call(id, EndReason::Cancelled);
            }
            // Already answered or unknown: 200 if the INVITE exists, 481 if not (§9.2).
            (true, None) => self.reply(key, msg, 200, "OK", None, &[], None, now),
            (false, _) => self.reply(
                key,
                msg,
                481,
                "Call/Transaction Does Not Exist",
                None,
                &[],
                None,
                now,
            ),
        }
    }

    pub(super) fn find_dialog(&self, msg: &Message) -> Option<CallId> {
        let call_id = msg.call_id()?;
        let from_tag = msg.header("From").and_then(|f| header_param(f, "tag"));
        let to_tag = msg.header("To").and_then(|t| header_param(t, "tag"));
        let (local, remote) = if msg.is_request() {
            (to_tag?, from_tag)
        } else {
            (from_tag?, to_tag)
        };
        self.calls
            .values()
            .find(|c| {
                c.dialog.call_id == call_id
                    && c.dialog.local_tag == local
                    && (c.dialog.remote_tag.is_none()
                        || c.dialog.remote_tag.as_deref() == remote
                        // Any early dialog of a forked INVITE of ours (§12.1.2).
                        || c.forks.iter().any(|f| Some(f.tag.as_str()) == remote))
            })
            .map(|c| c.id)
    }

    pub(super) fn handle_ack(&mut self, msg: &Message, now: Instant) {
        let Some(id) = self.find_dialog(msg) else {
            return; // §17.2.3: a stray ACK is dropped.
        };
        let mut changed = None;
        let mut established = None;
        if let Some(c) = self.calls.get_mut(&id) {
            c.retransmit_2xx = None;
            // Late offer: the ACK carries the answer to the offer in our 2xx.
            if let (Some(offer), true) = (c.our_offer.take(), is_sdp(msg)) {
                if let Ok(ans) = Sdp::parse(msg.body()) {
                    if let Ok(n) = sdp::accept_answer(&offer, &ans) {
                        c.negotiated = Some(n);
                    }
                }
            }
            if c.answering_reinvite {
                c.answering_reinvite = false;
                changed = c.negotiated.clone();
            } else if c.state == CallState::Answered {
                c.state = CallState::Confirmed;
                established = c.negotiated.clone();
            }
        }
        if let Some(media) = established {
            self.events
                .push_back(UaEvent::Established { call: id, media });
            self.finish_replacement(id, now);
        } else if let Some(media) = changed {
            self.events.push_back(UaEvent::MediaChanged {
                call: id,
                media,
                by_peer: true,
            });
        }
        self.send_queued_hold(id, now);
    }

    /// An answered call that replaced another (RFC 3891 §3): the old one ends with BYE.
    pub(super) fn finish_replacement(&mut self, id: CallId, now: Instant) {
        let old = self.calls.get(&id).and_then(|c| c.replaces);
        if let Some(old) = old {
            if self.calls.contains_key(&old) {
                self.send_bye(old, now);
                self.end_call(old, EndReason::Replaced);
            }
        }
    }

    pub(super) fn on_invite_response(
        &mut self,
        id: CallId,
        status: u16,
        msg: &Message,
        now: Instant,
    ) {
        let retried = match status {
            100 => return,
            101..=199 => return self.on_invite_provisional(id, status, msg, now),
            200..=299 => return self.on_invite_2xx(id, msg, now),
            422 => self.retry_with_longer_interval(id, msg),
            401 | 407 => self.retry_with_credentials(id, status, msg),
            408 | 503 | 504 => self.fail_over(id, Some(status)),
            _ => false,
        };
        if retried {
            self.send_initial_invite(id, now);
            return;
        }
        let state = self.calls.get(&id).map(|c| c.state);
        let reason = if status == 487 && state == Some(CallState::Cancelling) {
            EndReason::Local
        } else {
            EndReason::Rejected {
                status,
                reason: msg.reason().unwrap_or("").to_owned(),
            }
        };
        self.end_call(id, reason);
    }

    /// Moves call `id`'s unanswered INVITE to its next alternate server after `status`
    /// (`None`: timeout or transport error): a new transaction, the early dialog and any
    /// challenge forgotten. False when none is left (or the call is being cancelled).
    pub(super) fn fail_over(&mut self, id: CallId, status: Option<u16>) -> bool {
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        if c.state != CallState::Calling {
            return false;
        }
        let Some(inv) = c.invite.as_mut() else {
            return false;
        };
        let Some(next) = inv.alternates.pop_front() else {
            return false;
        };
        let Some(destination) = Destination::from_uri(&next) else {
            return false;
        };
        tracing::info!(call = id, ?status, %next, "no answer from this server; trying the next");
        inv.request_uri = next.clone();
        inv.destination = destination;
        c.dialog.remote_target = next.clone();
        c.dialog.remote_tag = None;
        c.auth = None;
        c.forks.clear();
        c.flow = None;
        self.events.push_back(UaEvent::FailedOver {
            call: id,
            status,
            next,
        });
        true
    }

    /// A 1xx to our INVITE: its early dialog (one per To tag: a forking proxy makes several),
    /// a reliable one PRACKed inside that dialog (RFC 3262), early media from an answer in it.
    fn on_invite_provisional(&mut self, id: CallId, status: u16, msg: &Message, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let cseq = c.invite.as_ref().map(|i| i.cseq).unwrap_or(1);
        let fork = msg
            .header("To")
            .and_then(|t| header_param(t, "tag"))
            .and_then(|tag| early_dialog(c, tag, msg));
        let prack = match fork.and_then(|i| c.forks.get_mut(i)) {
            Some(f) => match reliable_provisional(f, cseq, msg) {
                Reliable1xx::Repeat => return,
                Reliable1xx::New(rack) => Some(rack),
                Reliable1xx::No => None,
            },
            None => None,
        };
        if let Some(i) = fork {
            enter_early_dialog(c, i);
        }
        let mut early = None;
        if is_sdp(msg) {
            if let (Some(offer), Ok(ans)) = (&c.our_offer, Sdp::parse(msg.body())) {
                if let Ok(n) = sdp::accept_answer(offer, &ans) {
                    if let Some(f) = fork.and_then(|i| c.forks.get_mut(i)) {
                        f.answer = Some(n.clone());
                    }
                    c.negotiated = Some(n.clone());
                    early = Some(n);
                }
            }
        }
        if let Some(rack) = prack {
            let _ = self.send_in_dialog(id, "PRACK", vec![("RAck", rack)], None, now);
        }
        self.events.push_back(UaEvent::Progress {
            call: id,
            status,
            reason: msg.reason().unwrap_or("").to_owned(),
            early_media: early,
        });
    }

    /// A 2xx to our INVITE: the dialog is set up (§12.1.2), ACKed, and established — or,
    /// when it crossed our CANCEL or its answer does not fit our offer, ended with BYE.
    fn on_invite_2xx(&mut self, id: CallId, msg: &Message, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let cancelling = c.state == CallState::Cancelling;
        c.dialog.remote_tag = msg
            .header("To")
            .and_then(|t| header_param(t, "tag"))
            .map(str::to_owned);
        if let Some(t) = contact_target(msg) {
            c.dialog.remote_target = t;
        }
        c.dialog.route_set = uac_route_set(msg);
        c.dialog.remote_cseq = None;
        // The answer of this dialog's own early 1xx, not another fork's (§13.2.2.4).
        let forks = std::mem::take(&mut c.forks);
        let early_answer = forks
            .into_iter()
            .find(|f| c.dialog.remote_tag.as_deref() == Some(f.tag.as_str()))
            .and_then(|f| f.answer);
        let media = match (&c.our_offer, is_sdp(msg)) {
            (Some(offer), true) => Sdp::parse(msg.body())
                .map_err(|e| e.to_string())
                .and_then(|a| sdp::accept_answer(offer, &a).map_err(|e| e.to_string())),
            // The answer came in an 18x of this dialog earlier.
            (Some(_), false) => {
                early_answer.ok_or_else(|| "the 2xx carries no SDP answer".to_owned())
            }
            (None, _) => Err("no offer".to_owned()),
        };
        c.our_offer = None;
        let cseq = c.invite.as_ref().map(|i| i.cseq).unwrap_or(1);
        self.send_ack(id, cseq, now);
        match media {
            _ if cancelling => {
                // The answer crossed our CANCEL: take the call and end it (§9.1).
                self.send_bye(id, now);
                self.end_call(id, EndReason::Local);
            }
            Ok(n) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.state = CallState::Confirmed;
                    c.negotiated = Some(n.clone());
                    c.timer = uac_session_timer(msg, now);
                }
                self.events
                    .push_back(UaEvent::Established { call: id, media: n });
            }
            Err(why) => {
                self.send_bye(id, now);
                self.end_call(id, EndReason::MediaFailed(why));
            }
        }
    }

    /// 401/407 to our INVITE: answer the challenge once (again only when the nonce went
    /// stale), and only for a realm of our account — never a callee's own.
    fn retry_with_credentials(&mut self, id: CallId, status: u16, msg: &Message) -> bool {
        let header = if status == 401 {
            "WWW-Authenticate"
        } else {
            "Proxy-Authenticate"
        };
        let Some(challenge) = msg.headers(header).find_map(|h| Challenge::parse(h).ok()) else {
            return false;
        };
        if !self.realm_is_trusted(&challenge.realm) {
            tracing::warn!(
                realm = %challenge.realm,
                "a challenge for a realm that is not our account's was not answered"
            );
            return false;
        }
        let has_credentials = self.cfg.credentials.is_some();
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        let again = match &c.auth {
            None => true,
            Some(_) => challenge.stale,
        };
        if !(has_credentials && again && c.state == CallState::Calling) {
            return false;
        }
        c.auth = Some((challenge, 0, status == 407));
        true
    }

    pub(super) fn send_initial_invite(&mut self, id: CallId, now: Instant) {
        let cfg = self.over_call(id);
        let min_se = self.min_se;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(inv) = c.invite.as_mut() else { return };
        c.dialog.local_cseq += 1;
        inv.cseq = c.dialog.local_cseq;
        inv.branch = new_branch();
        inv.via = format!(
            "SIP/2.0/{} {};branch={};rport",
            cfg.transport.via_name(),
            cfg.contact_host,
            inv.branch
        );
        let built = loop {
            let Some(c) = self.calls.get_mut(&id) else {
                return;
            };
            let Some(inv) = c.invite.clone() else { return };
            let built = Self::initial_invite_bytes(c, &inv, &cfg, min_se);
            // RFC 3261 §18.1.1: a request over UDP larger than 1300 bytes may be fragmented
            // on the way, and fragments are what firewalls drop. A B2BUA's offer is its own,
            // so the least preferred codecs go until it fits — PCMU, which every SIP peer
            // takes, last of all (Microsoft's "trim SDP toward UDP legs").
            let too_big = matches!(&built, Ok(d) if d.len() > UDP_FIT);
            if !(too_big && cfg.transport == Transport::Udp) {
                break built;
            }
            let codecs = &mut c.local_media.codecs;
            let Some(last) = codecs
                .iter()
                .rposition(|x| !x.encoding.eq_ignore_ascii_case("PCMU"))
                .filter(|_| codecs.len() > 1)
            else {
                tracing::warn!(
                    call = id,
                    bytes = built.as_ref().map_or(0, |d| d.len()),
                    "an INVITE over UDP is larger than 1300 bytes with one codec left: sent as it is, it may be fragmented"
                );
                break built;
            };
            let dropped = codecs.remove(last).encoding;
            let offer = sdp::offer(&c.local_media, &c.session_id, 1);
            c.last_local_sdp = Some(offer.clone());
            c.our_offer = Some(offer);
            tracing::info!(call = id, %dropped, "INVITE over UDP trimmed to fit 1300 bytes");
        };
        let data = match built {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(call = id, error = %e, "INVITE not sent");
                self.end_call(id, EndReason::NotSent(format!("INVITE: {e}")));
                return;
            }
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(inv) = c.invite.as_mut() else { return };
        let parts = (
            inv.request_uri.clone(),
            inv.via.clone(),
            format!("{};tag={}", c.dialog.local_uri, c.dialog.local_tag),
            c.dialog.call_id.clone(),
            inv.cseq,
            inv.routes.clone(),
        );
        let destination = inv.destination.clone();
        let branch = inv.branch.clone();
        let tx = ClientInvite::start(data, cfg.transport.reliability(), cfg.timers, now);
        self.client.insert(
            branch.clone(),
            ClientTx {
                kind: ClientTxKind::Invite(tx),
                call: Some(id),
                method: "INVITE".into(),
                destination,
                transport: cfg.transport,
                invite_parts: Some(parts),
            },
        );
        self.drain_client(&branch, None, now);
    }

    /// The initial INVITE of call `c` as it goes on the wire now: its offer, headers, and
    /// credentials where a challenge asked for them.
    fn initial_invite_bytes(
        c: &mut Call,
        inv: &OutgoingInvite,
        cfg: &UaConfig,
        min_se: u32,
    ) -> Result<Bytes, crate::wire::WireError> {
        let body = c
            .our_offer
            .as_ref()
            .map(|s| s.to_bytes())
            .unwrap_or_default();
        let mut m = initial_request("INVITE", inv, &c.dialog);
        m.header("Contact", cfg.contact())
            .header("Allow", ALLOW)
            .header("Supported", "replaces, 100rel, timer")
            .header("User-Agent", &cfg.user_agent)
            .headers("Route", &inv.routes);
        if c.se_requested > 0 {
            m.header("Session-Expires", c.se_requested)
                .header("Min-SE", min_se);
        }
        for h in inv
            .extra_headers
            .iter()
            .chain(c.face.iter().flat_map(|f| &f.headers))
        {
            m.header_line(h);
        }
        if let (Some((ch, nc, proxy)), Some(creds)) = (c.auth.as_mut(), cfg.credentials.as_ref()) {
            *nc += 1;
            let value = ch.authorize(creds, "INVITE", &inv.request_uri, *nc, &random_token(16));
            let name = if *proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            };
            m.header(name, value);
        }
        m.body("application/sdp", body);
        m.build()
    }

    /// CANCEL for our pending initial INVITE (§9.1): same Request-URI, Call-ID, From, To,
    /// CSeq number and top Via as the INVITE.
    pub(super) fn cancel(&mut self, id: CallId, now: Instant) {
        let cfg = self.over_call(id);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(inv) = c.invite.clone() else { return };
        c.state = CallState::Cancelling;
        // §9.1: CANCEL only after a provisional response; before it, wait (timer B or the 1xx).
        let got_provisional = self
            .client
            .get(&inv.branch)
            .is_some_and(|t| matches!(&t.kind, ClientTxKind::Invite(i) if i.state() == transaction::State::Proceeding));
        if !got_provisional {
            // Still send it: most UAS accept CANCEL before a 1xx over UDP; the 487 ends the call.
            tracing::debug!(call = id, "CANCEL before any provisional response");
        }
        let mut m = initial_request("CANCEL", &inv, &c.dialog);
        m.header("User-Agent", &cfg.user_agent)
            .headers("Route", &inv.routes);
        // The INVITE went out with these same values, so this cannot fail; if it did, the
        // INVITE transaction still ends the call (timer B or the final response).
        let req = match m.build() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(call = id, error = %e, "CANCEL not sent");
                return;
            }
        };
        let tx = ClientNonInvite::start(req, cfg.transport.reliability(), cfg.timers, now);
        // CANCEL shares the INVITE's branch; key it apart.
        let key = format!("{}#CANCEL", inv.branch);
        self.client.insert(
            key.clone(),
            ClientTx {
                kind: ClientTxKind::NonInvite(tx),
                call: Some(id),
                method: "CANCEL".into(),
                destination: inv.destination,
                transport: cfg.transport,
                invite_parts: None,
            },
        );
        self.drain_client(&key, None, now);
    }

    pub(super) fn send_ack(&mut self, id: CallId, cseq: u32, _now: Instant) {
        let cfg = self.over_call(id);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let (ruri, routes, destination) = in_dialog_target(c, &cfg);
        let mut m = MessageBuilder::request("ACK", &ruri);
        dialog_headers(&mut m, &c.dialog, &cfg, &new_branch(), cseq, "ACK");
        m.headers("Route", &routes);
        let data = match m.build() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(call = id, error = %e, "ACK not sent");
                return;
            }
        };
        c.last_ack = Some((cseq, data.clone(), destination.clone()));
        self.transmits.push_back(Transmit {
            to: destination,
            data,
            transport: cfg.transport,
        });
    }

    /// Responds to the incoming initial INVITE of `id`.
    pub(super) fn respond_incoming(
        &mut self,
        id: CallId,
        status: u16,
        reason: &str,
        body: Option<Bytes>,
        now: Instant,
    ) {
        self.respond_incoming_with(id, status, reason, body, Vec::new(), now);
    }

    pub(super) fn respond_incoming_with(
        &mut self,
        id: CallId,
        status: u16,
        reason: &str,
        body: Option<Bytes>,
        mut headers: Vec<String>,
        now: Instant,
    ) -> Option<(Bytes, SocketAddr)> {
        let (req, _, branch) = self.calls.get(&id).and_then(|c| c.incoming.clone())?;
        let key = (branch, "INVITE".to_owned());
        if status > 100 {
            headers.extend(self.face_headers(id));
        }
        if status < 300 && status > 100 {
            headers.push(format!("Contact: {}", self.over_call(id).contact()));
            headers.push(format!("Allow: {ALLOW}"));
            headers.push("Supported: replaces, 100rel, timer".to_owned());
        }
        // RFC 4028 §9: the 2xx states the interval and who refreshes.
        let mut timer = None;
        if let (200..=299, Some(c)) = (status, self.calls.get(&id)) {
            if let Some((t, lines)) = uas_session_timer(c, self.session_expires, now) {
                timer = Some(t);
                headers.extend(lines);
            }
        }
        let extra: Vec<&str> = headers.iter().map(String::as_str).collect();
        let sent = self.reply_tx(
            &key,
            &req,
            status,
            reason,
            Some(id),
            &extra,
            body.map(|b| ("application/sdp", b)),
            now,
        );
        if let (200..=299, Some((bytes, to))) = (status, sent.clone()) {
            let transport = self.over_call(id).transport;
            let plan = self.retransmit_2xx_plan(bytes, to, transport, now);
            if let Some(c) = self.calls.get_mut(&id) {
                c.state = CallState::Answered;
                c.timer = timer;
                c.reliable_1xx = None;
                c.retransmit_2xx = Some(plan);
            }
        }
        sent
    }

    pub(super) fn end_call(&mut self, id: CallId, reason: EndReason) {
        if let Some(mut c) = self.calls.remove(&id) {
            c.state = CallState::Terminated;
            // Keep transactions: they finish their retransmissions on their own.
            for t in self.client.values_mut() {
                if t.call == Some(id) {
                    t.call = None;
                }
            }
            self.events.push_back(UaEvent::Ended { call: id, reason });
        }
    }

    /// §13.3.1.4: our 2xx goes again (T1 doubling up to T2) until its ACK; without one in
    /// 64*T1 the dialog ends with BYE.
    pub(super) fn retransmit_2xx_timeout(&mut self, id: CallId, now: Instant) {
        let t2 = self.cfg.timers.t2;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some((bytes, to, next, interval, until)) = c.retransmit_2xx.as_mut() else {
            return;
        };
        if *until > now {
            if *next <= now {
                let transport = c.transport;
                self.transmits.push_back(Transmit {
                    to: Destination::Addr(*to),
                    data: bytes.clone(),
                    transport,
                });
                *interval = (*interval * 2).min(t2);
                *next = now + *interval;
            }
            return;
        }
        c.retransmit_2xx = None;
        c.answering_reinvite = false;
        c.state = CallState::Confirmed;
        tracing::warn!(
            call = id,
            "no ACK for our 2xx within 64*T1; ending the call"
        );
        self.send_bye(id, now);
        self.end_call(id, EndReason::Timeout);
    }
}

/// The start line, Via, Max-Forwards, From, To, Call-ID and CSeq of our initial INVITE, which
/// its CANCEL repeats (§9.1).
pub(super) fn initial_request(method: &str, inv: &OutgoingInvite, d: &Dialog) -> MessageBuilder {
    let mut m = MessageBuilder::request(method, &inv.request_uri);
    m.header("Via", &inv.via)
        .header("Max-Forwards", 70)
        .header("From", format_args!("{};tag={}", d.local_uri, d.local_tag))
        .header("To", &d.remote_uri)
        .header("Call-ID", &d.call_id)
        .cseq(inv.cseq, method);
    m
}

/// The name-addr of a From/To value without its `tag` parameter.
pub(super) fn without_tag(v: &str) -> String {
    let (head, params) = match v.rfind('>') {
        Some(i) => (&v[..=i], &v[i + 1..]),
        None => match v.split_once(';') {
            Some((h, p)) => (h, p),
            None => (v, ""),
        },
    };
    let mut out = head.trim().to_owned();
    for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        if !p.to_ascii_lowercase().starts_with("tag=") {
            out.push(';');
            out.push_str(p);
        }
    }
    out
}

/// The offer of a new INVITE, if any: a body we cannot read is 415 (RFC 4475 §3.3.6 invut),
/// an Accept that rules SDP out 406 (§3.3.15 sdp01), SDP we cannot parse 400, an offer we
/// could never answer 488 (whether we have SRTP keys is the application's to say, when it
/// answers).
fn read_offer(msg: &Message) -> Result<Option<Sdp>, Refusal> {
    if !msg.body().is_empty() && !is_sdp(msg) {
        return Err(Refusal::new(415).with("Accept: application/sdp"));
    }
    if let Some(accept) = msg.header("Accept") {
        let takes_sdp = split_list(accept).iter().any(|a| {
            let t = a
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            t == "application/sdp" || t == "application/*" || t == "*/*"
        });
        if !takes_sdp && !accept.trim().is_empty() {
            return Err(Refusal::new(406)
                .with("Warning: 399 switchboard \"we answer with application/sdp only\""));
        }
    }
    if !is_sdp(msg) {
        return Ok(None);
    }
    let offer = Sdp::parse(msg.body()).map_err(|e| {
        Refusal::because(400, "Bad SDP").with(format!("Warning: 399 switchboard \"{e}\""))
    })?;
    let probe = LocalMedia::new(std::net::Ipv4Addr::LOCALHOST.into(), 9);
    match sdp::answer(&offer, &probe, "0", 0) {
        Err(e) if !matches!(e, sdp::SdpError::NoCommonCrypto { .. }) => {
            Err(Refusal::new(488).with(format!("Warning: 304 switchboard \"{e}\"")))
        }
        _ => Ok(Some(offer)),
    }
}

/// UAC: the route set is the Record-Route list reversed (§12.1.2).
pub(super) fn uac_route_set(msg: &Message) -> Vec<String> {
    let mut rr: Vec<String> = msg.headers("Record-Route").flat_map(split_list).collect();
    rr.reverse();
    rr
}
