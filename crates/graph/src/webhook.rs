//! The receiving side of Graph change notifications, as pure functions for whichever server
//! hosts the webhook (the router): tell a validation request from a notification POST, parse
//! the notification collection, check `clientState`.
//!
//! Graph validates a `notificationUrl` by POSTing `?validationToken=...`; answer `200`,
//! `text/plain`, with the (URL-decoded) token as the body within 10 seconds. Notifications
//! want a 2xx within 3 seconds: answer first, work after.

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::GraphError;
use crate::model::{Activity, Availability};

/// What a POST to the webhook is.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookRequest {
    /// Graph's validation: answer 200 with this token as `text/plain`.
    Validation(String),
    /// Change or lifecycle notifications.
    Notifications(ChangeNotificationCollection),
}

/// Classifies a webhook POST from its raw query string and body.
pub fn classify(query: Option<&str>, body: &[u8]) -> Result<WebhookRequest, GraphError> {
    // None at all: a body that is there, even JSON white space alone, must be the JSON
    // collection the API document names (Schemathesis sent a lone tab with a token).
    let empty = body.is_empty();
    if let Some(q) = query {
        if let Some((_, token)) =
            url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "validationToken")
        {
            // Graph's handshake has no body; one that comes with a body must still be a
            // collection (answered as the handshake).
            if !empty {
                serde_json::from_slice::<ChangeNotificationCollection>(body).map_err(|source| {
                    GraphError::Malformed {
                        what: "change notification",
                        source,
                    }
                })?;
            }
            return Ok(WebhookRequest::Validation(token.into_owned()));
        }
    }
    if empty {
        // Nothing to process (Graph always sends a collection; an empty POST changes nothing).
        return Ok(WebhookRequest::Notifications(
            ChangeNotificationCollection {
                value: Vec::new(),
                validation_tokens: None,
            },
        ));
    }
    serde_json::from_slice(body)
        .map(WebhookRequest::Notifications)
        .map_err(|source| GraphError::Malformed {
            what: "change notification",
            source,
        })
}

/// `changeNotificationCollection`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeNotificationCollection {
    /// The notifications. An item that cannot be read as a notification is dropped (and
    /// logged): one bad item must not cost the others, which Graph would not send again.
    #[serde(deserialize_with = "readable_items")]
    pub value: Vec<ChangeNotification>,
    /// Tokens for rich notifications (not used by basic ones).
    #[serde(default)]
    pub validation_tokens: Option<Vec<String>>,
}

fn readable_items<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<ChangeNotification>, D::Error> {
    let raw = Vec::<serde_json::Value>::deserialize(d)?;
    let total = raw.len();
    let items: Vec<ChangeNotification> = raw
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    if items.len() < total {
        tracing::warn!(
            dropped = total - items.len(),
            "change notifications that are not readable were dropped"
        );
    }
    Ok(items)
}

/// A lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// Renew or reauthorize the subscription.
    ReauthorizationRequired,
    /// Some notifications were not delivered: resynchronise.
    Missed,
    /// The subscription is gone: create a new one.
    SubscriptionRemoved,
    /// A value this build does not know.
    Unknown(String),
}

impl<'de> Deserialize<'de> for LifecycleEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "reauthorizationRequired" => Self::ReauthorizationRequired,
            "missed" => Self::Missed,
            "subscriptionRemoved" => Self::SubscriptionRemoved,
            _ => Self::Unknown(s),
        })
    }
}

impl Serialize for LifecycleEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Self::ReauthorizationRequired => "reauthorizationRequired",
            Self::Missed => "missed",
            Self::SubscriptionRemoved => "subscriptionRemoved",
            Self::Unknown(x) => x,
        })
    }
}

/// `resourceData` of a presence notification (availability/activity only in decrypted rich
/// notifications).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ResourceData {
    /// User id.
    pub id: Option<String>,
    /// `#microsoft.graph.presence`.
    #[serde(rename = "@odata.type")]
    pub odata_type: Option<String>,
    /// `users/{id}/presence`.
    #[serde(rename = "@odata.id")]
    pub odata_id: Option<String>,
    /// Availability (rich notifications).
    pub availability: Option<Availability>,
    /// Activity (rich notifications).
    pub activity: Option<Activity>,
}

/// `changeNotification` (also the shape of lifecycle notifications).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeNotification {
    /// Subscription id.
    pub subscription_id: String,
    /// Our secret; check it with [`client_state_matches`].
    #[serde(default)]
    pub client_state: Option<String>,
    /// `updated`.
    #[serde(default)]
    pub change_type: Option<String>,
    /// `communications/presences/{id}`.
    #[serde(default)]
    pub resource: Option<String>,
    /// Tenant.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// When the subscription ends.
    #[serde(default)]
    pub subscription_expiration_date_time: Option<String>,
    /// The changed resource.
    #[serde(default)]
    pub resource_data: Option<ResourceData>,
    /// Set on lifecycle notifications.
    #[serde(default)]
    pub lifecycle_event: Option<LifecycleEvent>,
}

impl ChangeNotification {
    /// The user whose presence changed (from `resourceData.id`, else the resource path).
    pub fn user_id(&self) -> Option<&str> {
        if let Some(id) = self.resource_data.as_ref().and_then(|r| r.id.as_deref()) {
            return Some(id);
        }
        let r = self.resource.as_deref()?;
        let tail = r.rsplit('/').next()?;
        let tail = tail
            .strip_prefix("presences('")
            .and_then(|t| t.strip_suffix("')"))
            .unwrap_or(tail);
        Some(tail).filter(|t| !t.is_empty() && !t.contains('('))
    }
}

/// Whether a notification carries the expected `clientState` (compared in constant time).
pub fn client_state_matches(n: &ChangeNotification, expected: &str) -> bool {
    let Some(got) = n.client_state.as_deref() else {
        return false;
    };
    let (a, b) = (got.as_bytes(), expected.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One unreadable item costs only itself; an empty POST changes nothing; a validation
    /// request that carries a body must carry a collection.
    #[test]
    fn unreadable_items_are_dropped_and_the_rest_kept() {
        let body =
            br#"{"value":[null,{"subscriptionId":5},{"subscriptionId":"s1","clientState":"c"}]}"#;
        let Ok(WebhookRequest::Notifications(c)) = classify(None, body) else {
            panic!("not a collection");
        };
        assert_eq!(c.value.len(), 1);
        assert_eq!(c.value[0].subscription_id, "s1");
        assert!(matches!(
            classify(None, b""),
            Ok(WebhookRequest::Notifications(c)) if c.value.is_empty()
        ));
        assert!(classify(None, b" ").is_err());
        assert!(classify(None, b"null").is_err());
        assert!(classify(Some("validationToken=abc"), br#"{"value":{}}"#).is_err());
        assert!(matches!(
            classify(Some("validationToken=abc"), b""),
            Ok(WebhookRequest::Validation(t)) if t == "abc"
        ));
    }

    #[test]
    fn validation_token_is_url_decoded() {
        let r = classify(
            Some("validationToken=Validation%3a+Testing+client+application+reachability"),
            b"",
        )
        .unwrap();
        assert_eq!(
            r,
            WebhookRequest::Validation(
                "Validation: Testing client application reachability".into()
            )
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            classify(None, b"{\"value\": 3}"),
            Err(GraphError::Malformed { .. })
        ));
        assert!(matches!(
            classify(Some("x=1"), b"\xff\xfe"),
            Err(GraphError::Malformed { .. })
        ));
        // With the handshake's token, only no body at all counts as none: white space, a
        // form feed or a tab alone is a body that is not JSON (Schemathesis sent both).
        for body in [&b" \r\n\t"[..], b"\t", b"\x0c", b"\x0b", b" x"] {
            assert!(
                matches!(
                    classify(Some("validationToken=t"), body),
                    Err(GraphError::Malformed { .. })
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn client_state_check() {
        let mut n = ChangeNotification {
            subscription_id: "s".into(),
            client_state: Some("secret".into()),
            change_type: None,
            resource: Some("communications/presences('abc')".into()),
            tenant_id: None,
            subscription_expiration_date_time: None,
            resource_data: None,
            lifecycle_event: None,
        };
        assert!(client_state_matches(&n, "secret"));
        assert!(!client_state_matches(&n, "secreT"));
        assert!(!client_state_matches(&n, "secret2"));
        assert_eq!(n.user_id(), Some("abc"));
        n.client_state = None;
        assert!(!client_state_matches(&n, "secret"));
    }
}
