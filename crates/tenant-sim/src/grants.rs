//! The grants behind the token endpoint as a sans-IO store (time is a parameter):
//! authorization codes (single use, 10 minutes, PKCE), refresh tokens (a new one with every
//! use; as at Entra ID, the one presented stays valid until it expires or the user's sessions
//! are revoked — Entra does not revoke a token family on reuse, so neither do we: the
//! simulator must never be stricter or kinder than the service) and device codes (RFC 8628
//! with `authorization_pending`, `slow_down` and `expired_token`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::errors::AadError;

/// Lifetime of an authorization code.
pub const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Lifetime of a refresh token (Entra ID's default is 90 days of inactivity).
pub const REFRESH_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// Lifetime of a device code.
pub const DEVICE_CODE_LIFETIME: Duration = Duration::from_secs(900);

/// A random opaque token.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// What a user granted a client: who, which scopes (resource-qualified), and the OIDC extras.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// Client id.
    pub client_id: String,
    /// User object id.
    pub oid: String,
    /// Requested scopes as sent (space separated in the request).
    pub scopes: Vec<String>,
    /// id_token nonce.
    pub nonce: Option<String>,
}

#[derive(Debug, Clone)]
struct CodeRecord {
    grant: Grant,
    redirect_uri: String,
    challenge: Option<(String, String)>,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct RefreshRecord {
    grant: Grant,
    expires: Instant,
}

/// State of a device code.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceState {
    /// Waiting for the user.
    Pending,
    /// The user signed in (object id).
    Approved(String),
    /// The user declined.
    Declined,
}

#[derive(Debug, Clone)]
struct DeviceRecord {
    client_id: String,
    scopes: Vec<String>,
    user_code: String,
    state: DeviceState,
    expires: Instant,
    interval: Duration,
    last_poll: Option<Instant>,
}

/// A new device authorization (`/devicecode` answer).
#[derive(Debug, Clone)]
pub struct DeviceStart {
    /// For the client's polling.
    pub device_code: String,
    /// For the person to type.
    pub user_code: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Polling interval in seconds.
    pub interval: u64,
}

/// All grants.
#[derive(Debug, Default)]
pub struct GrantStore {
    codes: HashMap<String, CodeRecord>,
    refresh: HashMap<String, RefreshRecord>,
    devices: HashMap<String, DeviceRecord>,
    /// Per user: when their sessions were revoked (Unix seconds); access tokens issued
    /// before are answered with a claims challenge.
    revoked_at: HashMap<String, i64>,
}

/// PKCE check (RFC 7636 §4.6).
pub fn pkce_matches(method: &str, challenge: &str, verifier: &str) -> bool {
    match method {
        "S256" => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge,
        "plain" => verifier == challenge,
        _ => false,
    }
}

impl GrantStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Issues an authorization code after the user signed in.
    pub fn issue_code(
        &mut self,
        grant: Grant,
        redirect_uri: &str,
        challenge: Option<(String, String)>,
        now: Instant,
    ) -> String {
        self.codes.retain(|_, c| c.expires > now);
        let code = random_token(48);
        self.codes.insert(
            code.clone(),
            CodeRecord {
                grant,
                redirect_uri: redirect_uri.to_string(),
                challenge,
                expires: now + CODE_LIFETIME,
            },
        );
        code
    }

    /// Redeems a code (single use): checks client, redirect URI and PKCE.
    pub fn redeem_code(
        &mut self,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        now: Instant,
    ) -> Result<Grant, AadError> {
        let rec = self.codes.remove(code).ok_or_else(|| {
            AadError::new("invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.")
        })?;
        if rec.expires <= now {
            return Err(AadError::new("invalid_grant", 70008, "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource."));
        }
        if rec.grant.client_id != client_id {
            return Err(AadError::new("invalid_grant", 70000, "The provided value for the 'code' parameter is not valid. The code was issued to a different client."));
        }
        if redirect_uri != Some(rec.redirect_uri.as_str()) {
            return Err(AadError::new("invalid_grant", 50011, "The redirect URI specified in the request does not match the redirect URI used to obtain the authorization code."));
        }
        if let Some((challenge, method)) = &rec.challenge {
            match verifier {
                None => return Err(AadError::new("invalid_grant", 50148, "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.")),
                Some(v) if !pkce_matches(method, challenge, v) => {
                    return Err(AadError::new("invalid_grant", 501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request."))
                }
                Some(_) => {}
            }
        }
        Ok(rec.grant)
    }

    /// Issues a refresh token.
    pub fn issue_refresh(&mut self, grant: Grant, now: Instant) -> String {
        self.refresh.retain(|_, r| r.expires > now);
        let token = format!("0.{}", random_token(96));
        self.refresh.insert(
            token.clone(),
            RefreshRecord {
                grant,
                expires: now + REFRESH_LIFETIME,
            },
        );
        token
    }

    /// Redeems a refresh token: returns the grant and a new refresh token. The one presented
    /// stays valid (Entra ID's behaviour; clients store the new one every time).
    pub fn rotate_refresh(
        &mut self,
        token: &str,
        client_id: &str,
        now: Instant,
    ) -> Result<(Grant, String), AadError> {
        let rec = self.refresh.get(token).cloned().ok_or_else(|| {
            AadError::new(
                "invalid_grant",
                9002313,
                "Invalid request. Request is malformed or invalid: the refresh token is not valid.",
            )
        })?;
        if rec.grant.client_id != client_id {
            return Err(AadError::new("invalid_grant", 700005, "Provided Authorization Code is intended to use against other tenant or client, thus rejected."));
        }
        if rec.expires <= now {
            self.refresh.remove(token);
            return Err(AadError::new("invalid_grant", 700082, "The refresh token has expired due to inactivity. The token was issued on an earlier date and was inactive for 90 days."));
        }
        let new = self.issue_refresh(rec.grant.clone(), now);
        Ok((rec.grant, new))
    }

    /// When the user's sessions were last revoked (Unix seconds).
    pub fn revoked_at(&self, oid: &str) -> Option<i64> {
        self.revoked_at.get(oid).copied()
    }

    /// Revokes every refresh token of a user (`POST /_sim/users/{id}/revoke`).
    pub fn revoke_user(&mut self, oid: &str, now_unix: i64) -> usize {
        self.revoked_at.insert(oid.to_owned(), now_unix);
        let before = self.refresh.len();
        self.refresh.retain(|_, r| r.grant.oid != oid);
        before - self.refresh.len()
    }

    /// Starts a device authorization.
    pub fn start_device(
        &mut self,
        client_id: &str,
        scopes: Vec<String>,
        interval: Duration,
        now: Instant,
    ) -> DeviceStart {
        self.devices.retain(|_, d| d.expires > now);
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut rng = rand::rng();
        let user_code: String = (0..9)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        let device_code = random_token(64);
        self.devices.insert(
            device_code.clone(),
            DeviceRecord {
                client_id: client_id.to_string(),
                scopes,
                user_code: user_code.clone(),
                state: DeviceState::Pending,
                expires: now + DEVICE_CODE_LIFETIME,
                interval,
                last_poll: None,
            },
        );
        DeviceStart {
            device_code,
            user_code,
            expires_in: DEVICE_CODE_LIFETIME.as_secs(),
            interval: interval.as_secs().max(1),
        }
    }

    /// The person entered a user code and signed in (or declined).
    pub fn decide_device(
        &mut self,
        user_code: &str,
        decision: DeviceState,
        now: Instant,
    ) -> Result<(), &'static str> {
        let code = user_code.trim().replace('-', "").to_ascii_uppercase();
        let rec = self
            .devices
            .values_mut()
            .find(|d| d.user_code == code)
            .ok_or("That code was not recognised. Check the code on your device and try again.")?;
        if rec.expires <= now {
            return Err("That code has expired. Start the sign-in on your device again.");
        }
        if rec.state != DeviceState::Pending {
            return Err("That code was already used.");
        }
        rec.state = decision;
        Ok(())
    }

    /// The client polls. `Ok` once approved (the device code is then consumed).
    pub fn poll_device(
        &mut self,
        device_code: &str,
        client_id: &str,
        now: Instant,
    ) -> Result<(Grant, Vec<String>), AadError> {
        let rec = self.devices.get_mut(device_code).ok_or_else(|| {
            AadError::new(
                "invalid_grant",
                70000,
                "The provided value for the 'device_code' parameter is not valid.",
            )
        })?;
        if rec.client_id != client_id {
            return Err(AadError::new(
                "invalid_grant",
                70000,
                "The device code was issued to a different client.",
            ));
        }
        if rec.expires <= now {
            self.devices.remove(device_code);
            return Err(AadError::new("expired_token", 70020, "The provided value for the input parameter 'device_code' is not valid. This device code has expired."));
        }
        let too_soon = rec
            .last_poll
            .is_some_and(|last| now.saturating_duration_since(last) < rec.interval);
        rec.last_poll = Some(now);
        match rec.state.clone() {
            DeviceState::Declined => {
                self.devices.remove(device_code);
                Err(AadError::new(
                    "authorization_declined",
                    70000,
                    "The user declined the sign-in request.",
                ))
            }
            DeviceState::Pending if too_soon => {
                // RFC 8628 §3.5: slow down, and the interval grows by 5 seconds.
                rec.interval += Duration::from_secs(5);
                Err(AadError::new(
                    "slow_down",
                    70016,
                    "The client is polling too often. Increase the polling interval by 5 seconds.",
                ))
            }
            DeviceState::Pending => Err(AadError::new(
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            )),
            DeviceState::Approved(oid) => {
                let rec = self
                    .devices
                    .remove(device_code)
                    .ok_or_else(|| AadError::new("invalid_grant", 70000, "device code vanished"))?;
                let grant = Grant {
                    client_id: rec.client_id,
                    oid,
                    scopes: rec.scopes.clone(),
                    nonce: None,
                };
                Ok((grant, rec.scopes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            client_id: "app".into(),
            oid: "user".into(),
            scopes: vec!["openid".into()],
            nonce: Some("n".into()),
        }
    }

    #[test]
    fn pkce_rfc7636_appendix_b_vector() {
        assert!(pkce_matches(
            "S256",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!pkce_matches(
            "S256",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "wrong"
        ));
        assert!(!pkce_matches("S384", "x", "x"));
    }

    #[test]
    fn codes_are_single_use_and_checked() {
        let mut s = GrantStore::new();
        let t = Instant::now();
        let ch = Some((
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_string(),
            "S256".to_string(),
        ));
        let code = s.issue_code(grant(), "http://localhost:1234/cb", ch.clone(), t);
        let err = s
            .redeem_code(
                &code,
                "app",
                Some("http://localhost:1234/cb"),
                Some("bad"),
                t,
            )
            .unwrap_err();
        assert_eq!(err.code, 501481);
        // A failed redemption burns the code, as Entra ID does.
        let code = s.issue_code(grant(), "http://localhost:1234/cb", ch.clone(), t);
        assert_eq!(
            s.redeem_code(&code, "app", Some("http://localhost:9/cb"), None, t)
                .unwrap_err()
                .code,
            50011
        );
        let code = s.issue_code(grant(), "http://localhost:1234/cb", ch, t);
        let g = s
            .redeem_code(
                &code,
                "app",
                Some("http://localhost:1234/cb"),
                Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
                t,
            )
            .unwrap();
        assert_eq!(g, grant());
        assert_eq!(
            s.redeem_code(&code, "app", Some("http://localhost:1234/cb"), None, t)
                .unwrap_err()
                .code,
            54005
        );
        let code = s.issue_code(grant(), "http://x", None, t);
        assert_eq!(
            s.redeem_code(&code, "app", Some("http://x"), None, t + CODE_LIFETIME)
                .unwrap_err()
                .code,
            70008
        );
    }

    /// #13 item 16: as at Entra ID, a redeemed refresh token stays valid (no family
    /// revocation on reuse); only expiry and revoking the user's sessions end it.
    #[test]
    fn refresh_tokens_are_renewed_and_the_old_one_stays_valid() {
        let mut s = GrantStore::new();
        let t = Instant::now();
        let r1 = s.issue_refresh(grant(), t);
        let (_, r2) = s.rotate_refresh(&r1, "app", t).unwrap();
        assert_ne!(r1, r2);
        let (_, r3) = s.rotate_refresh(&r2, "app", t).unwrap();
        // r1 presented again: still valid, and nothing else is revoked.
        assert!(s.rotate_refresh(&r1, "app", t).is_ok());
        assert!(s.rotate_refresh(&r3, "app", t).is_ok());
        assert!(s.rotate_refresh(&r2, "app", t).is_ok());
        // Expiry ends it.
        let late = t + REFRESH_LIFETIME + Duration::from_secs(1);
        assert_eq!(s.rotate_refresh(&r1, "app", late).unwrap_err().code, 700082);
        // So does revoking the user's sessions.
        let r4 = s.issue_refresh(grant(), t);
        s.revoke_user(&grant().oid, 0);
        assert!(s.rotate_refresh(&r4, "app", t).is_err());
        let other = s.issue_refresh(grant(), t);
        assert_eq!(
            s.rotate_refresh(&other, "someone-else", t)
                .unwrap_err()
                .code,
            700005
        );
    }

    #[test]
    fn device_flow_pending_slow_down_approve_and_expiry() {
        let mut s = GrantStore::new();
        let t = Instant::now();
        let iv = Duration::from_secs(5);
        let d = s.start_device("app", vec!["User.Read".into()], iv, t);
        assert_eq!(d.user_code.len(), 9);
        assert_eq!(
            s.poll_device(&d.device_code, "app", t).unwrap_err().error,
            "authorization_pending"
        );
        assert_eq!(
            s.poll_device(&d.device_code, "app", t + Duration::from_secs(1))
                .unwrap_err()
                .error,
            "slow_down"
        );
        // Interval is now 10 s.
        assert_eq!(
            s.poll_device(&d.device_code, "app", t + Duration::from_secs(7))
                .unwrap_err()
                .error,
            "slow_down"
        );
        assert_eq!(
            s.poll_device(&d.device_code, "app", t + Duration::from_secs(30))
                .unwrap_err()
                .error,
            "authorization_pending"
        );
        assert!(s
            .decide_device("nope", DeviceState::Approved("u".into()), t)
            .is_err());
        s.decide_device(
            &d.user_code.to_lowercase(),
            DeviceState::Approved("user".into()),
            t,
        )
        .unwrap();
        let (g, _) = s
            .poll_device(&d.device_code, "app", t + Duration::from_secs(60))
            .unwrap();
        assert_eq!(g.oid, "user");
        assert!(s
            .poll_device(&d.device_code, "app", t + Duration::from_secs(120))
            .is_err());

        let d = s.start_device("app", vec![], iv, t);
        assert_eq!(
            s.poll_device(&d.device_code, "app", t + DEVICE_CODE_LIFETIME)
                .unwrap_err()
                .error,
            "expired_token"
        );
        let d = s.start_device("app", vec![], iv, t);
        s.decide_device(&d.user_code, DeviceState::Declined, t)
            .unwrap();
        assert_eq!(
            s.poll_device(&d.device_code, "app", t + Duration::from_secs(6))
                .unwrap_err()
                .error,
            "authorization_declined"
        );
    }
}
