//! Incoming requests before any dialog (RFC 3261 §8.2, §17.2): server transactions and their
//! keys (RFC 2543 peers included), the checks that give 400/416/420/501, flood bounds, and
//! requests outside dialogs (OPTIONS, our own OPTIONS probes).

use super::*;

impl UserAgent {
    pub(super) fn handle_request(&mut self, msg: &Message, source: SocketAddr, now: Instant) {
        let Some(method) = msg.method() else { return };
        let Some((cseq, cseq_method)) = msg.cseq() else {
            self.stateless(msg, source, 400, "Bad CSeq", &[], None);
            return;
        };
        if let Err(r) = screen(msg, &method, &cseq_method) {
            let extra: Vec<&str> = r.header.as_deref().into_iter().collect();
            let reason = r.reason.unwrap_or_else(|| reason_phrase(r.status));
            self.stateless(msg, source, r.status, reason, &extra, None);
            return;
        }
        let branch = transaction_branch(msg, cseq);
        if method == "ACK" {
            self.handle_ack_request(msg, branch, now);
            return;
        }
        // A retransmission of a request we are already handling.
        let key = (branch, method.clone());
        if let Some(t) = self.server.get_mut(&key) {
            match &mut t.kind {
                ServerTxKind::Invite(i) => i.on_request(),
                ServerTxKind::NonInvite(n) => n.on_request(),
            }
            self.drain_server(&key);
            return;
        }
        if !self.admit(msg, source) {
            return;
        }
        // Max-Forwards 0 is for proxies to refuse (483); an endpoint answers the request as
        // usual (RFC 4475 §3.3.11).
        let kind = if method == "INVITE" {
            ServerTxKind::Invite(ServerInvite::new(
                self.arrived_on.reliability(),
                self.cfg.timers,
            ))
        } else {
            ServerTxKind::NonInvite(ServerNonInvite::new(
                self.arrived_on.reliability(),
                self.cfg.timers,
            ))
        };
        let transport = self.arrived_on;
        if self
            .server
            .insert(
                key.clone(),
                ServerTx {
                    kind,
                    source,
                    transport,
                },
            )
            .is_none()
        {
            *self.from_source.entry(source.ip()).or_default() += 1;
        }

        if method == "CANCEL" {
            self.handle_cancel(msg, &key, now);
            return;
        }
        // Extensions we do not support must be refused (§8.2.2.3).
        let unsupported: Vec<String> = msg
            .headers("Require")
            .flat_map(split_list)
            .filter(|o| {
                !["replaces", "100rel", "timer"]
                    .iter()
                    .any(|k| o.eq_ignore_ascii_case(k))
            })
            .collect();
        let req = Req::new(msg, &key);
        if !unsupported.is_empty() {
            let h = format!("Unsupported: {}", unsupported.join(", "));
            self.respond(req, 420, &[&h], now);
            return;
        }
        if msg
            .header("To")
            .and_then(|t| header_param(t, "tag"))
            .is_some()
        {
            self.handle_in_dialog(msg, &method, cseq, &key, now);
            return;
        }
        let allow = format!("Allow: {ALLOW}");
        match method.as_str() {
            "INVITE" => self.handle_new_invite(msg, source, &key, now),
            "OPTIONS" => self.respond(
                req,
                200,
                &[&allow, "Accept: application/sdp", "Supported: replaces"],
                now,
            ),
            "BYE" | "INFO" | "REFER" | "NOTIFY" | "UPDATE" | "PRACK" => {
                self.respond(req, 481, &[], now)
            }
            "REGISTER" | "SUBSCRIBE" | "MESSAGE" | "PUBLISH" => {
                self.respond(req, 405, &[&allow], now)
            }
            _ => self.respond(req, 501, &[&allow], now),
        }
    }

    /// ACK: for a non-2xx it belongs to the INVITE server transaction; for a 2xx, to the
    /// dialog (§17.2.1, §13.3.1.4).
    fn handle_ack_request(&mut self, msg: &Message, branch: String, now: Instant) {
        let key = (branch, "INVITE".to_owned());
        if let Some(t) = self.server.get_mut(&key) {
            if let ServerTxKind::Invite(i) = &mut t.kind {
                if i.state() == transaction::State::Completed {
                    i.on_ack(now);
                    self.drain_server(&key);
                    return;
                }
            }
        }
        self.handle_ack(msg, now);
    }

    /// Whether `msg` is a request a server transaction of ours already handles (a
    /// retransmission, §17.2.3): an edge shedding new requests under load must let it through,
    /// or a call being set up would get a second, contradicting final answer.
    pub fn is_retransmission(&self, msg: &Message) -> bool {
        let (Some(method), Some((cseq, _))) = (msg.method(), msg.cseq()) else {
            return false;
        };
        if method == "ACK" {
            return false;
        }
        self.server
            .contains_key(&(transaction_branch(msg, cseq), method))
    }

    /// Bounded memory under a flood: a global cap on server transactions, and a per-source
    /// share of it so one sender cannot starve the others. Past either, 503 without state.
    fn admit(&mut self, msg: &Message, source: SocketAddr) -> bool {
        let from_source = self.from_source.get(&source.ip()).copied().unwrap_or(0);
        if self.server.len() < self.limits.server_transactions
            && from_source < self.limits.per_source
        {
            return true;
        }
        self.refused_overload += 1;
        if self.refused_overload.is_power_of_two() {
            tracing::warn!(
                refused = self.refused_overload,
                "too many transactions; refusing with 503"
            );
        }
        self.stateless(
            msg,
            source,
            503,
            "Service Unavailable",
            &["Retry-After: 5"],
            None,
        );
        false
    }

    /// Sends an out-of-dialog OPTIONS (a keep-alive or reachability probe).
    pub fn options(&mut self, target: &str, now: Instant) -> Result<(), UaError> {
        self.options_as(target, target, None, now)
    }

    /// [`Self::options`] sent as `face` says (Contact and Via host, extra lines: a Direct
    /// Routing SBC's keep-alive names its FQDN and carries `X-MS-SBC`); its answer arrives as
    /// [`UaEvent::OptionsAnswered`] with `key` for target, so one target probed for several
    /// tenants tells them apart.
    pub fn options_as(
        &mut self,
        target: &str,
        key: &str,
        face: Option<&Face>,
        now: Instant,
    ) -> Result<(), UaError> {
        if let Some(f) = face {
            check_face(f)?;
        }
        let uri = value_uri(target).to_owned();
        let destination = match &self.cfg.outbound_proxy {
            Some(p) => p.clone(),
            None => Destination::from_uri(&uri).ok_or_else(|| UaError::BadUri(target.into()))?,
        };
        let branch = new_branch();
        let mut cfg = self.over(self.transport_for(target));
        if let Some(f) = face {
            cfg.contact_host = f.contact_host.clone();
        }
        let mut m = MessageBuilder::request("OPTIONS", &uri);
        m.via(cfg.transport.via_name(), &cfg.contact_host, &branch)
            .header("Max-Forwards", 70)
            .header(
                "From",
                format_args!("<{}>;tag={}", cfg.aor(), random_token(8)),
            )
            .header("To", format_args!("<{uri}>"))
            .header("Call-ID", format_args!("{}@switchboard", random_token(16)))
            .cseq(1, "OPTIONS")
            .header("Accept", "application/sdp")
            .header("User-Agent", &self.cfg.user_agent);
        if let Some(f) = face {
            // Microsoft's proxies read the SBC's FQDN from the Contact of its OPTIONS.
            m.header("Contact", cfg.contact());
            for h in &f.headers {
                m.header_line(h);
            }
        }
        let req = m.build()?;
        let tx = ClientNonInvite::start(req, cfg.transport.reliability(), cfg.timers, now);
        self.pings.insert(branch.clone(), key.to_owned());
        self.client.insert(
            branch.clone(),
            ClientTx {
                kind: ClientTxKind::NonInvite(tx),
                call: None,
                method: "OPTIONS".into(),
                destination,
                transport: cfg.transport,
                invite_parts: None,
            },
        );
        self.drain_client(&branch, None, now);
        Ok(())
    }
}

/// The checks made before any transaction: an unknown method is 501 whatever its CSeq says
/// (RFC 4475 §3.1.2.18), a CSeq naming another method 400, a scheme other than sip:, sips:
/// and tel: 416 (§8.2.2.1; RFC 4475 §3.3.2, §3.3.3).
fn screen(msg: &Message, method: &str, cseq_method: &str) -> Result<(), Refusal> {
    if !KNOWN_METHODS.contains(&method) && method != "ACK" {
        return Err(Refusal::new(501).with(format!("Allow: {ALLOW}")));
    }
    if cseq_method != method {
        return Err(Refusal::because(400, "CSeq method does not match"));
    }
    let scheme = msg
        .request_uri()
        .and_then(|u| u.split_once(':').map(|(s, _)| s.to_ascii_lowercase()))
        .unwrap_or_default();
    if !["sip", "sips", "tel"].contains(&scheme.as_str()) && method != "ACK" {
        return Err(Refusal::new(416));
    }
    Ok(())
}

/// The server transaction's key (§17.2.3). An RFC 2543 peer sends no magic-cookie branch:
/// its transaction is identified by the request's own fields (RFC 4475 §3.4.1), the same for
/// its ACK.
fn transaction_branch(msg: &Message, cseq: u32) -> String {
    match msg.top_via_branch() {
        Some(b) if b.starts_with("z9hG4bK") => b.to_owned(),
        b => format!(
            "rfc2543|{}|{}|{}|{}|{}",
            msg.call_id().unwrap_or(""),
            cseq,
            msg.header("From")
                .and_then(|f| header_param(f, "tag"))
                .unwrap_or(""),
            msg.header("Via")
                .and_then(|v| split_list(v).into_iter().next())
                .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
                .unwrap_or_default(),
            b.unwrap_or("")
        ),
    }
}
