//! The blocking UDP loop of a standalone registrar: an adapter around the sans-IO
//! [`Registrar`] (socket reads and writes, the wall clock that dates nonces, and the absorbing
//! of retransmitted requests for timer J), kept out of the protocol module. Used by the
//! `registrar` example and the load tests.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::message::Message;
use crate::registrar::{response, Registrar};

/// Serves REGISTER (and OPTIONS) on a blocking UDP socket until `stop` is set: the loop of a
/// standalone registrar (the `registrar` example, load tests). Bytes that are not SIP are
/// dropped; other methods get 405. Set a read timeout on the socket so `stop` is seen.
pub fn serve_udp(
    socket: &std::net::UdpSocket,
    registrar: &mut Registrar,
    password_of: impl Fn(&str) -> Option<String>,
    stop: &std::sync::atomic::AtomicBool,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; crate::message::MAX_MESSAGE_BYTES];
    let (mut dropped, mut handled) = (0u64, 0u64);
    let mut last_purge = Instant::now();
    let mut answered = Answered::default();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let msg = match Message::parse(&buf[..n]) {
            Ok(m) => m,
            Err(e) => {
                dropped += 1;
                if dropped.is_power_of_two() {
                    tracing::info!(dropped, from = %from, error = %e, "refused malformed messages");
                }
                if let Some(reply) = crate::message::error_response(&buf[..n], &e, from) {
                    let _ = socket.send_to(&reply, from);
                }
                continue;
            }
        };
        if !msg.is_request() {
            continue;
        }
        let now = Instant::now();
        // A retransmission (the client missed our answer) gets the same answer again: replaying
        // it to the registrar would fail (its nonce count was used) — §17.2.2.
        let key = msg
            .top_via_branch()
            .filter(|b| b.starts_with("z9hG4bK"))
            .map(|b| (b.to_owned(), from));
        if let Some(reply) = key.as_ref().and_then(|k| answered.get(k, now)) {
            let _ = socket.send_to(&reply, from);
            continue;
        }
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let reply = match msg.method().as_deref() {
            Some("REGISTER") => registrar.handle_register(&msg, now, unix, &password_of),
            Some("OPTIONS") => response(&msg, 200, "OK", &["Allow: REGISTER, OPTIONS"]),
            Some("ACK") => continue,
            _ => response(
                &msg,
                405,
                "Method Not Allowed",
                &["Allow: REGISTER, OPTIONS"],
            ),
        };
        let Some(reply) = reply else { continue };
        let _ = socket.send_to(&reply, from);
        if let Some(k) = key {
            answered.insert(k, reply, now);
        }
        handled += 1;
        if now.duration_since(last_purge).as_secs() >= 5 {
            registrar.purge(now);
            last_purge = now;
        }
    }
    Ok(handled)
}

/// What the completed non-INVITE server transactions of [`serve_udp`] answered, kept for
/// timer J (64·T1 = 32 s) so retransmitted requests are absorbed; bounded in size.
#[derive(Default)]
pub struct Answered {
    by_key: HashMap<(String, std::net::SocketAddr), (Bytes, Instant)>,
    order: std::collections::VecDeque<((String, std::net::SocketAddr), Instant)>,
}

impl Answered {
    const LIFETIME: Duration = Duration::from_secs(32);
    /// About 450 bytes an entry: at most ~60 MB, 32 s of 4 000 REGISTER/s. Past that the
    /// oldest go first, and a very late retransmission is re-challenged (see Replay above).
    const MAX: usize = 1 << 17;

    /// The answer given to this request (top Via branch, source), while it is kept.
    pub fn get(&self, key: &(String, std::net::SocketAddr), now: Instant) -> Option<Bytes> {
        self.by_key
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(reply, _)| reply.clone())
    }

    /// Keeps the answer to a request for 32 s (the oldest go first past the bound).
    pub fn insert(&mut self, key: (String, std::net::SocketAddr), reply: Bytes, now: Instant) {
        while let Some((k, until)) = self.order.front() {
            if *until > now && self.order.len() < Self::MAX {
                break;
            }
            if self.by_key.get(k).is_some_and(|(_, u)| u == until) {
                self.by_key.remove(k);
            }
            self.order.pop_front();
        }
        let until = now + Self::LIFETIME;
        self.order.push_back((key.clone(), until));
        self.by_key.insert(key, (reply, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::tests::{client, registrar, users};

    #[test]
    fn serve_udp_absorbs_retransmitted_requests() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let server = std::thread::spawn(move || {
            let mut r = registrar();
            serve_udp(&socket, &mut r, users, &s2).unwrap()
        });
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut c = client(
            "alice",
            "wonderland",
            600,
            peer.local_addr().unwrap().port(),
        );
        c.start(Instant::now());
        let mut buf = [0u8; 4096];
        let mut answers = Vec::new();
        // The challenge, then the authorised REGISTER sent three times (two retransmissions):
        // the same 200 each time, not a 403 for a reused nonce count.
        let first = c.poll_transmit().unwrap();
        peer.send_to(&first, addr).unwrap();
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        c.handle_message(&Message::parse(&buf[..n]).unwrap(), Instant::now());
        let authorised = c.poll_transmit().unwrap();
        for _ in 0..3 {
            peer.send_to(&authorised, addr).unwrap();
            let (n, _) = peer.recv_from(&mut buf).unwrap();
            answers.push(buf[..n].to_vec());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            server.join().unwrap(),
            2,
            "two requests reached the registrar"
        );
        let first = Message::parse(&answers[0]).unwrap();
        assert_eq!(first.status(), Some(200));
        assert!(answers.iter().all(|a| *a == answers[0]));
    }

    #[test]
    fn answered_responses_expire_and_stay_bounded() {
        let mut a = Answered::default();
        let t0 = Instant::now();
        let from: std::net::SocketAddr = "127.0.0.1:5060".parse().unwrap();
        a.insert(("z9hG4bK1".into(), from), Bytes::from_static(b"x"), t0);
        assert!(a.get(&("z9hG4bK1".into(), from), t0).is_some());
        assert!(a
            .get(&("z9hG4bK1".into(), from), t0 + Duration::from_secs(33))
            .is_none());
        for i in 0..Answered::MAX + 10 {
            a.insert((format!("z9hG4bK{i}"), from), Bytes::new(), t0);
        }
        assert!(a.by_key.len() <= Answered::MAX && a.order.len() <= Answered::MAX);
    }
}
