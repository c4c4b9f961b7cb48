//! What the desktop tells the operating system when a call rings in: a notification beside
//! the window's own pop-up, so a person working in another window knows. In the person's
//! language; every value in it came through [`printable`](crate::call::printable) already.

use crate::desk::CallView;
use crate::settings::Language;

/// A notification's title and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub title: String,
    pub body: String,
}

/// The notice of `call` ringing in: who calls in the title; the router's account of the call
/// (a listen-in, the queue, the number dialled, the attendant choices, the wait) in the body.
pub fn ringing(call: &CallView, language: Language) -> Notice {
    let zh = language == Language::ZhCn;
    let caller = call
        .offer
        .caller
        .clone()
        .or_else(|| caller_of(&call.from))
        .unwrap_or_else(|| {
            if zh {
                "未知来电者"
            } else {
                "Unknown caller"
            }
            .to_owned()
        });
    let o = &call.offer;
    let mut parts: Vec<String> = Vec::new();
    if let Some((mode, agent)) = o.monitor.as_deref().and_then(|m| m.split_once(' ')) {
        parts.push(match (mode, zh) {
            ("listen", false) => format!("Listen in on {agent}"),
            ("whisper", false) => format!("Whisper to {agent}"),
            ("barge", false) => format!("Barge in on {agent}'s call"),
            ("listen", true) => format!("监听 {agent}"),
            ("whisper", true) => format!("对 {agent} 耳语"),
            ("barge", true) => format!("强插 {agent} 的通话"),
            _ => String::new(),
        });
    }
    let labelled = [
        (&o.queue, "Queue", "队列"),
        (&o.dialled, "Dialled", "所拨号码"),
        (&o.choices, "Attendant choices", "语音导航选择"),
    ];
    for (value, en, cn) in labelled {
        if let Some(v) = value {
            parts.push(format!("{} {v}", if zh { cn } else { en }));
        }
    }
    if let Some(w) = o.waited {
        let shown = format!("{}:{:02}", w / 60, w % 60);
        parts.push(if zh {
            format!("已等待 {shown}")
        } else {
            format!("Waited {shown}")
        });
    }
    parts.retain(|p| !p.is_empty());
    let body = if parts.is_empty() {
        if zh {
            "在 Switchboard 中接听"
        } else {
            "Answer in Switchboard"
        }
        .to_owned()
    } else {
        parts.join(" · ")
    };
    Notice {
        title: if zh {
            format!("来电：{caller}")
        } else {
            format!("Incoming call: {caller}")
        },
        body,
    }
}

/// The buttons of a ringing call's notification, where the OS shows them (the freedesktop
/// notification servers of Linux and the BSDs, Windows, macOS). A click on the notification
/// itself is no button: it brings the window up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeAction {
    Answer,
    Reject,
}

impl NoticeAction {
    pub const ALL: [NoticeAction; 2] = [Self::Answer, Self::Reject];

    /// The button's id, as the notification server reports it back.
    pub fn id(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Reject => "reject",
        }
    }

    /// The button a notification server reported; `None` for an id we never offered.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }

    /// Its label, the same words as the window's pop-up.
    pub fn label(self, language: Language) -> &'static str {
        let zh = language == Language::ZhCn;
        match (self, zh) {
            (Self::Answer, false) => "Answer",
            (Self::Answer, true) => "接听",
            (Self::Reject, false) => "Reject",
            (Self::Reject, true) => "拒接",
        }
    }
}

/// The caller in a From value (`"Name" <sip:+1555@host>;tag=…`): the display name, else the
/// user part of the address.
pub(crate) fn caller_of(from: &str) -> Option<String> {
    let (name, rest) = match from.split_once('<') {
        Some((name, rest)) => (name.trim().trim_matches('"').trim(), rest),
        None => ("", from),
    };
    if !name.is_empty() {
        return crate::call::printable(name, 64);
    }
    let uri = rest.split(['>', ';']).next().unwrap_or_default();
    let uri = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .unwrap_or(uri);
    let user = uri.split_once('@').map_or(uri, |(u, _)| u);
    crate::call::printable(user, 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::RouterOffer;
    use crate::desk::CallStage;

    fn call(from: &str, offer: RouterOffer) -> CallView {
        CallView {
            id: 7,
            stage: CallStage::Ringing,
            outgoing: false,
            from: from.to_owned(),
            offer,
            ringing_since_unix_ms: 0,
            answered_unix_ms: None,
            muted: false,
            held: false,
            codec: None,
            transfer_ask: None,
        }
    }

    #[test]
    fn a_queue_call_is_told_with_what_the_router_said_in_english_and_chinese() {
        let offer = RouterOffer {
            queue: Some("billing".into()),
            caller: Some("+15551234567".into()),
            dialled: Some("+18005550100".into()),
            choices: Some("main:1".into()),
            waited: Some(75),
            ..RouterOffer::default()
        };
        let c = call("<sip:+15551234567@127.0.0.1>", offer);
        assert_eq!(
            ringing(&c, Language::En),
            Notice {
                title: "Incoming call: +15551234567".into(),
                body:
                    "Queue billing · Dialled +18005550100 · Attendant choices main:1 · Waited 1:15"
                        .into()
            }
        );
        assert_eq!(
            ringing(&c, Language::ZhCn),
            Notice {
                title: "来电：+15551234567".into(),
                body: "队列 billing · 所拨号码 +18005550100 · 语音导航选择 main:1 · 已等待 1:15"
                    .into()
            }
        );
    }

    #[test]
    fn notice_actions_go_both_ways_and_refuse_what_we_never_offered() {
        for a in NoticeAction::ALL {
            assert_eq!(NoticeAction::from_id(a.id()), Some(a));
        }
        assert_eq!(NoticeAction::from_id("default"), None);
        assert_eq!(NoticeAction::from_id("tap"), None);
        assert_eq!(NoticeAction::from_id("Answer"), None);
        assert_eq!(NoticeAction::from_id(""), None);
        assert_eq!(NoticeAction::from_id("answer\n"), None);
        assert_eq!(NoticeAction::Answer.label(Language::En), "Answer");
        assert_eq!(NoticeAction::Reject.label(Language::ZhCn), "拒接");
    }

    #[test]
    fn a_plain_call_names_its_caller_from_sip_and_a_listen_in_says_so() {
        let plain = call(
            "\"Megan Bowen\" <sip:megan@pbx.example>;tag=1",
            RouterOffer::default(),
        );
        assert_eq!(
            ringing(&plain, Language::En),
            Notice {
                title: "Incoming call: Megan Bowen".into(),
                body: "Answer in Switchboard".into()
            }
        );
        let bare = call(
            "<sips:+4930123@pbx.example;transport=tls>",
            RouterOffer::default(),
        );
        assert_eq!(
            ringing(&bare, Language::En).title,
            "Incoming call: +4930123"
        );
        assert_eq!(
            ringing(&call("", RouterOffer::default()), Language::ZhCn).title,
            "来电：未知来电者"
        );
        let listen = RouterOffer {
            monitor: Some("whisper adele@contoso.example".into()),
            ..RouterOffer::default()
        };
        assert_eq!(
            ringing(&call("<sip:router@127.0.0.1>", listen), Language::En).body,
            "Whisper to adele@contoso.example"
        );
    }
}
