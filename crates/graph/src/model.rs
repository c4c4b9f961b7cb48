//! Graph payloads as typed structs. Unknown `availability`/`activity` values become
//! `Unknown(..)` instead of failing, so a value Microsoft adds later shows as unknown.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! graph_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)*
            /// A value this build does not know (kept as sent).
            Unknown(String),
        }

        impl $name {
            /// Graph's spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => stringify!($variant),)*
                    $name::Unknown(s) => s,
                }
            }
            /// Parses Graph's spelling (case-insensitive); anything else is `Unknown`.
            pub fn parse(s: &str) -> Self {
                $(if s.eq_ignore_ascii_case(stringify!($variant)) { return $name::$variant; })*
                $name::Unknown(s.to_string())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::parse(&s))
            }
        }
    };
}

graph_enum!(
    /// A user's base presence (`availability`).
    Availability {
        /// Available.
        Available,
        /// Available, idle.
        AvailableIdle,
        /// Away.
        Away,
        /// Be right back.
        BeRightBack,
        /// Busy.
        Busy,
        /// Busy, idle.
        BusyIdle,
        /// Do not disturb.
        DoNotDisturb,
        /// Offline.
        Offline,
        /// Unknown to Graph.
        PresenceUnknown,
    }
);

graph_enum!(
    /// What the user does (`activity`).
    Activity {
        /// Available.
        Available,
        /// Away.
        Away,
        /// Be right back.
        BeRightBack,
        /// Busy.
        Busy,
        /// Do not disturb.
        DoNotDisturb,
        /// In a call.
        InACall,
        /// In a conference call.
        InAConferenceCall,
        /// Inactive.
        Inactive,
        /// In a meeting.
        InAMeeting,
        /// Offline.
        Offline,
        /// Off work.
        OffWork,
        /// Out of office.
        OutOfOffice,
        /// Unknown to Graph.
        PresenceUnknown,
        /// Presenting.
        Presenting,
        /// Urgent interruptions only.
        UrgentInterruptionsOnly,
    }
);

/// `itemBody`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemBody {
    /// Text.
    #[serde(default)]
    pub content: Option<String>,
    /// `text` or `html`.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// `dateTimeTimeZone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DateTimeTimeZone {
    /// `2022-10-18T17:05:33.2079781`.
    pub date_time: String,
    /// `UTC`, `Pacific Standard Time`, ...
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// `presenceStatusMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceStatusMessage {
    /// The message.
    #[serde(default)]
    pub message: Option<ItemBody>,
    /// When it stops showing (only on one's own presence).
    #[serde(default)]
    pub expiry_date_time: Option<DateTimeTimeZone>,
    /// When it was set (only on one's own presence).
    #[serde(default)]
    pub published_date_time: Option<String>,
}

/// `outOfOfficeSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutOfOfficeSettings {
    /// Out-of-office message.
    #[serde(default)]
    pub message: Option<String>,
    /// Whether the user is out of office.
    #[serde(default)]
    pub is_out_of_office: Option<bool>,
}

/// A user's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    /// The user's object id.
    pub id: String,
    /// Base presence.
    pub availability: Availability,
    /// Activity.
    pub activity: Activity,
    /// Status message, if any.
    #[serde(default)]
    pub status_message: Option<PresenceStatusMessage>,
    /// Out-of-office settings, if sent.
    #[serde(default)]
    pub out_of_office_settings: Option<OutOfOfficeSettings>,
}

impl Presence {
    /// The status message's text, when there is one that is not blank.
    pub fn status_text(&self) -> Option<String> {
        self.status_message
            .as_ref()
            .and_then(|m| m.message.as_ref())
            .and_then(|m| m.content.clone())
            .filter(|m| !m.trim().is_empty())
    }
}

/// A directory user (the properties Switchboard asks for; all optional except the id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    /// Object id.
    pub id: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Surname.
    pub surname: Option<String>,
    /// Mail.
    pub mail: Option<String>,
    /// UPN.
    pub user_principal_name: Option<String>,
    /// Job title.
    pub job_title: Option<String>,
    /// Department.
    pub department: Option<String>,
    /// Office.
    pub office_location: Option<String>,
    /// Phones.
    #[serde(deserialize_with = "null_as_empty")]
    pub business_phones: Vec<String>,
    /// Mobile.
    pub mobile_phone: Option<String>,
    /// Skills (only on a single user with `$select=skills`).
    pub skills: Option<Vec<String>>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// One page of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// Items.
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    /// The next page, if any.
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
    /// Total matches (`$count=true`).
    #[serde(rename = "@odata.count", default)]
    pub count: Option<u64>,
}

/// A profile photo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Photo {
    /// `image/jpeg`, `image/png`, `image/svg+xml`, ...
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A subscription as Graph returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// Subscription id.
    pub id: String,
    /// Resource.
    pub resource: String,
    /// `updated`.
    #[serde(default)]
    pub change_type: Option<String>,
    /// Webhook URL.
    #[serde(default)]
    pub notification_url: Option<String>,
    /// Lifecycle webhook URL.
    #[serde(default)]
    pub lifecycle_notification_url: Option<String>,
    /// Our secret, echoed in notifications.
    #[serde(default)]
    pub client_state: Option<String>,
    /// When it ends (RFC 3339).
    pub expiration_date_time: String,
    /// The app that created it.
    #[serde(default)]
    pub application_id: Option<String>,
}

/// `POST /subscriptions` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRequest {
    /// `updated` for presence.
    pub change_type: String,
    /// Webhook URL.
    pub notification_url: String,
    /// Lifecycle webhook URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_notification_url: Option<String>,
    /// Resource (see [`presence_subscription_resource`]).
    pub resource: String,
    /// RFC 3339, at most one hour ahead for presence.
    pub expiration_date_time: String,
    /// Secret echoed in notifications (≤ 128 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_state: Option<String>,
}

/// Most user ids in one presence subscription or `getPresencesByUserId` call.
pub const MAX_IDS_PER_CALL: usize = 650;

/// `/communications/presences?$filter=id in ('a','b')` for up to 650 ids.
pub fn presence_subscription_resource<S: AsRef<str>>(
    ids: &[S],
) -> Result<String, crate::GraphError> {
    if ids.is_empty() || ids.len() > MAX_IDS_PER_CALL {
        return Err(crate::GraphError::InvalidRequest(format!(
            "a presence subscription takes 1 to {MAX_IDS_PER_CALL} user ids ({} given)",
            ids.len()
        )));
    }
    let mut list = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.as_ref();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(crate::GraphError::InvalidRequest(format!(
                "'{id}' is not a user object id (GUID)"
            )));
        }
        list.push(format!("'{id}'"));
    }
    Ok(format!(
        "/communications/presences?$filter=id in ({})",
        list.join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_survive() {
        let p: Presence = serde_json::from_str(
            r#"{"id":"x","availability":"Lurking","activity":"InAHackathon"}"#,
        )
        .unwrap();
        assert_eq!(p.availability, Availability::Unknown("Lurking".into()));
        assert_eq!(p.activity, Activity::Unknown("InAHackathon".into()));
        assert_eq!(serde_json::to_value(&p.availability).unwrap(), "Lurking");
        assert_eq!(
            Availability::parse("donotdisturb"),
            Availability::DoNotDisturb
        );
        assert_eq!(Activity::InAConferenceCall.to_string(), "InAConferenceCall");
    }

    #[test]
    fn subscription_resource_limits() {
        let id = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3";
        assert_eq!(
            presence_subscription_resource(&[id]).unwrap(),
            format!("/communications/presences?$filter=id in ('{id}')")
        );
        assert!(presence_subscription_resource::<&str>(&[]).is_err());
        assert!(presence_subscription_resource(&["x') or ('1"]).is_err());
        let many = vec![id; 651];
        assert!(presence_subscription_resource(&many).is_err());
    }
}
