//! What we send and the transactions that carry it (RFC 3261 §8.1, §8.2.6, §17): requests in a
//! dialog, responses, ACKs for refusals, and the client side's handling of responses. Every
//! message is built through [`crate::builder::MessageBuilder`].

use super::*;

/// A request we answer: the message, its server transaction, and the call whose tag goes in
/// the To of our responses (none outside a dialog).
#[derive(Clone, Copy)]
pub(super) struct Req<'a> {
    pub(super) msg: &'a Message,
    pub(super) key: &'a (String, String),
    pub(super) call: Option<CallId>,
}

impl<'a> Req<'a> {
    pub(super) fn new(msg: &'a Message, key: &'a (String, String)) -> Self {
        Self {
            msg,
            key,
            call: None,
        }
    }

    pub(super) fn in_call(self, call: CallId) -> Self {
        Self {
            call: Some(call),
            ..self
        }
    }
}

/// Why we refuse a request: a status, a reason phrase of our own when the standard one says
/// too little ("Bad Contact"), and at most one header that tells the peer what would do.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) reason: Option<&'static str>,
    pub(super) header: Option<String>,
}

impl Refusal {
    pub(super) fn new(status: u16) -> Self {
        Self {
            status,
            reason: None,
            header: None,
        }
    }

    pub(super) fn because(status: u16, reason: &'static str) -> Self {
        Self {
            reason: Some(reason),
            ..Self::new(status)
        }
    }

    pub(super) fn with(self, header: impl Into<String>) -> Self {
        Self {
            header: Some(header.into()),
            ..self
        }
    }
}

impl UserAgent {
    /// Answers `req` with `status`, its standard reason phrase and `extra` headers.
    pub(super) fn respond(&mut self, req: Req<'_>, status: u16, extra: &[&str], now: Instant) {
        let reason = reason_phrase(status);
        self.reply(req.key, req.msg, status, reason, req.call, extra, None, now);
    }

    /// When our 2xx to an INVITE is sent again until its ACK (§13.3.1.4): from T1 doubling
    /// over UDP, once at 64*T1 on a reliable transport; given up at 64*T1.
    pub(super) fn retransmit_2xx_plan(
        &self,
        bytes: Bytes,
        to: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> (Bytes, SocketAddr, Instant, Duration, Instant) {
        let t1 = self.cfg.timers.t1;
        let first = if transport == Transport::Udp {
            t1
        } else {
            t1 * 64
        };
        (bytes, to, now + first, first, now + t1 * 64)
    }

    /// Answers `req` with a refusal.
    pub(super) fn refuse(&mut self, req: Req<'_>, r: Refusal, now: Instant) {
        let reason = r.reason.unwrap_or_else(|| reason_phrase(r.status));
        let extra: Vec<&str> = r.header.as_deref().into_iter().collect();
        self.reply(
            req.key, req.msg, r.status, reason, req.call, &extra, None, now,
        );
    }

    pub(super) fn handle_response(&mut self, msg: &Message, now: Instant) {
        let Some(status) = msg.status() else { return };
        let Some(branch) = msg.top_via_branch().map(str::to_owned) else {
            return;
        };
        let Some((_, cseq_method)) = msg.cseq() else {
            return;
        };
        let key = if cseq_method == "CANCEL" {
            format!("{branch}#CANCEL")
        } else {
            branch
        };
        let branch = key;
        let Some(tx) = self.client.get_mut(&branch) else {
            // A 2xx retransmission after our INVITE transaction ended: ACK again (§13.2.2.4).
            if (200..300).contains(&status) && cseq_method == "INVITE" {
                self.reack(msg, now);
            }
            return;
        };
        if tx.method != cseq_method {
            return;
        }
        match &mut tx.kind {
            ClientTxKind::NonInvite(n) => n.on_response(status, now),
            ClientTxKind::Invite(i) => {
                let ack = if status >= 300 {
                    // The To comes from the peer's response; a To we could not write back
                    // leaves the response unacknowledged (its retransmissions stop at timer D).
                    tx.invite_parts.as_ref().and_then(|p| {
                        non_2xx_ack(p, msg)
                            .map_err(|e| tracing::warn!(error = %e, "ACK of a refusal not sent"))
                            .ok()
                    })
                } else {
                    None
                };
                i.on_response(status, ack, now)
            }
        }
        self.drain_client(&branch, Some(msg), now);
    }

    pub(super) fn reack(&mut self, msg: &Message, now: Instant) {
        let Some(id) = self.find_dialog(msg) else {
            self.end_stray_fork(msg, now);
            return;
        };
        let Some((cseq, _)) = msg.cseq() else { return };
        let Some(c) = self.calls.get(&id) else { return };
        if let Some((n, ack, to)) = c.last_ack.clone() {
            if n == cseq {
                let transport = c.transport;
                self.transmits.push_back(Transmit {
                    to,
                    data: ack,
                    transport,
                });
            }
        }
    }

    /// RFC 3261 §13.2.2.4: a 2xx to our INVITE from another fork than the one whose 2xx made
    /// the call (a forking proxy let two answer). It is ACKed, and its dialog ended with BYE
    /// once; a retransmission of it is ACKed again. The application hears nothing of it.
    fn end_stray_fork(&mut self, msg: &Message, now: Instant) {
        let (Some(call_id), Some((cseq, _))) = (msg.call_id(), msg.cseq()) else {
            return;
        };
        let local = msg.header("From").and_then(|f| header_param(f, "tag"));
        let Some(tag) = msg.header("To").and_then(|t| header_param(t, "tag")) else {
            return;
        };
        let Some(id) = self
            .calls
            .values()
            .find(|c| {
                c.dialog.call_id == call_id
                    && Some(c.dialog.local_tag.as_str()) == local
                    && c.invite.as_ref().is_some_and(|i| i.cseq == cseq)
                    && c.dialog.remote_tag.as_deref() != Some(tag)
            })
            .map(|c| c.id)
        else {
            return;
        };
        let cfg = self.over_call(id);
        let face = self.face_headers(id);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let first = !c.stray_forks.iter().any(|t| t == tag);
        if first && c.stray_forks.len() >= MAX_FORKS {
            return;
        }
        let mut d = c.dialog.clone();
        d.remote_tag = Some(tag.to_owned());
        d.remote_target = contact_target(msg).unwrap_or(d.remote_target);
        d.route_set = uac_route_set(msg);
        let (ruri, routes, destination) = dialog_target(&d, c.flow, &cfg);
        let build = |method: &str, cseq: u32, branch: &str| {
            let mut m = MessageBuilder::request(method, &ruri);
            dialog_headers(&mut m, &d, &cfg, branch, cseq, method);
            m.headers("Route", &routes);
            for h in &face {
                m.header_line(h);
            }
            m.build()
        };
        match build("ACK", cseq, &new_branch()) {
            Ok(data) => self.transmits.push_back(Transmit {
                to: destination.clone(),
                data,
                transport: cfg.transport,
            }),
            Err(e) => tracing::warn!(call = id, error = %e, "ACK of another fork's 2xx not sent"),
        }
        if !first {
            return;
        }
        c.stray_forks.push(tag.to_owned());
        tracing::info!(
            call = id,
            "a second fork answered our INVITE; its dialog is ended"
        );
        let branch = new_branch();
        let data = match build("BYE", cseq + 1, &branch) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(call = id, error = %e, "BYE to another fork not sent");
                return;
            }
        };
        let tx = ClientTx {
            kind: Self::client_kind("BYE", data, &cfg, now),
            call: None,
            method: "BYE".to_owned(),
            destination,
            transport: cfg.transport,
            invite_parts: None,
        };
        self.start_client(branch, tx, now);
    }

    pub(super) fn drain_client(&mut self, branch: &str, msg: Option<&Message>, now: Instant) {
        let mut outputs = Vec::new();
        let mut terminated = false;
        let Some(tx) = self.client.get_mut(branch) else {
            return;
        };
        loop {
            let o = match &mut tx.kind {
                ClientTxKind::Invite(i) => i.poll_output(),
                ClientTxKind::NonInvite(n) => n.poll_output(),
            };
            match o {
                Some(transaction::Output::Transmit(data)) => self.transmits.push_back(Transmit {
                    to: tx.destination.clone(),
                    data,
                    transport: tx.transport,
                }),
                Some(transaction::Output::Event(transaction::Event::Terminated)) => {
                    terminated = true
                }
                Some(transaction::Output::Event(e)) => outputs.push(e),
                None => break,
            }
        }
        let call = tx.call;
        let method = tx.method.clone();
        if terminated {
            self.client.remove(branch);
        }
        if call.is_none() && method == "OPTIONS" {
            let answered = outputs.iter().find_map(|e| match e {
                transaction::Event::Response(s) if *s >= 200 => Some(Some(*s)),
                transaction::Event::Timeout | transaction::Event::TransportError => Some(None),
                _ => None,
            });
            if let Some(status) = answered {
                if let Some(target) = self.pings.remove(branch) {
                    self.events
                        .push_back(UaEvent::OptionsAnswered { target, status });
                }
            }
        }
        for e in outputs {
            match e {
                transaction::Event::Response(status) => {
                    if let (Some(m), Some(id)) = (msg, call) {
                        self.on_call_response(id, &method, status, m, now);
                    }
                }
                transaction::Event::Timeout | transaction::Event::TransportError => {
                    let reason = if e == transaction::Event::Timeout {
                        EndReason::Timeout
                    } else {
                        EndReason::TransportError
                    };
                    if let Some(id) = call {
                        match method.as_str() {
                            "INVITE" => {
                                let initial = self.calls.get(&id).is_some_and(|c| {
                                    matches!(c.state, CallState::Calling | CallState::Cancelling)
                                });
                                if initial && self.fail_over(id, None) {
                                    self.send_initial_invite(id, now);
                                } else if initial {
                                    self.end_call(id, reason);
                                } else if let Some(c) = self.calls.get_mut(&id) {
                                    c.reinvite = None;
                                    self.events.push_back(UaEvent::MediaChangeFailed {
                                        call: id,
                                        status: 408,
                                    });
                                }
                            }
                            // §12.2.1.2: a 408 or timeout on an in-dialog request ends the dialog.
                            "BYE" => {}
                            "REFER" => self.events.push_back(UaEvent::TransferProgress {
                                call: id,
                                status: 408,
                                final_: true,
                            }),
                            _ => {
                                if self.calls.contains_key(&id) {
                                    self.send_bye(id, now);
                                    self.end_call(id, reason);
                                }
                            }
                        }
                    }
                }
                transaction::Event::Terminated => {}
            }
        }
    }

    pub(super) fn on_call_response(
        &mut self,
        id: CallId,
        method: &str,
        status: u16,
        msg: &Message,
        now: Instant,
    ) {
        let Some(state) = self.calls.get(&id).map(|c| c.state) else {
            return;
        };
        // A retransmitted 2xx to an INVITE we already ACKed: ACK again, nothing else (§13.2.2.4).
        if method == "INVITE" && (200..300).contains(&status) {
            let cseq = msg.cseq().map(|(n, _)| n);
            let acked = self
                .calls
                .get(&id)
                .and_then(|c| c.last_ack.as_ref())
                .map(|(n, _, _)| *n);
            if cseq.is_some() && cseq == acked {
                self.reack(msg, now);
                return;
            }
        }
        match method {
            "INVITE" if matches!(state, CallState::Calling | CallState::Cancelling) => {
                self.on_invite_response(id, status, msg, now)
            }
            "INVITE" => self.on_reinvite_response(id, status, msg, now),
            "REFER" if status >= 200 => {
                self.events.push_back(UaEvent::TransferProgress {
                    call: id,
                    status,
                    final_: status >= 300,
                });
            }
            "BYE" | "INFO" | "NOTIFY" => {
                if status == 481 || status == 408 {
                    if method != "BYE" {
                        self.end_call(id, EndReason::RemoteBye);
                    }
                } else if (status == 401 || status == 407) && method == "BYE" {
                    tracing::debug!(call = id, "BYE challenged; the call is already over for us");
                }
            }
            _ => {}
        }
    }

    /// A request inside the call's dialog (§12.2.1.1).
    pub(super) fn send_in_dialog(
        &mut self,
        id: CallId,
        method: &str,
        headers: Vec<(&str, String)>,
        body: Option<(&str, Bytes)>,
        now: Instant,
    ) -> Result<(), WireError> {
        let cfg = self.over_call(id);
        let Some(c) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        c.dialog.local_cseq += 1;
        let cseq = c.dialog.local_cseq;
        let branch = new_branch();
        let (ruri, routes, destination) = in_dialog_target(c, &cfg);
        let mut m = MessageBuilder::request(method, &ruri);
        dialog_headers(&mut m, &c.dialog, &cfg, &branch, cseq, method);
        m.headers("Route", &routes);
        for (name, value) in &headers {
            m.header(name, value);
        }
        for h in c.face.iter().flat_map(|f| &f.headers) {
            m.header_line(h);
        }
        if let Some((ct, b)) = body {
            m.body(ct, b);
        }
        let data = match m.build() {
            Ok(d) => d,
            Err(e) => {
                // The CSeq number stays used: RFC 3261 only asks that it grows.
                tracing::warn!(call = id, method, error = %e, "request not sent");
                return Err(e);
            }
        };
        // A re-INVITE's non-2xx final response (491 glare, 488) is ACKed by its transaction
        // (§17.1.1.3), which needs the request's parts to build that ACK.
        let invite_parts = (method == "INVITE").then(|| {
            (
                ruri.clone(),
                format!(
                    "SIP/2.0/{} {};branch={branch};rport",
                    cfg.transport.via_name(),
                    cfg.contact_host
                ),
                format!("{};tag={}", c.dialog.local_uri, c.dialog.local_tag),
                c.dialog.call_id.clone(),
                cseq,
                routes.clone(),
            )
        });
        let tx = ClientTx {
            kind: Self::client_kind(method, data, &cfg, now),
            call: Some(id),
            method: method.to_owned(),
            destination,
            transport: cfg.transport,
            invite_parts,
        };
        self.start_client(branch, tx, now);
        Ok(())
    }

    /// The client transaction for request `data` (`method`) over `cfg`'s transport.
    fn client_kind(method: &str, data: Bytes, cfg: &UaConfig, now: Instant) -> ClientTxKind {
        let reliability = cfg.transport.reliability();
        if method == "INVITE" {
            ClientTxKind::Invite(ClientInvite::start(data, reliability, cfg.timers, now))
        } else {
            ClientTxKind::NonInvite(ClientNonInvite::start(data, reliability, cfg.timers, now))
        }
    }

    /// Starts client transaction `tx` under `branch`: its request goes out now.
    fn start_client(&mut self, branch: String, tx: ClientTx, now: Instant) {
        self.client.insert(branch.clone(), tx);
        self.drain_client(&branch, None, now);
    }

    /// BYE in the call's dialog; built from our own dialog state, so it cannot fail on a value,
    /// and a failure would be logged by [`Self::send_in_dialog`].
    pub(super) fn send_bye(&mut self, id: CallId, now: Instant) {
        let _ = self.send_in_dialog(id, "BYE", Vec::new(), None, now);
    }

    /// Sends a response through the server transaction `key`. With `call`, the To tag is the
    /// call's local tag. Returns the bytes and destination.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reply(
        &mut self,
        key: &(String, String),
        req: &Message,
        status: u16,
        reason: &str,
        call: Option<CallId>,
        extra: &[&str],
        body: Option<(&str, Bytes)>,
        now: Instant,
    ) {
        let _ = self.reply_tx(key, req, status, reason, call, extra, body, now);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn reply_tx(
        &mut self,
        key: &(String, String),
        req: &Message,
        status: u16,
        reason: &str,
        call: Option<CallId>,
        extra: &[&str],
        body: Option<(&str, Bytes)>,
        now: Instant,
    ) -> Option<(Bytes, SocketAddr)> {
        let tx = self.server.get(key)?;
        let source = tx.source;
        let tag = call
            .and_then(|id| self.calls.get(&id))
            .map(|c| c.dialog.local_tag.clone());
        let data = match build_response(
            req,
            source,
            status,
            reason,
            tag.as_deref(),
            extra,
            body,
            &self.cfg.user_agent,
        ) {
            Ok(d) => d,
            Err(e) => {
                // The parser refuses control characters, so only a value of ours can get
                // here; the transaction goes, so that nothing waits for a response forever.
                tracing::warn!(status, error = %e, "response not sent");
                self.drop_server_tx(key);
                return None;
            }
        };
        let tx = self.server.get_mut(key)?;
        match &mut tx.kind {
            ServerTxKind::Invite(i) => i.send_response(status, data.clone(), now),
            ServerTxKind::NonInvite(n) => n.send_response(status, data.clone(), now),
        }
        self.drain_server(key);
        Some((data, source))
    }

    /// A response outside any transaction (the request was too broken for one).
    pub(super) fn stateless(
        &mut self,
        req: &Message,
        source: SocketAddr,
        status: u16,
        reason: &str,
        extra: &[&str],
        body: Option<(&str, Bytes)>,
    ) {
        let data = match build_response(
            req,
            source,
            status,
            reason,
            None,
            extra,
            body,
            &self.cfg.user_agent,
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(status, error = %e, "response not sent");
                return;
            }
        };
        self.transmits.push_back(Transmit {
            to: Destination::Addr(source),
            data,
            transport: self.arrived_on,
        });
    }

    pub(super) fn drain_server(&mut self, key: &(String, String)) {
        let Some(tx) = self.server.get_mut(key) else {
            return;
        };
        let mut terminated = false;
        loop {
            let o = match &mut tx.kind {
                ServerTxKind::Invite(i) => i.poll_output(),
                ServerTxKind::NonInvite(n) => n.poll_output(),
            };
            match o {
                Some(transaction::Output::Transmit(data)) => self.transmits.push_back(Transmit {
                    to: Destination::Addr(tx.source),
                    data,
                    transport: tx.transport,
                }),
                Some(transaction::Output::Event(transaction::Event::Terminated)) => {
                    terminated = true
                }
                Some(transaction::Output::Event(transaction::Event::Timeout)) => {
                    tracing::debug!(branch = %key.0, "no ACK for our final response (timer H)");
                }
                Some(_) => {}
                None => break,
            }
        }
        if terminated {
            self.drop_server_tx(key);
        }
    }
}

/// Request-URI, Route headers and next hop for a request inside `call`'s dialog (§12.2.1.1,
/// loose routing only: strict routers are from RFC 2543 times). A dialog that came over a
/// stream goes back on that connection.
pub(super) fn in_dialog_target(call: &Call, cfg: &UaConfig) -> (String, Vec<String>, Destination) {
    dialog_target(&call.dialog, call.flow, cfg)
}

/// Request-URI, Route set and where a request inside dialog `d` goes: the connection `flow`
/// it came on, else its first route, else our outbound proxy when we called through one that
/// did not record-route (RFC 3261 §8.1.2), else its target.
pub(super) fn dialog_target(
    d: &Dialog,
    flow: Option<SocketAddr>,
    cfg: &UaConfig,
) -> (String, Vec<String>, Destination) {
    let ruri = d.remote_target.clone();
    let routes = d.route_set.clone();
    let destination = flow
        .map(Destination::Addr)
        .or_else(|| {
            routes
                .first()
                .and_then(|r| Destination::from_uri(value_uri(r)))
        })
        .or_else(|| {
            if d.route_set.is_empty() && d.we_called {
                cfg.outbound_proxy.clone()
            } else {
                None
            }
        })
        .or_else(|| Destination::from_uri(&ruri))
        .unwrap_or(Destination::Host {
            host: "invalid".into(),
            port: None,
        });
    (ruri, routes, destination)
}

pub(super) fn non_2xx_ack(
    parts: &(String, String, String, String, u32, Vec<String>),
    resp: &Message,
) -> Result<Bytes, WireError> {
    let (ruri, via, from, call_id, cseq, routes) = parts;
    let to = resp.header("To").unwrap_or("");
    let mut m = MessageBuilder::request("ACK", ruri);
    m.header("Via", via)
        .header("Max-Forwards", 70)
        .header("From", from)
        .header("To", to)
        .header("Call-ID", call_id)
        .cseq(*cseq, "ACK")
        .headers("Route", routes);
    m.build()
}

/// A response to `req` (§8.2.6): Via (the top one with `received`/`rport`, RFC 3581), From,
/// To (with `tag` when given and absent), Call-ID, CSeq, Record-Route for dialog-creating
/// 1xx/2xx (§12.1.1).
#[allow(clippy::too_many_arguments)]
pub fn build_response(
    req: &Message,
    source: SocketAddr,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[&str],
    body: Option<(&str, Bytes)>,
    server: &str,
) -> Result<Bytes, WireError> {
    let mut m = MessageBuilder::response(status, reason);
    let mut first = true;
    for v in req.headers("Via") {
        for (i, via) in split_list(v).into_iter().enumerate() {
            if first && i == 0 {
                first = false;
                m.header("Via", crate::message::via_with_source(&via, source));
            } else {
                m.header("Via", via);
            }
        }
    }
    m.header_opt("From", req.header("From"));
    if let Some(t) = req.header("To") {
        match (header_param(t, "tag"), to_tag) {
            (None, Some(tag)) if status != 100 => m.header("To", format_args!("{t};tag={tag}")),
            _ => m.header("To", t),
        };
    }
    m.header_opt("Call-ID", req.header("Call-ID"))
        .header_opt("CSeq", req.header("CSeq"));
    if (101..300).contains(&status) {
        m.headers("Record-Route", req.headers("Record-Route"));
    }
    for e in extra {
        m.header_line(e);
    }
    m.header("Server", server);
    if let Some((ct, b)) = body {
        m.body(ct, b);
    }
    m.build()
}

/// Via, Max-Forwards, From, To, Call-ID, CSeq and User-Agent of a request inside `d`
/// (§12.2.1.1).
pub(super) fn dialog_headers(
    m: &mut MessageBuilder,
    d: &Dialog,
    cfg: &UaConfig,
    branch: &str,
    cseq: u32,
    method: &str,
) {
    m.via(cfg.transport.via_name(), &cfg.contact_host, branch)
        .header("Max-Forwards", 70)
        .header("From", format_args!("{};tag={}", d.local_uri, d.local_tag))
        .header(
            "To",
            format_args!(
                "{}{}",
                d.remote_uri,
                d.remote_tag
                    .as_deref()
                    .map(|t| format!(";tag={t}"))
                    .unwrap_or_default()
            ),
        )
        .header("Call-ID", &d.call_id)
        .cseq(cseq, method)
        .header("User-Agent", &cfg.user_agent);
}
