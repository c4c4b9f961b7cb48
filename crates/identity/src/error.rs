//! What can go wrong when signing in, and what the person should do about it. Errors from the
//! provider carry its `error` and, for Microsoft, the AADSTS number, turned into an [`Action`].

/// What the person (or the app on their behalf) should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The session is gone (refresh token expired, revoked, password changed): sign in
    /// interactively.
    SignInAgain,
    /// Multi-factor authentication or another interactive step is required.
    Interact,
    /// The permissions asked for need consent: the person, or an admin, must grant them.
    GrantConsent,
    /// The app is not registered in this tenant, or the user is not assigned to it: an
    /// administrator has to act.
    AskAdmin,
    /// The account name or password is wrong, or the account is not in this tenant.
    CheckAccount,
    /// The provider could not be reached.
    CheckNetwork,
    /// Throttled or a passing fault at the provider.
    TryLater,
    /// A defect or misconfiguration; the message says which.
    Report,
}

/// An error from the identity provider's token or device-code endpoint (RFC 6749 §5.2), with
/// Microsoft's extras when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    /// `error`: `invalid_grant`, `interaction_required`, `consent_required`, …
    pub error: String,
    /// `error_description`, as sent (Microsoft's start with `AADSTS<number>:`).
    pub description: String,
    /// Microsoft's AADSTS number, from `error_codes` or the description.
    pub aadsts: Option<u32>,
    /// A claims challenge to send with the next interactive request (`claims`).
    pub claims: Option<String>,
    /// Microsoft's `suberror` with `interaction_required` (`message_only`, `basic_action`, …).
    pub suberror: Option<String>,
}

impl ProviderError {
    /// Reads an error body (`application/json` per RFC 6749 §5.2). `None` when it is not one.
    pub fn from_body(body: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let error = v.get("error")?.as_str()?.to_owned();
        let description = v
            .get("error_description")
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .to_owned();
        let aadsts = v
            .get("error_codes")
            .and_then(|c| c.as_array())
            .and_then(|c| c.first())
            .and_then(serde_json::Value::as_u64)
            .and_then(|c| u32::try_from(c).ok())
            .or_else(|| aadsts_in(&description));
        let claims = v.get("claims").and_then(|c| c.as_str()).map(str::to_owned);
        let suberror = v
            .get("suberror")
            .and_then(|c| c.as_str())
            .map(str::to_owned);
        Some(Self {
            error,
            description,
            aadsts,
            claims,
            suberror,
        })
    }

    /// What to do about it. The OAuth `error` decides first (RFC 6749 §5.2, and Microsoft's
    /// `suberror`); AADSTS numbers only refine an `invalid_grant`, an `interaction_required` or
    /// an error we do not know — Microsoft says the numbers change, and a number must never turn
    /// "the service is busy" into "sign in again".
    pub fn action(&self) -> Action {
        let base = match self.error.as_str() {
            "temporarily_unavailable" | "server_error" => return Action::TryLater,
            "unauthorized_client" | "invalid_client" | "access_denied" => return Action::AskAdmin,
            "consent_required" => return Action::GrantConsent,
            "invalid_request" | "invalid_scope" | "unsupported_grant_type" => {
                return Action::Report
            }
            "invalid_grant" | "login_required" | "expired_token" => Action::SignInAgain,
            "interaction_required" => {
                // MSAL's suberrors (learn.microsoft.com, "Handle errors and exceptions in
                // MSAL"): message_only is a block no interaction lifts (Conditional Access).
                match self.suberror.as_deref() {
                    Some("message_only" | "protection_policy_required") => return Action::AskAdmin,
                    Some("consent_required") => return Action::GrantConsent,
                    Some("bad_token" | "token_expired") => return Action::SignInAgain,
                    _ => Action::Interact,
                }
            }
            _ => Action::Report,
        };
        match self.aadsts {
            // MFA or another step in the browser.
            Some(50076 | 50079 | 50074 | 50158 | 50072 | 50058) => Action::Interact,
            // Blocked by Conditional Access (53003), or the device must be registered or
            // compliant (50097 DeviceAuthenticationRequired, 530003): not something the person
            // can finish here.
            Some(53003 | 530003 | 50097) => Action::AskAdmin,
            Some(65001 | 65004 | 90094 | 90008) => Action::GrantConsent,
            Some(700016 | 50105 | 500011 | 7000112 | 50020) => Action::AskAdmin,
            Some(50034 | 50126 | 50053 | 50057 | 90072 | 50055) => Action::CheckAccount,
            Some(50173 | 700082 | 700084 | 70008 | 70043 | 50132 | 54005) => Action::SignInAgain,
            // 50196: the client asked in a loop (the block lifts); 90033: a passing fault.
            Some(50196 | 90033) => Action::TryLater,
            _ => base,
        }
    }
}

/// The `AADSTS<number>` at the start of a Microsoft description.
fn aadsts_in(description: &str) -> Option<u32> {
    let rest = description.trim_start().strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Why signing in, or getting a token, did not work.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot reach the identity provider at {url}: {reason} — check the network connection and the authority URL in Settings")]
    Offline { url: String, reason: String },
    #[error("the authority {authority} does not describe itself as an OpenID Connect provider: {reason} — check the authority URL (for Microsoft: https://login.microsoftonline.com/<tenant>/v2.0)")]
    Discovery { authority: String, reason: String },
    #[error("{}", provider_text(.0))]
    Provider(ProviderError),
    #[error("the identity provider sent a token that fails its checks: {0} — nothing was stored; if this repeats, report it to your administrator")]
    InvalidToken(String),
    #[error("the sign-in reply did not match the request (state) — it may have been forged or come from an older attempt; nothing was stored, sign in again")]
    StateMismatch,
    #[error("the sign-in was refused in the browser: {error} {description}")]
    Refused { error: String, description: String },
    #[error("the sign-in was cancelled")]
    Cancelled,
    #[error(
        "the sign-in did not complete within {0} s — sign in again (and finish in the browser)"
    )]
    TimedOut(u64),
    #[error("the device code expired before anyone entered it — start the sign-in again")]
    DeviceCodeExpired,
    #[error("cannot open a web browser: {0} — use the device-code sign-in instead (switchboard-agent login --device-code)")]
    Browser(String),
    #[error("the token cache could not be used: {0}")]
    Cache(String),
    #[error("not signed in — sign in first (switchboard-agent login, or Sign in with Microsoft in the app)")]
    NotSignedIn,
    #[error("the identity provider answered with something unexpected: {0}")]
    Protocol(String),
}

fn provider_text(e: &ProviderError) -> String {
    let todo = match e.action() {
        Action::SignInAgain => "sign in again",
        Action::Interact => "sign in interactively to complete the extra step (multi-factor authentication or a policy)",
        Action::GrantConsent => "grant the requested permissions, or ask an administrator to consent for the organisation",
        Action::AskAdmin => "ask your administrator to register the app in this tenant or assign you to it",
        Action::CheckAccount => "check the account name and password, and that the account belongs to this organisation",
        Action::CheckNetwork => "check the network connection",
        Action::TryLater => "try again in a minute",
        Action::Report => "report this to your administrator",
    };
    let first_line = e.description.lines().next().unwrap_or_default();
    format!(
        "the identity provider refused: {} ({first_line}) — {todo}",
        e.error
    )
}

impl IdentityError {
    /// A stable code for UIs (`{ code, message }` across IPC).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Offline { .. } => "identity_offline",
            Self::Discovery { .. } => "identity_discovery",
            Self::Provider(p) => match p.action() {
                Action::SignInAgain => "sign_in_again",
                Action::Interact => "interaction_required",
                Action::GrantConsent => "consent_required",
                Action::AskAdmin => "ask_admin",
                Action::CheckAccount => "check_account",
                Action::CheckNetwork => "identity_offline",
                Action::TryLater => "try_later",
                Action::Report => "identity_error",
            },
            Self::InvalidToken(_) => "invalid_token",
            Self::StateMismatch => "state_mismatch",
            Self::Refused { .. } => "sign_in_refused",
            Self::Cancelled => "sign_in_cancelled",
            Self::TimedOut(_) => "sign_in_timed_out",
            Self::DeviceCodeExpired => "device_code_expired",
            Self::Browser(_) => "no_browser",
            Self::Cache(_) => "token_cache",
            Self::NotSignedIn => "not_signed_in",
            Self::Protocol(_) => "identity_protocol",
        }
    }

    /// What to do next.
    pub fn action(&self) -> Action {
        match self {
            Self::Offline { .. } => Action::CheckNetwork,
            Self::Provider(p) => p.action(),
            Self::StateMismatch
            | Self::Cancelled
            | Self::TimedOut(_)
            | Self::DeviceCodeExpired
            | Self::NotSignedIn
            | Self::Refused { .. } => Action::SignInAgain,
            _ => Action::Report,
        }
    }

    pub(crate) fn offline(url: &str, e: &reqwest::Error) -> Self {
        // reqwest's text can carry the URL with its query (never secrets here: we send
        // secrets only in bodies), but keep it short.
        let reason = if e.is_timeout() {
            "timed out".to_owned()
        } else if e.is_connect() {
            "connection failed".to_owned()
        } else {
            e.to_string()
        };
        Self::Offline {
            url: url.to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsoft_error_bodies_become_actions() {
        // The shape of Microsoft's token endpoint errors (learn.microsoft.com, "Microsoft
        // identity platform and OAuth 2.0 authorization code flow", error response example).
        let body = br#"{
          "error": "invalid_scope",
          "error_description": "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope https://foo.microsoft.com/.default is not valid.\r\nTrace ID: 255d1aef-8c98-452f-ac51-23d051240864\r\nCorrelation ID: fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7\r\nTimestamp: 2016-01-09 02:02:12Z",
          "error_codes": [70011],
          "timestamp": "2016-01-09 02:02:12Z",
          "trace_id": "255d1aef-8c98-452f-ac51-23d051240864",
          "correlation_id": "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7"
        }"#;
        let e = ProviderError::from_body(body).unwrap();
        assert_eq!(e.aadsts, Some(70011));
        assert_eq!(e.action(), Action::Report);
        let text = IdentityError::Provider(e).to_string();
        assert!(text.contains("AADSTS70011"), "{text}");
        assert!(!text.contains("Trace ID"), "one line only: {text}");

        for (code, error, action, ui) in [
            (
                50076,
                "interaction_required",
                Action::Interact,
                "interaction_required",
            ),
            (
                65001,
                "invalid_grant",
                Action::GrantConsent,
                "consent_required",
            ),
            (700016, "unauthorized_client", Action::AskAdmin, "ask_admin"),
            (
                700082,
                "invalid_grant",
                Action::SignInAgain,
                "sign_in_again",
            ),
            (
                50126,
                "invalid_grant",
                Action::CheckAccount,
                "check_account",
            ),
        ] {
            let body = serde_json::json!({"error": error, "error_description": format!("AADSTS{code}: x"), "error_codes": [code]});
            let e = ProviderError::from_body(body.to_string().as_bytes()).unwrap();
            assert_eq!(e.action(), action, "{code}");
            assert_eq!(IdentityError::Provider(e).code(), ui, "{code}");
        }
        // No codes list: the number is read from the description; none at all: by `error`.
        let e = ProviderError::from_body(
            br#"{"error":"invalid_grant","error_description":"AADSTS50173: The provided grant has expired"}"#,
        )
        .unwrap();
        assert_eq!((e.aadsts, e.action()), (Some(50173), Action::SignInAgain));
        let e = ProviderError::from_body(br#"{"error":"invalid_grant"}"#).unwrap();
        assert_eq!(e.action(), Action::SignInAgain);
        assert!(ProviderError::from_body(b"<html>502</html>").is_none());

        // #13 item 15: the `error` first; numbers only refine.
        let action = |body: serde_json::Value| {
            ProviderError::from_body(body.to_string().as_bytes())
                .unwrap()
                .action()
        };
        use serde_json::json;
        // A busy service stays "try later" whatever number it carries.
        assert_eq!(
            action(json!({"error": "temporarily_unavailable", "error_codes": [50076]})),
            Action::TryLater
        );
        assert_eq!(
            action(json!({"error": "invalid_client", "error_codes": [50126]})),
            Action::AskAdmin
        );
        // Conditional Access block: interaction_required with suberror message_only — no
        // sign-in in a browser lifts it.
        assert_eq!(
            action(
                json!({"error": "interaction_required", "suberror": "message_only",
                "error_description": "AADSTS53003: Access has been blocked by Conditional Access policies.",
                "error_codes": [53003]})
            ),
            Action::AskAdmin
        );
        assert_eq!(
            action(json!({"error": "interaction_required", "suberror": "basic_action"})),
            Action::Interact
        );
        // 50097 DeviceAuthenticationRequired: the device must be registered, not "try later".
        assert_eq!(
            action(json!({"error": "interaction_required", "error_codes": [50097]})),
            Action::AskAdmin
        );
        assert_eq!(
            action(json!({"error": "invalid_grant", "error_codes": [50196]})),
            Action::TryLater
        );
        // An error we do not know: its number says what it is.
        assert_eq!(
            action(json!({"error": "new_error", "error_codes": [50126]})),
            Action::CheckAccount
        );
        assert_eq!(action(json!({"error": "new_error"})), Action::Report);
        assert!(ProviderError::from_body(br#"{"error": 5}"#).is_none());
    }
}
