//! The tray icon's content: its menu in the person's language, the work state it shows (as
//! text and as a coloured dot on the app's icon), and what a click on a menu entry asks for.
//! The desktop shell draws it with the OS's tray; everything it shows is decided here, where
//! it is tested.

use crate::settings::Language;
use crate::state::{WorkStateKind, WorkStateView, OFFERED_REASONS as REASONS};

/// What a tray menu entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrayAction {
    /// Bring the window back (from the tray, or from behind others).
    Show,
    Ready,
    /// Not ready for this reason code (`break`, `lunch`, … as [`crate::state::parse_reason`]
    /// takes it).
    NotReady(String),
    OffDuty,
    /// End the app: the phone hangs up and signs off, as when the last window closes.
    Quit,
}

impl TrayAction {
    /// The menu entry's id.
    pub fn id(&self) -> String {
        match self {
            Self::Show => "show".into(),
            Self::Ready => "ready".into(),
            Self::NotReady(r) => format!("not_ready:{r}"),
            Self::OffDuty => "off_duty".into(),
            Self::Quit => "quit".into(),
        }
    }

    /// The action of a menu entry's id; none for an id this menu never made.
    pub fn from_id(id: &str) -> Option<Self> {
        Some(match id {
            "show" => Self::Show,
            "ready" => Self::Ready,
            "off_duty" => Self::OffDuty,
            "quit" => Self::Quit,
            other => {
                let reason = other.strip_prefix("not_ready:")?;
                if !REASONS.contains(&reason) {
                    return None;
                }
                Self::NotReady(reason.to_owned())
            }
        })
    }
}

/// One entry of the tray's menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrayEntry {
    /// Text that is not clickable (the state line).
    Label(String),
    /// A clickable entry; `checked` for the states (the one in force, or that follows the
    /// call), none for the others.
    Item {
        action: TrayAction,
        text: String,
        checked: Option<bool>,
    },
    /// A submenu (the Not ready reasons).
    Submenu {
        text: String,
        entries: Vec<TrayEntry>,
    },
    Separator,
}

/// Everything the tray shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayView {
    /// The state in a few words ("Ready", "Not ready · Lunch", "On a call"): the label beside
    /// the icon where the OS shows one (Linux, macOS).
    pub status: String,
    /// "Switchboard — Ready": the icon's tooltip where the OS shows one (Windows, macOS).
    pub tooltip: String,
    /// The dot's colour on the icon.
    pub dot: Dot,
    pub menu: Vec<TrayEntry>,
}

/// The colour of the state's dot: the window's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dot {
    /// Ready: green.
    Ready,
    /// Not ready, or wrap-up: amber.
    Away,
    /// On a call or in a conference: red.
    Busy,
    /// Off duty: grey.
    Off,
}

impl Dot {
    fn of(state: WorkStateKind) -> Self {
        match state {
            WorkStateKind::Ready => Self::Ready,
            WorkStateKind::NotReady | WorkStateKind::WrapUp => Self::Away,
            WorkStateKind::OnCall | WorkStateKind::OnConference => Self::Busy,
            WorkStateKind::OffDuty => Self::Off,
        }
    }

    /// Opaque RGBA.
    pub fn rgba(self) -> [u8; 4] {
        match self {
            Self::Ready => [0x10, 0x7c, 0x10, 0xff],
            Self::Away => [0xe0, 0x8a, 0x00, 0xff],
            Self::Busy => [0xc4, 0x31, 0x4b, 0xff],
            Self::Off => [0x8a, 0x88, 0x86, 0xff],
        }
    }
}

fn state_text(state: WorkStateKind, zh: bool) -> &'static str {
    match (state, zh) {
        (WorkStateKind::OffDuty, false) => "Off duty",
        (WorkStateKind::Ready, false) => "Ready",
        (WorkStateKind::NotReady, false) => "Not ready",
        (WorkStateKind::OnCall, false) => "On a call",
        (WorkStateKind::OnConference, false) => "In a conference",
        (WorkStateKind::WrapUp, false) => "Wrap-up",
        (WorkStateKind::OffDuty, true) => "下班",
        (WorkStateKind::Ready, true) => "就绪",
        (WorkStateKind::NotReady, true) => "未就绪",
        (WorkStateKind::OnCall, true) => "通话中",
        (WorkStateKind::OnConference, true) => "会议通话中",
        (WorkStateKind::WrapUp, true) => "话后处理",
    }
}

/// A reason as the window names it (a reason of the person's own words, or one the router
/// set such as "missed call", as it is).
fn reason_text(code: &str, zh: bool) -> String {
    let known = match (code, zh) {
        ("break", false) => "Break",
        ("lunch", false) => "Lunch",
        ("personal", false) => "Personal",
        ("admin_work", false) => "Admin work",
        ("meeting", false) => "Meeting",
        ("training", false) => "Training",
        ("coaching", false) => "Coaching",
        ("missed call", false) => "Missed call",
        ("break", true) => "休息",
        ("lunch", true) => "午餐",
        ("personal", true) => "私事",
        ("admin_work", true) => "事务工作",
        ("meeting", true) => "会议",
        ("training", true) => "培训",
        ("coaching", true) => "辅导",
        ("missed call", true) => "未接来电",
        _ => "",
    };
    if known.is_empty() {
        // Shown in a menu: one short line, nothing a tray could take for markup or a
        // mnemonic.
        // (GTK reads `_` and muda `&` as mnemonics.)
        code.chars()
            .filter(|c| !c.is_control() && *c != '&')
            .map(|c| if c == '_' { ' ' } else { c })
            .take(40)
            .collect()
    } else {
        known.to_owned()
    }
}

/// The tray's view of the work state `v`, in `language`.
pub fn view(v: &WorkStateView, language: Language) -> TrayView {
    let zh = language == Language::ZhCn;
    let sep = if zh { "：" } else { " · " };
    let mut status = state_text(v.state, zh).to_owned();
    if v.state == WorkStateKind::NotReady {
        if let Some(r) = v.reason.as_deref().filter(|r| !r.is_empty()) {
            status = format!("{status}{sep}{}", reason_text(r, zh));
        }
    }
    // During a call or wrap-up the entries choose the state that follows, as in the window.
    let chosen = match v.state {
        WorkStateKind::OnCall | WorkStateKind::OnConference | WorkStateKind::WrapUp => v.after,
        s => s,
    };
    let reason = v.reason.as_deref().unwrap_or_default();
    let item = |action: TrayAction, text: String, on: bool| TrayEntry::Item {
        action,
        text,
        checked: Some(on),
    };
    let reasons = REASONS
        .iter()
        .map(|r| {
            item(
                TrayAction::NotReady((*r).to_owned()),
                reason_text(r, zh),
                chosen == WorkStateKind::NotReady && reason == *r,
            )
        })
        .collect();
    let then = |s: &str| {
        if chosen == v.state {
            s.to_owned()
        } else if zh {
            format!("之后：{s}")
        } else {
            format!("Then {s}")
        }
    };
    let menu = vec![
        TrayEntry::Label(status.clone()),
        TrayEntry::Separator,
        item(
            TrayAction::Ready,
            then(state_text(WorkStateKind::Ready, zh)),
            chosen == WorkStateKind::Ready,
        ),
        TrayEntry::Submenu {
            text: then(state_text(WorkStateKind::NotReady, zh)),
            entries: reasons,
        },
        item(
            TrayAction::OffDuty,
            then(state_text(WorkStateKind::OffDuty, zh)),
            chosen == WorkStateKind::OffDuty,
        ),
        TrayEntry::Separator,
        TrayEntry::Item {
            action: TrayAction::Show,
            text: if zh {
                "显示 Switchboard"
            } else {
                "Show Switchboard"
            }
            .into(),
            checked: None,
        },
        TrayEntry::Item {
            action: TrayAction::Quit,
            text: if zh {
                "退出 Switchboard"
            } else {
                "Quit Switchboard"
            }
            .into(),
            checked: None,
        },
    ];
    TrayView {
        tooltip: format!("Switchboard — {status}"),
        status,
        dot: Dot::of(v.state),
        menu,
    }
}

/// The app's icon (`rgba`, `width` × `height`, 4 bytes a pixel) with the state's dot in its
/// lower right corner: a filled circle of a third of the icon's width, with a white ring so
/// it shows on dark and light panels alike. An icon of the wrong size is returned as it is.
pub fn badge(rgba: &[u8], width: u32, height: u32, dot: Dot) -> Vec<u8> {
    let mut out = rgba.to_vec();
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 || out.len() != w * h * 4 {
        return out;
    }
    let d = (w.min(h) as f32) * 0.42;
    let r = d / 2.0;
    let (cx, cy) = (w as f32 - r - 0.5, h as f32 - r - 0.5);
    let ring = (r * 0.2).max(1.0);
    let colour = dot.rgba();
    for y in 0..h {
        for x in 0..w {
            let dist = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
            let px = if dist <= r - ring {
                colour
            } else if dist <= r {
                [0xff, 0xff, 0xff, 0xff]
            } else {
                continue;
            };
            let i = (y * w + x) * 4;
            out[i..i + 4].copy_from_slice(&px);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(state: WorkStateKind, reason: Option<&str>, after: WorkStateKind) -> WorkStateView {
        crate::state::test_view(state, after, reason)
    }

    fn checked(menu: &[TrayEntry]) -> Vec<String> {
        let mut v = Vec::new();
        for e in menu {
            match e {
                TrayEntry::Item {
                    action,
                    checked: Some(true),
                    ..
                } => v.push(action.id()),
                TrayEntry::Submenu { entries, .. } => v.extend(checked(entries)),
                _ => {}
            }
        }
        v
    }

    #[test]
    fn the_menu_says_the_state_and_ticks_it() {
        let v = view(
            &state(
                WorkStateKind::NotReady,
                Some("lunch"),
                WorkStateKind::NotReady,
            ),
            Language::En,
        );
        assert_eq!(v.status, "Not ready · Lunch");
        assert_eq!(v.tooltip, "Switchboard — Not ready · Lunch");
        assert_eq!(v.dot, Dot::Away);
        assert_eq!(v.menu[0], TrayEntry::Label("Not ready · Lunch".into()));
        assert_eq!(checked(&v.menu), ["not_ready:lunch"]);
        let ready = view(
            &state(WorkStateKind::Ready, None, WorkStateKind::Ready),
            Language::En,
        );
        assert_eq!(ready.status, "Ready");
        assert_eq!(ready.dot, Dot::Ready);
        assert_eq!(checked(&ready.menu), ["ready"]);
        assert!(ready.menu.contains(&TrayEntry::Item {
            action: TrayAction::Ready,
            text: "Ready".into(),
            checked: Some(true)
        }));
    }

    #[test]
    fn during_a_call_the_entries_choose_what_follows() {
        let v = view(
            &state(WorkStateKind::OnCall, None, WorkStateKind::Ready),
            Language::En,
        );
        assert_eq!(v.status, "On a call");
        assert_eq!(v.dot, Dot::Busy);
        assert_eq!(checked(&v.menu), ["ready"]);
        assert!(v.menu.contains(&TrayEntry::Item {
            action: TrayAction::Ready,
            text: "Then Ready".into(),
            checked: Some(true)
        }));
        let zh = view(
            &state(
                WorkStateKind::WrapUp,
                Some("break"),
                WorkStateKind::NotReady,
            ),
            Language::ZhCn,
        );
        assert_eq!(zh.status, "话后处理");
        assert_eq!(zh.tooltip, "Switchboard — 话后处理");
        assert_eq!(checked(&zh.menu), ["not_ready:break"]);
        assert!(matches!(&zh.menu[3], TrayEntry::Submenu { text, .. } if text == "之后：未就绪"));
    }

    #[test]
    fn chinese_and_reasons_of_the_router_or_the_person() {
        let v = view(
            &state(
                WorkStateKind::NotReady,
                Some("missed call"),
                WorkStateKind::NotReady,
            ),
            Language::ZhCn,
        );
        assert_eq!(v.status, "未就绪：未接来电");
        assert!(checked(&v.menu).is_empty(), "no offered reason is ticked");
        assert!(v.menu.iter().any(
            |e| matches!(e, TrayEntry::Item { action: TrayAction::Quit, text, .. } if text == "退出 Switchboard")
        ));
        let own = view(
            &state(
                WorkStateKind::NotReady,
                Some("dentist\u{7}_appointment & co"),
                WorkStateKind::NotReady,
            ),
            Language::En,
        );
        assert_eq!(own.status, "Not ready · dentist appointment  co");
    }

    #[test]
    fn ids_go_both_ways_and_nothing_else_is_taken() {
        for a in [
            TrayAction::Show,
            TrayAction::Ready,
            TrayAction::NotReady("coaching".into()),
            TrayAction::OffDuty,
            TrayAction::Quit,
        ] {
            assert_eq!(TrayAction::from_id(&a.id()), Some(a));
        }
        for bad in [
            "",
            "not_ready:",
            "not_ready:anything",
            "ready ",
            "QUIT",
            "1",
        ] {
            assert_eq!(TrayAction::from_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_dot_sits_in_the_corner_and_leaves_the_rest() {
        let (w, h) = (32u32, 32u32);
        let icon = vec![7u8; (w * h * 4) as usize];
        let out = badge(&icon, w, h, Dot::Busy);
        let px = |x: u32, y: u32| {
            let i = ((y * w + x) * 4) as usize;
            [out[i], out[i + 1], out[i + 2], out[i + 3]]
        };
        // Centre of the dot: its colour; the top left: untouched; the ring: white.
        let r = 32.0 * 0.42 / 2.0;
        let c = (32.0 - r - 0.5) as u32;
        assert_eq!(px(c, c), Dot::Busy.rgba());
        assert_eq!(px(0, 0), [7, 7, 7, 7]);
        assert_eq!(px(c, 31), [0xff; 4]);
        let changed = out.chunks(4).filter(|p| *p != [7, 7, 7, 7]).count();
        let area = std::f32::consts::PI * r * r;
        assert!(
            (changed as f32 - area).abs() < area * 0.2,
            "{changed} pixels against a circle of {area}"
        );
        // A wrong size is left alone.
        assert_eq!(badge(&[1, 2, 3], 32, 32, Dot::Ready), vec![1, 2, 3]);
    }
}
