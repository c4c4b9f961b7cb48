//! INVITE sessions and their dialogs (RFC 3261 §12–§15): placing a call (with digest
//! retries and CANCEL), receiving one (ringing, answering, refusing, Replaces of RFC 3891),
//! the ACK of a 2xx, and ending with BYE.

use super::*;

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
        let target_uri = value_uri(target).to_owned();
        crate::wire::check_uri(&target_uri).map_err(|_| UaError::BadUri(target.into()))?;
        for h in &extra_headers {
            crate::wire::check_header_line(h)?;
        }
        let destination = match &self.cfg.outbound_proxy {
            Some(p) => p.clone(),
            None => {
                Destination::from_uri(&target_uri).ok_or_else(|| UaError::BadUri(target.into()))?
            }
        };
        if self.calls.len() >= MAX_CALLS {
            return Err(UaError::TooManyCalls);
        }
        let id = self.next_call;
        self.next_call += 1;
        let local_uri = match &self.cfg.display_name {
            Some(d) => format!("\"{}\" <{}>", d.replace('"', ""), self.cfg.aor()),
            None => format!("<{}>", self.cfg.aor()),
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
        let session_id = rand::random::<u32>().to_string();
        let offer = sdp::offer(&media, &session_id, 1);
        let call = Call {
            id,
            state: CallState::Calling,
            dialog,
            local_media: media,
            session_id,
            sdp_version: 1,
            last_local_sdp: Some(offer.clone()),
            our_offer: Some(offer),
            their_offer: None,
            negotiated: None,
            invite: Some(OutgoingInvite {
                request_uri: target_uri,
                branch: String::new(),
                via: String::new(),
                cseq: 0,
                routes: Vec::new(),
                destination,
                extra_headers,
            }),
            incoming: None,
            retransmit_2xx: None,
            last_ack: None,
            reinvite: None,
            answering_reinvite: false,
            refer_sub: None,
            auth: None,
            replaces: None,
            timer: None,
            se_requested: self.session_expires.unwrap_or(0),
            retried_422: false,
            remote_se: None,
            peer_supports_timer: false,
            peer_supports_100rel: false,
            refreshing: false,
            last_rseq: 0,
            rseq: 0,
            reliable_1xx: None,
            answered_reliably: false,
        };
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
        // 100 Trying at once, so the caller's timer A stops (§17.2.1).
        self.reply(key, msg, 100, "Trying", None, &[], None, now);
        if self.calls.len() >= MAX_CALLS {
            self.reply(key, msg, 486, "Busy Here", None, &[], None, now);
            return;
        }
        // A body we cannot read (RFC 4475 §3.3.6 invut) → 415 saying what we accept.
        if !msg.body().is_empty() && !is_sdp(msg) {
            self.reply(
                key,
                msg,
                415,
                "Unsupported Media Type",
                None,
                &["Accept: application/sdp"],
                None,
                now,
            );
            return;
        }
        // Our answer is SDP: an Accept that rules it out (RFC 4475 §3.3.15 sdp01) → 406.
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
                let w = "Warning: 399 switchboard \"we answer with application/sdp only\"";
                self.reply(key, msg, 406, "Not Acceptable", None, &[w], None, now);
                return;
            }
        }
        let offer = if is_sdp(msg) {
            match Sdp::parse(msg.body()) {
                Ok(s) => Some(s),
                Err(e) => {
                    let w = format!("Warning: 399 switchboard \"{e}\"");
                    self.reply(key, msg, 400, "Bad SDP", None, &[&w], None, now);
                    return;
                }
            }
        } else {
            None
        };
        // Reject at once what we could never answer.
        if let Some(o) = &offer {
            let probe = LocalMedia::new(std::net::Ipv4Addr::LOCALHOST.into(), 9);
            if let Err(e) = sdp::answer(o, &probe, "0", 0) {
                // Whether we have SRTP keys is the application's to say, when it answers.
                if !matches!(e, sdp::SdpError::NoCommonCrypto { .. }) {
                    let w = format!("Warning: 304 switchboard \"{e}\"");
                    self.reply(key, msg, 488, "Not Acceptable Here", None, &[&w], None, now);
                    return;
                }
            }
        }
        let from = msg.header("From").unwrap_or("").to_owned();
        let to = msg.header("To").unwrap_or("").to_owned();
        // RFC 2543 peers send neither a From tag nor, at times, a Contact (RFC 4475 §3.4.1):
        // the dialog then has no remote tag and its remote target is the From URI.
        let legacy = !msg
            .top_via_branch()
            .is_some_and(|b| b.starts_with("z9hG4bK"));
        let remote_tag = header_param(&from, "tag").map(str::to_owned);
        if remote_tag.is_none() && !legacy {
            self.reply(key, msg, 400, "Missing From tag", None, &[], None, now);
            return;
        }
        let contact = match msg.header("Contact") {
            Some(c) => value_uri(c).to_owned(),
            None if legacy => value_uri(&from).to_owned(),
            None => {
                self.reply(key, msg, 400, "Missing Contact", None, &[], None, now);
                return;
            }
        };
        // The Contact becomes the Request-URI of everything we send in this dialog.
        if !usable_target(&contact) {
            self.reply(key, msg, 400, "Bad Contact", None, &[], None, now);
            return;
        }
        // RFC 4028 §8.1: too short a session interval → 422 with our Min-SE.
        if let Some((se, _)) = parse_session_expires(msg) {
            if se < self.min_se {
                let h = format!("Min-SE: {}", self.min_se);
                self.reply(
                    key,
                    msg,
                    422,
                    "Session Interval Too Small",
                    None,
                    &[&h],
                    None,
                    now,
                );
                return;
            }
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
                    _ => {
                        self.reply(
                            key,
                            msg,
                            481,
                            "Call/Transaction Does Not Exist",
                            None,
                            &[],
                            None,
                            now,
                        );
                        return;
                    }
                }
            }
            None => None,
        };
        let id = self.next_call;
        self.next_call += 1;
        let (cseq, _) = msg.cseq().unwrap_or((1, String::new()));
        let dialog = Dialog {
            call_id: msg.call_id().unwrap_or("").to_owned(),
            local_tag: random_token(10),
            remote_tag,
            local_uri: without_tag(&to),
            remote_uri: without_tag(&from),
            local_cseq: rand::random::<u16>() as u32,
            remote_cseq: Some(cseq),
            remote_target: contact,
            route_set: msg.headers("Record-Route").flat_map(split_list).collect(),
            we_called: false,
        };
        let call = Call {
            id,
            state: CallState::Ringing,
            dialog,
            local_media: LocalMedia::new(std::net::Ipv4Addr::LOCALHOST.into(), 0),
            session_id: rand::random::<u32>().to_string(),
            sdp_version: 1,
            last_local_sdp: None,
            our_offer: None,
            their_offer: offer,
            negotiated: None,
            invite: None,
            incoming: Some((msg.clone(), source, key.0.clone())),
            retransmit_2xx: None,
            last_ack: None,
            reinvite: None,
            answering_reinvite: false,
            refer_sub: None,
            auth: None,
            replaces,
            timer: None,
            se_requested: 0,
            retried_422: false,
            remote_se: parse_session_expires(msg),
            peer_supports_timer: lists_option(msg, "Supported", "timer")
                || lists_option(msg, "Require", "timer"),
            peer_supports_100rel: lists_option(msg, "Supported", "100rel")
                || lists_option(msg, "Require", "100rel"),
            refreshing: false,
            last_rseq: 0,
            rseq: rand::rng().random_range(1..=0x7fff_ffff),
            reliable_1xx: None,
            answered_reliably: false,
        };
        self.calls.insert(id, call);
        self.events.push_back(UaEvent::IncomingCall {
            call: id,
            from,
            to,
            replaces,
        });
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
                    && (c.dialog.remote_tag.is_none() || c.dialog.remote_tag.as_deref() == remote)
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
        let to = msg.header("To").unwrap_or("").to_owned();
        let remote_tag = header_param(&to, "tag").map(str::to_owned);
        match status {
            100 => {}
            101..=199 => {
                let mut early = None;
                let mut prack = None;
                if let Some(c) = self.calls.get_mut(&id) {
                    if c.dialog.remote_tag.is_none() {
                        c.dialog.remote_tag = remote_tag;
                    }
                    // RFC 3262: a reliable provisional response is PRACKed once per RSeq,
                    // inside the early dialog it creates.
                    let rseq = msg
                        .header("RSeq")
                        .and_then(|v| v.trim().parse::<u32>().ok());
                    if let (true, Some(rseq)) = (lists_option(msg, "Require", "100rel"), rseq) {
                        if rseq > c.last_rseq {
                            c.last_rseq = rseq;
                            if let Some(t) = contact_target(msg) {
                                c.dialog.remote_target = t;
                            }
                            let mut rr: Vec<String> =
                                msg.headers("Record-Route").flat_map(split_list).collect();
                            rr.reverse();
                            c.dialog.route_set = rr;
                            let cseq = c.invite.as_ref().map(|i| i.cseq).unwrap_or(1);
                            prack = Some(format!("{rseq} {cseq} INVITE"));
                        } else {
                            // A retransmission we already PRACKed: nothing new in it.
                            return;
                        }
                    }
                    if is_sdp(msg) {
                        if let (Some(offer), Ok(ans)) = (&c.our_offer, Sdp::parse(msg.body())) {
                            if let Ok(n) = sdp::accept_answer(offer, &ans) {
                                c.negotiated = Some(n.clone());
                                early = Some(n);
                            }
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
            200..=299 => {
                let cancelling =
                    self.calls.get(&id).map(|c| c.state) == Some(CallState::Cancelling);
                let mut media_result = None;
                if let Some(c) = self.calls.get_mut(&id) {
                    c.dialog.remote_tag = remote_tag;
                    if let Some(t) = contact_target(msg) {
                        c.dialog.remote_target = t;
                    }
                    // UAC: the route set is the Record-Route list reversed (§12.1.2).
                    let mut rr: Vec<String> =
                        msg.headers("Record-Route").flat_map(split_list).collect();
                    rr.reverse();
                    c.dialog.route_set = rr;
                    c.dialog.remote_cseq = None;
                    media_result = Some(match (&c.our_offer, is_sdp(msg)) {
                        (Some(offer), true) => Sdp::parse(msg.body())
                            .map_err(|e| e.to_string())
                            .and_then(|a| sdp::accept_answer(offer, &a).map_err(|e| e.to_string())),
                        (Some(_), false) => match &c.negotiated {
                            // The answer came in a reliable 18x earlier.
                            Some(n) => Ok(n.clone()),
                            None => Err("the 2xx carries no SDP answer".to_owned()),
                        },
                        (None, _) => Err("no offer".to_owned()),
                    });
                    c.our_offer = None;
                }
                let cseq = self
                    .calls
                    .get(&id)
                    .and_then(|c| c.invite.as_ref().map(|i| i.cseq))
                    .unwrap_or(1);
                self.send_ack(id, cseq, now);
                match media_result {
                    _ if cancelling => {
                        // The answer crossed our CANCEL: take the call and end it (§9.1).
                        self.send_bye(id, now);
                        self.end_call(id, EndReason::Local);
                    }
                    Some(Ok(n)) => {
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.state = CallState::Confirmed;
                            c.negotiated = Some(n.clone());
                            // RFC 4028 §7.2: the 2xx says who refreshes; we are the UAC.
                            if let Some((se, refresher)) = parse_session_expires(msg) {
                                let we = refresher.as_deref() != Some("uas");
                                c.timer = Some(SessionTimer::new(se, we, now));
                            }
                        }
                        self.events
                            .push_back(UaEvent::Established { call: id, media: n });
                    }
                    Some(Err(why)) => {
                        self.send_bye(id, now);
                        self.end_call(id, EndReason::MediaFailed(why));
                    }
                    None => {}
                }
            }
            422 => {
                // RFC 4028 §7.4: ask again with at least the Min-SE the peer wants.
                let min = msg
                    .header("Min-SE")
                    .and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok());
                let retry = match (self.calls.get_mut(&id), min) {
                    (Some(c), Some(m)) if !c.retried_422 && c.state == CallState::Calling => {
                        c.retried_422 = true;
                        c.se_requested = c.se_requested.max(m);
                        true
                    }
                    _ => false,
                };
                if retry {
                    self.send_initial_invite(id, now);
                } else {
                    self.end_call(
                        id,
                        EndReason::Rejected {
                            status,
                            reason: msg.reason().unwrap_or("").to_owned(),
                        },
                    );
                }
            }
            401 | 407 => {
                let header = if status == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let challenge = msg.headers(header).find_map(|h| Challenge::parse(h).ok());
                let foreign = challenge
                    .as_ref()
                    .filter(|ch| !self.realm_is_trusted(&ch.realm));
                if let Some(ch) = foreign {
                    tracing::warn!(
                        realm = %ch.realm,
                        "a challenge for a realm that is not our account's was not answered"
                    );
                }
                let can_retry = self.cfg.credentials.is_some()
                    && foreign.is_none()
                    && self
                        .calls
                        .get(&id)
                        .is_some_and(|c| c.state == CallState::Calling)
                    && match (
                        &challenge,
                        self.calls.get(&id).and_then(|c| c.auth.as_ref()),
                    ) {
                        (Some(_), None) => true,
                        (Some(ch), Some(_)) => ch.stale,
                        _ => false,
                    };
                if can_retry {
                    if let (Some(c), Some(ch)) = (self.calls.get_mut(&id), challenge) {
                        c.auth = Some((ch, 0, status == 407));
                    }
                    self.send_initial_invite(id, now);
                } else {
                    self.end_call(
                        id,
                        EndReason::Rejected {
                            status,
                            reason: msg.reason().unwrap_or("").to_owned(),
                        },
                    );
                }
            }
            _ => {
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
        }
    }

    pub(super) fn send_initial_invite(&mut self, id: CallId, now: Instant) {
        let cfg = self.cfg.clone();
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
        for h in &inv.extra_headers {
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
        let data = match m.build() {
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
                invite_parts: Some(parts),
            },
        );
        self.drain_client(&branch, None, now);
    }

    /// CANCEL for our pending initial INVITE (§9.1): same Request-URI, Call-ID, From, To,
    /// CSeq number and top Via as the INVITE.
    pub(super) fn cancel(&mut self, id: CallId, now: Instant) {
        let cfg = self.cfg.clone();
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
                invite_parts: None,
            },
        );
        self.drain_client(&key, None, now);
    }

    pub(super) fn send_ack(&mut self, id: CallId, cseq: u32, _now: Instant) {
        let cfg = self.cfg.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let (ruri, routes, destination) = in_dialog_target(&c.dialog, &cfg, c.invite.as_ref());
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
        if status < 300 && status > 100 {
            headers.push(format!("Contact: {}", self.cfg.contact()));
            headers.push(format!("Allow: {ALLOW}"));
            headers.push("Supported: replaces, 100rel, timer".to_owned());
        }
        // RFC 4028 §9: the 2xx states the interval and who refreshes.
        let mut timer = None;
        if (200..300).contains(&status) {
            if let Some(c) = self.calls.get(&id) {
                let interval = match (c.remote_se.as_ref(), self.session_expires) {
                    (Some((n, _)), _) => Some(*n),
                    (None, Some(ours)) if c.peer_supports_timer => Some(ours),
                    _ => None,
                };
                if let Some(n) = interval {
                    let refresher = match c.remote_se.as_ref().and_then(|(_, r)| r.clone()) {
                        Some(r) if r == "uac" || r == "uas" => r,
                        _ if c.peer_supports_timer => "uac".to_owned(),
                        _ => "uas".to_owned(),
                    };
                    headers.push(format!("Session-Expires: {n};refresher={refresher}"));
                    if c.peer_supports_timer {
                        headers.push("Require: timer".to_owned());
                    }
                    timer = Some(SessionTimer::new(n, refresher == "uas", now));
                }
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
        if (200..300).contains(&status) {
            if let (Some(c), Some((bytes, to))) = (self.calls.get_mut(&id), sent.clone()) {
                c.state = CallState::Answered;
                c.timer = timer;
                c.reliable_1xx = None;
                let t1 = self.cfg.timers.t1;
                let first = if self.cfg.transport == Transport::Udp {
                    t1
                } else {
                    t1 * 64
                };
                c.retransmit_2xx = Some((bytes, to, now + first, first, now + t1 * 64));
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
