//! The Switchboard desktop app (Tauri 2): a thin shell. It creates the window, holds one
//! [`switchboard_agent::Agent`], exposes typed commands that call it, and forwards router
//! status changes to the UI as `router-status` events. No protocol logic lives here.
//!
//! IPC contract (mirrored by `ui/src/ipc`): commands `get_settings`, `save_settings`,
//! `get_router_status`, `app_version`, `ui_ready`, `list_audio_devices`, `start_mic_test`,
//! `stop_mic_test`, `play_test_sound`, `get_account`, `sign_in`, `start_device_code`,
//! `finish_device_code`, `cancel_sign_in`, `sign_out`, `get_my_presence`,
//! `set_my_presence`, `set_status_message`, `search_directory`, `get_presences`,
//! `get_photos`, `set_favourite`, `get_work_state`, `set_work_state`, and the phone's
//! `phone_status`, `phone_connect`, `phone_dial`, `phone_targets`, `phone_transfer`,
//! `phone_consult`, `phone_consult_step`, `phone_history`, `phone_answer`, `phone_reject`, `phone_transfer_answer`,
//! `phone_hangup`,
//! `phone_hold`, `phone_mute`, `phone_dtmf`, `phone_volume`, `phone_quality`,
//! `phone_wrap_up`, `get_phone_settings`, `save_phone_settings`, `forget_sip_password`,
//! `supervisor_board`, `supervisor_set_state`, `supervisor_monitor`, `take_link`,
//! `link_handler`, `set_link_handler`; events
//! `router-status`, `mic-level`, `presence`, `work-state`, `phone` (a `PhoneView` on each
//! change), `phone-event` (each `PhoneEvent` of the call engine, as it serialises) and
//! `dial-link` (a `tel:`/`sip:` link for the dial box). The tray's menu calls no command: its
//! clicks act in the shell ([`tray_action`]). Errors cross as `{ code, message }` ([`IpcError`]).
//!
//! The phone starts by itself once the router link is up and the agent is known (signed in,
//! or `SWITCHBOARD_AGENT` with a router that checks no tokens): SIP credentials from the
//! router, the devices of Settings → Audio, registration. Where Settings → Phone chose a
//! plain SIP account it starts at once with that account, router or not. SIP passwords stay
//! in the agent library; they never cross to the window (the window sends a new plain-account
//! password once, with `save_phone_settings`, and is only told whether one is kept).
#![forbid(unsafe_code)]

mod link_handler;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use switchboard_agent::account::{AccountError, AccountInfo, DeviceCodeInfo};
use switchboard_agent::call::CallQuality;
use switchboard_agent::desk::{
    ConsultStep, DeskError, HistoryEntry, MonitorMode, PhoneView, SupervisorBoard, TransferTargets,
};
use switchboard_agent::directory::{DirectoryQuery, Person, PresenceInfo};
use switchboard_agent::notice::NoticeAction;
use switchboard_agent::state::{WorkStateKind, WorkStateView};
use switchboard_agent::{
    Agent, AudioDevices, AudioError, LinkPolicy, PhoneSettings, PhoneSettingsView, PhoneSource,
    RouterStatus, Settings, SettingsError, SettingsStore, SoundTestResult, TestSound,
};
use tauri::{Emitter, Manager, State};

/// Name of the event that carries a [`RouterStatus`] to the UI.
pub const ROUTER_STATUS_EVENT: &str = "router-status";
/// Event name of a change of the contact-center state (payload: `WorkStateView`).
pub const WORK_STATE_EVENT: &str = "work-state";
/// Event name of a Teams presence change sent by the router (payload: `PresenceInfo`).
pub const PRESENCE_EVENT: &str = "presence";
/// Event name of the phone's state (payload: `PhoneView`).
pub const PHONE_EVENT: &str = "phone";
/// Event name of each event of the call engine (payload: a `PhoneEvent`, `{"event": …}`).
pub const PHONE_RAW_EVENT: &str = "phone-event";
/// Event name of a `tel:` or `sip:` link opened in the app (payload: what the dial box takes).
pub const LINK_EVENT: &str = "dial-link";
/// Name of the event that carries a [`switchboard_agent::MicLevel`] while the microphone test
/// runs (about 16 a second).
pub const MIC_LEVEL_EVENT: &str = "mic-level";

/// An error as the UI receives it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct IpcError {
    /// Stable, machine-readable (`invalid_router_url`, `settings_unwritable`, …).
    pub code: String,
    /// For a person: what happened and what to do (English; the UI localises by `code`).
    pub message: String,
}

impl From<SettingsError> for IpcError {
    fn from(e: SettingsError) -> Self {
        Self {
            code: e.code().to_owned(),
            message: e.to_string(),
        }
    }
}

impl From<AudioError> for IpcError {
    fn from(e: AudioError) -> Self {
        Self {
            code: e.code().to_owned(),
            message: e.to_string(),
        }
    }
}

impl From<switchboard_agent::state::StateError> for IpcError {
    fn from(e: switchboard_agent::state::StateError) -> Self {
        Self {
            code: e.code().to_owned(),
            message: e.to_string(),
        }
    }
}

impl From<AccountError> for IpcError {
    fn from(e: AccountError) -> Self {
        Self {
            code: e.code().to_owned(),
            message: e.to_string(),
        }
    }
}

impl From<DeskError> for IpcError {
    fn from(e: DeskError) -> Self {
        Self {
            code: e.code().to_owned(),
            message: e.to_string(),
        }
    }
}

/// The phone: registration, the call, the wrap-up, the last problem.
#[tauri::command]
fn phone_status(agent: State<'_, Agent>) -> PhoneView {
    agent.desk().view()
}

/// Gets new SIP credentials from the router and (re)starts the phone.
#[tauri::command]
async fn phone_connect(agent: State<'_, Agent>) -> Result<PhoneView, IpcError> {
    agent.start_phone().await?;
    Ok(agent.desk().view())
}

/// Calls a number, or a colleague, queue, attendant or expert group by name, through the
/// router; returns the call's id.
#[tauri::command]
async fn phone_dial(agent: State<'_, Agent>, target: String) -> Result<u64, IpcError> {
    Ok(agent.desk().dial(&target).await?)
}

/// Whom and where the agent may transfer or consult now (queues, attendants, colleagues,
/// expert groups with those free now, whether outside numbers are allowed).
#[tauri::command]
async fn phone_targets(agent: State<'_, Agent>) -> Result<TransferTargets, IpcError> {
    Ok(agent.desk().targets().await?)
}

/// A blind transfer of the call up; returns the router's step.
#[tauri::command]
async fn phone_transfer(agent: State<'_, Agent>, target: String) -> Result<String, IpcError> {
    Ok(agent.desk().transfer(&target).await?)
}

/// Consults a colleague or an expert group while the caller waits.
#[tauri::command]
async fn phone_consult(agent: State<'_, Agent>, target: String) -> Result<String, IpcError> {
    Ok(agent.desk().consult(&target).await?)
}

/// Completes, conferences or cancels the consultation.
#[tauri::command]
async fn phone_consult_step(
    agent: State<'_, Agent>,
    step: ConsultStep,
) -> Result<String, IpcError> {
    Ok(agent.desk().consult_step(step).await?)
}

/// The supervisors' board: the queues' live figures and every agent (Supervisors and Admins).
#[tauri::command]
async fn supervisor_board(agent: State<'_, Agent>) -> Result<SupervisorBoard, IpcError> {
    Ok(agent.desk().board().await?)
}

/// The notification's action type for ringing calls: its buttons, in the window's language
/// (registered again before each ringing call, so a language switch reaches them).
const RINGING_ACTIONS: &str = "ringing-call";

/// A ringing call told to the OS: a notification with Answer and Reject buttons, a click on it
/// bringing the window up (where the OS offers them: the freedesktop notification servers of
/// Linux and the BSDs, Windows and macOS; see [`notice_action`]); and the window, when closed
/// to the tray, back on screen asking for attention. Where the desktop has no notification
/// service, the pop-up alone says it.
fn tell_ringing(app: &tauri::AppHandle, call: &switchboard_agent::desk::CallView) {
    use tauri_plugin_notification::{Action, ActionType, NotificationExt};
    let language = app.state::<Agent>().settings().language;
    let notice = switchboard_agent::notice::ringing(call, language);
    let buttons = NoticeAction::ALL
        .into_iter()
        .map(|a| Action::builder(a.id(), a.label(language)).build())
        .collect();
    if let Err(e) = app
        .notification()
        .register_action_types(vec![ActionType::builder(RINGING_ACTIONS)
            .actions(buttons)
            .build()])
    {
        tracing::debug!(error = %e, "cannot give the notification its buttons");
    }
    if let Err(e) = app
        .notification()
        .builder()
        .id(notice_id(call.id))
        .action_type_id(RINGING_ACTIONS)
        .title(&notice.title)
        .body(&notice.body)
        .show()
    {
        tracing::warn!(error = %e, "cannot show the notification of a ringing call");
    }
    if let Some(w) = app.get_webview_window("main") {
        // Closed to the tray: the window comes back with its pop-up (not minimised, not
        // taking the keyboard from what the person types elsewhere).
        if !w.is_visible().unwrap_or(true) {
            let _ = w.show();
        }
        if let Err(e) = w.request_user_attention(Some(tauri::UserAttentionType::Critical)) {
            tracing::debug!(error = %e, "cannot ask for attention to the ringing call");
        }
    }
}

/// The notification id of a call's ringing notice (the plugin's ids are `i32`; a call id past
/// that wraps, and an action is only followed for the call ringing now, see [`notice_action`]).
fn notice_id(call: u64) -> i32 {
    (call % i32::MAX as u64) as i32
}

/// The call stopped ringing (answered, rejected, or the caller gave up): its notification goes
/// away where the OS lets an app take one back (Linux and the BSDs).
fn untell_ringing(app: &tauri::AppHandle, call: u64) {
    use tauri_plugin_notification::NotificationExt;
    if let Err(e) = app.notification().remove_active(vec![notice_id(call)]) {
        tracing::debug!(error = %e, "cannot take back the notification of a call");
    }
}

/// What the person did with a ringing call's notification: a click on it (`tap`) brings the
/// window up; Answer answers (and brings up the window, where the call goes on); Reject
/// rejects. Followed only for the incoming call ringing now: a late click on the notification
/// of a call that is gone, or of another call, does nothing but show the window.
fn notice_action(app: &tauri::AppHandle, action: &str, notification: Option<i32>) {
    let desk = app.state::<Agent>().desk().clone();
    let ringing = desk
        .view()
        .call
        .filter(|c| c.rings_in() && Some(notice_id(c.id)) == notification);
    let chosen = NoticeAction::from_id(action);
    tracing::info!(
        action,
        call = ringing.as_ref().map(|c| c.id),
        "notification action"
    );
    match (chosen, ringing) {
        (Some(NoticeAction::Answer), Some(call)) => {
            show_window(app);
            tauri::async_runtime::spawn(async move {
                if let Err(e) = desk.answer(call.id).await {
                    tracing::warn!(code = e.code(), "cannot answer from the notification: {e}");
                }
            });
        }
        (Some(NoticeAction::Reject), Some(call)) => {
            if let Err(e) = desk.reject(call.id) {
                tracing::warn!(code = e.code(), "cannot reject from the notification: {e}");
            }
        }
        // `tap` (a click on the notification itself), or a button of a call gone by.
        _ => show_window(app),
    }
}

/// From the board: listen in on an agent's call, whisper to them or barge in (`mode`), or
/// stop (none); the router rings this person's phone first. The router's step.
#[tauri::command]
async fn supervisor_monitor(
    agent: State<'_, Agent>,
    upn: String,
    mode: Option<MonitorMode>,
) -> Result<String, IpcError> {
    Ok(agent.desk().monitor(&upn, mode).await?)
}

/// From the board: an agent Ready, or Not ready for a reason (Supervisors and Admins).
#[tauri::command]
async fn supervisor_set_state(
    agent: State<'_, Agent>,
    upn: String,
    state: WorkStateKind,
    reason: Option<String>,
) -> Result<(), IpcError> {
    let ready = match state {
        WorkStateKind::Ready => true,
        WorkStateKind::NotReady => false,
        other => {
            return Err(IpcError {
                code: "invalid_state".into(),
                message: format!("{other:?} cannot be set from the board"),
            })
        }
    };
    // The same reasons as the agent's own selector.
    let reason = if ready {
        None
    } else {
        Some(switchboard_agent::state::reason_code(
            &switchboard_agent::state::parse_reason(reason.as_deref().unwrap_or_default())?,
        ))
    };
    agent.desk().set_agent_state(&upn, ready, reason).await?;
    Ok(())
}

/// The agent's calls: the router's records and the phone's own, newest first.
#[tauri::command]
async fn phone_history(
    agent: State<'_, Agent>,
    limit: Option<u32>,
) -> Result<Vec<HistoryEntry>, IpcError> {
    Ok(agent
        .desk()
        .history(limit.unwrap_or(100).clamp(1, 500))
        .await?)
}

#[tauri::command]
async fn phone_answer(agent: State<'_, Agent>, call: u64) -> Result<(), IpcError> {
    Ok(agent.desk().answer(call).await?)
}

#[tauri::command]
fn phone_reject(agent: State<'_, Agent>, call: u64) -> Result<(), IpcError> {
    Ok(agent.desk().reject(call)?)
}

/// Follows (`follow`) or declines the transfer the other party of `call` asked for.
#[tauri::command]
fn phone_transfer_answer(agent: State<'_, Agent>, call: u64, follow: bool) -> Result<(), IpcError> {
    Ok(agent.desk().answer_transfer(call, follow)?)
}

#[tauri::command]
fn phone_hangup(agent: State<'_, Agent>, call: u64) -> Result<(), IpcError> {
    Ok(agent.desk().hangup(call)?)
}

#[tauri::command]
async fn phone_hold(agent: State<'_, Agent>, call: u64, on: bool) -> Result<(), IpcError> {
    Ok(agent.desk().hold(call, on).await?)
}

#[tauri::command]
fn phone_mute(agent: State<'_, Agent>, on: bool) -> Result<(), IpcError> {
    Ok(agent.desk().mute(on)?)
}

/// The call volume, 0–100 %.
#[tauri::command]
fn phone_volume(agent: State<'_, Agent>, percent: u8) -> Result<(), IpcError> {
    Ok(agent.desk().set_volume(percent)?)
}

/// The call's audio figures so far (loss, jitter, estimated MOS).
#[tauri::command]
async fn phone_quality(agent: State<'_, Agent>, call: u64) -> Result<CallQuality, IpcError> {
    Ok(agent.desk().quality(call).await?)
}

/// One keypad key (`0`–`9`, `*`, `#`, `A`–`D`) into the call.
#[tauri::command]
async fn phone_dtmf(agent: State<'_, Agent>, call: u64, key: String) -> Result<(), IpcError> {
    let mut keys = key.chars();
    let k = match (keys.next(), keys.next()) {
        (Some(k), None) => k,
        _ => {
            return Err(IpcError {
                code: "invalid_digit".into(),
                message: "send one keypad key at a time (0–9, *, #, A–D)".into(),
            })
        }
    };
    Ok(agent.desk().dtmf(call, k).await?)
}

/// Ends the wrap-up at the router with the disposition code and the agent's notes (at most
/// 2,000 characters), and goes back to the chosen state.
#[tauri::command]
async fn phone_wrap_up(
    agent: State<'_, Agent>,
    disposition: Option<String>,
    notes: Option<String>,
) -> Result<(), IpcError> {
    Ok(agent.finish_wrap_up(disposition, notes).await?)
}

/// Settings → Phone: which account the phone uses, and whether a password is kept.
// async: opening the password store asks the OS keychain, which can take a moment; not on
// the UI thread.
#[tauri::command]
async fn get_phone_settings(agent: State<'_, Agent>) -> Result<PhoneSettingsView, IpcError> {
    Ok(agent.phone_settings())
}

/// Saves Settings → Phone (`password`: a new one for the plain SIP account, or none to keep
/// the one kept) and starts the phone again on the account chosen.
#[tauri::command]
async fn save_phone_settings(
    agent: State<'_, Agent>,
    kick: State<'_, PhoneKick>,
    phone: PhoneSettings,
    password: Option<String>,
) -> Result<PhoneSettingsView, IpcError> {
    let v = agent.save_phone(phone, password).await?;
    kick.0.notify_one();
    Ok(v)
}

/// Settings → Phone: forgets the plain SIP account's kept password (the account stays, to be
/// used again with its password entered anew); the phone goes back to the router's account.
#[tauri::command]
async fn forget_sip_password(
    agent: State<'_, Agent>,
    kick: State<'_, PhoneKick>,
) -> Result<PhoneSettingsView, IpcError> {
    let v = agent.forget_sip_password().await?;
    kick.0.notify_one();
    Ok(v)
}

/// Settings → Links: whether this app opens `tel:`, `sip:` and `sips:` links.
#[tauri::command]
async fn link_handler(app: tauri::AppHandle) -> link_handler::LinkHandler {
    // xdg-mime is a shell script: off the async runtime's threads.
    tauri::async_runtime::spawn_blocking(move || link_handler::status(&app))
        .await
        .unwrap_or(link_handler::LinkHandler {
            can_change: false,
            schemes: Vec::new(),
        })
}

/// Settings → Links: makes this app the one that opens `tel:`, `sip:` and `sips:` links
/// (`on`), or stops it being that; returns where it stands after.
#[tauri::command]
async fn set_link_handler(
    app: tauri::AppHandle,
    on: bool,
) -> Result<link_handler::LinkHandler, IpcError> {
    tauri::async_runtime::spawn_blocking(move || link_handler::set(&app, on))
        .await
        .map_err(|e| IpcError {
            code: "link_handler_failed".into(),
            message: format!("Could not change the app for tel: and sip: links: {e}"),
        })?
}

/// Wakes [`keep_phone`] at once (a sign-in made the agent known, Settings → Phone changed).
#[derive(Default)]
struct PhoneKick(tokio::sync::Notify);

/// The last `tel:`/`sip:` link opened and not yet taken by the window (the app may have
/// been started by it, before the window listens).
#[derive(Default)]
struct PendingLink(std::sync::Mutex<Option<String>>);

/// A `tel:`, `sip:` or `sips:` link was opened (the app started with it, or a second start
/// handed it over): the window comes forward with it in the dial box, and the person presses
/// Call — a link never calls by itself.
fn open_link(app: &tauri::AppHandle, link: &str) {
    let Some(target) = switchboard_agent::links::link_target(link) else {
        tracing::warn!(
            link = %switchboard_agent::call::printable(link, 64).unwrap_or_default(),
            "not a tel: or sip: link to call; ignored"
        );
        return;
    };
    tracing::info!(%target, "a link to call was opened");
    *app.state::<PendingLink>()
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(target.clone());
    if let Err(e) = app.emit(LINK_EVENT, &target) {
        tracing::warn!(error = %e, "cannot send the link to the window");
    }
    show_window(app);
}

/// The link opened before the window listened, once.
#[tauri::command]
fn take_link(pending: State<'_, PendingLink>) -> Option<String> {
    pending.0.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// The tray icon, where the OS has a tray: the work state on the icon (a coloured dot), beside
/// it (Linux, macOS) and in its tooltip (Windows, macOS); a menu to choose the state, bring the
/// window back or quit. The words and the dot come from [`switchboard_agent::tray`].
struct Tray {
    icon: tauri::tray::TrayIcon,
    /// The app's icon, RGBA, its width and height: what the dot is drawn on.
    base: (Vec<u8>, u32, u32),
    /// What it shows now: a menu is rebuilt only when this changes (a rebuilt menu closes
    /// under the person's pointer).
    shown: std::sync::Mutex<Option<switchboard_agent::tray::TrayView>>,
}

/// Whether the library the tray needs on Linux is installed (the tray crate would abort the
/// app without it). Looked for where the dynamic linker looks.
#[cfg(target_os = "linux")]
fn tray_library_present() -> bool {
    const NAMES: [&str; 2] = ["libayatana-appindicator3.so.1", "libappindicator3.so.1"];
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for base in ["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib"] {
        dirs.push(base.into());
        // Multiarch folders (/usr/lib/x86_64-linux-gnu, …).
        if let Ok(entries) = std::fs::read_dir(base) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with("-linux-gnu"))
                    .map(|e| e.path()),
            );
        }
    }
    dirs.iter()
        .any(|d| NAMES.iter().any(|n| d.join(n).is_file()))
}

#[cfg(not(target_os = "linux"))]
fn tray_library_present() -> bool {
    true
}

/// Makes the tray icon, or says why there is none (then closing the window quits).
fn make_tray(app: &tauri::AppHandle) -> Option<Tray> {
    use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
    if !tray_library_present() {
        tracing::warn!(
            "no tray: libayatana-appindicator3 is not installed; closing the window quits \
             (install libayatana-appindicator3-1 for the tray)"
        );
        return None;
    }
    let base = app
        .default_window_icon()
        .map(|i| (i.rgba().to_vec(), i.width(), i.height()))?;
    let built = TrayIconBuilder::with_id("switchboard")
        .icon(tauri::image::Image::new_owned(
            base.0.clone(),
            base.1,
            base.2,
        ))
        .tooltip("Switchboard")
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| tray_action(app, event.id().as_ref()))
        .on_tray_icon_event(|tray, event| {
            // Windows and macOS: a left click brings the window (Linux trays show the menu).
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                show_window(tray.app_handle());
            }
        })
        .build(app);
    match built {
        Ok(icon) => Some(Tray {
            icon,
            base,
            shown: std::sync::Mutex::new(None),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "no tray icon; closing the window quits");
            None
        }
    }
}

/// Shows the work state `v` in the tray (in the person's language), if it changed.
fn show_in_tray(app: &tauri::AppHandle, v: &WorkStateView) {
    let Some(tray) = app.try_state::<Tray>() else {
        return;
    };
    let language = app.state::<Agent>().settings().language;
    let view = switchboard_agent::tray::view(v, language);
    {
        let mut shown = tray.shown.lock().unwrap_or_else(|p| p.into_inner());
        if shown.as_ref() == Some(&view) {
            return;
        }
        *shown = Some(view.clone());
    }
    let (rgba, w, h) = &tray.base;
    let icon = switchboard_agent::tray::badge(rgba, *w, *h, view.dot);
    let result = tray_menu(app, &view.menu).and_then(|menu| {
        tray.icon.set_menu(Some(menu))?;
        tray.icon
            .set_icon(Some(tauri::image::Image::new_owned(icon, *w, *h)))?;
        tray.icon.set_tooltip(Some(&view.tooltip))?;
        tray.icon.set_title(Some(&view.status))
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot show the state in the tray");
    }
}

type MenuEntry = Box<dyn tauri::menu::IsMenuItem<tauri::Wry>>;

fn tray_menu(
    app: &tauri::AppHandle,
    entries: &[switchboard_agent::tray::TrayEntry],
) -> tauri::Result<tauri::menu::Menu<tauri::Wry>> {
    let items = tray_items(app, entries)?;
    let refs: Vec<&dyn tauri::menu::IsMenuItem<tauri::Wry>> =
        items.iter().map(|i| i.as_ref()).collect();
    tauri::menu::Menu::with_items(app, &refs)
}

fn tray_items(
    app: &tauri::AppHandle,
    entries: &[switchboard_agent::tray::TrayEntry],
) -> tauri::Result<Vec<MenuEntry>> {
    use switchboard_agent::tray::TrayEntry;
    use tauri::menu::{CheckMenuItem, MenuItem, PredefinedMenuItem, Submenu};
    let mut items: Vec<MenuEntry> = Vec::new();
    for e in entries {
        items.push(match e {
            TrayEntry::Label(text) => {
                Box::new(MenuItem::with_id(app, "state", text, false, None::<&str>)?)
            }
            TrayEntry::Item {
                action,
                text,
                checked: Some(on),
            } => Box::new(CheckMenuItem::with_id(
                app,
                action.id(),
                text,
                true,
                *on,
                None::<&str>,
            )?),
            TrayEntry::Item {
                action,
                text,
                checked: None,
            } => Box::new(MenuItem::with_id(
                app,
                action.id(),
                text,
                true,
                None::<&str>,
            )?),
            TrayEntry::Submenu { text, entries } => {
                let inner = tray_items(app, entries)?;
                let refs: Vec<&dyn tauri::menu::IsMenuItem<tauri::Wry>> =
                    inner.iter().map(|i| i.as_ref()).collect();
                Box::new(Submenu::with_items(app, text, true, &refs)?)
            }
            TrayEntry::Separator => Box::new(PredefinedMenuItem::separator(app)?),
        });
    }
    Ok(items)
}

/// A tray menu entry was clicked.
fn tray_action(app: &tauri::AppHandle, id: &str) {
    use switchboard_agent::tray::TrayAction;
    let Some(action) = TrayAction::from_id(id) else {
        return;
    };
    tracing::info!(action = %action.id(), "tray menu");
    let (state, reason) = match action {
        TrayAction::Show => return show_window(app),
        TrayAction::Quit => return app.exit(0),
        TrayAction::Ready => (WorkStateKind::Ready, None),
        TrayAction::NotReady(r) => (WorkStateKind::NotReady, Some(r)),
        TrayAction::OffDuty => (WorkStateKind::OffDuty, None),
    };
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let agent = app.state::<Agent>();
        match set_work_state_here(&agent, state, reason) {
            Ok(v) => {
                if let Err(e) = agent.sync_router_state().await {
                    tracing::info!(code = e.code(), "the router was not told the state: {e}");
                }
                // A CheckMenuItem ticks itself when clicked: put the menu right again.
                if let Some(tray) = app.try_state::<Tray>() {
                    *tray.shown.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                show_in_tray(&app, &v);
            }
            Err(e) => tracing::warn!(code = %e.code, "the tray's state was refused: {}", e.message),
        }
    });
}

/// Brings the main window back: shown, not minimised, in front.
fn show_window(app: &tauri::AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

/// Starts the phone once the router link is up and the agent is known, and again after it
/// failed (backing off to a minute, or at once after a sign-in) while none runs, or when the
/// registrar refuses the credentials it has (a router restarted with new ones). A plain SIP
/// account of Settings → Phone needs no router: its phone starts at once, and a refusal is
/// not tried again with the same password (kicked when Settings → Phone is saved).
async fn keep_phone(app: tauri::AppHandle) {
    use switchboard_agent::desk::RegistrationView;
    use switchboard_agent::ConnectionState;
    let mut router = app.state::<Agent>().subscribe_router();
    let mut wait = std::time::Duration::from_secs(2);
    loop {
        let kick = app.state::<PhoneKick>();
        let plain = app.state::<Agent>().settings().phone.source == PhoneSource::SipAccount;
        if !plain {
            tokio::select! {
                r = router.wait_for(|s| s.state == ConnectionState::Connected) => {
                    if r.is_err() {
                        break;
                    }
                }
                // Settings → Phone changed: look again.
                () = kick.0.notified() => continue,
            }
        }
        let agent = app.state::<Agent>();
        let refused = matches!(
            &agent.desk().view().registration,
            RegistrationView::Failing { code, .. } if code == "registrar_refused"
        );
        if agent.desk().is_running() && (plain || !refused) {
            wait = std::time::Duration::from_secs(2);
        } else {
            match agent.start_phone().await {
                Ok(()) => wait = std::time::Duration::from_secs(2),
                Err(e) => {
                    tracing::info!(
                        code = e.code(),
                        retry_s = wait.as_secs(),
                        "the phone did not start: {e}"
                    );
                    wait = (wait * 2).min(std::time::Duration::from_secs(60));
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = kick.0.notified() => wait = std::time::Duration::from_secs(2),
        }
    }
}

/// The contact-center state and how it shows in Teams.
#[tauri::command]
fn get_work_state(agent: State<'_, Agent>) -> WorkStateView {
    agent.work().view()
}

/// `ready`, `not_ready` (with a reason code or text) or `off_duty`. During a call or
/// wrap-up it is the state that follows; in wrap-up it ends the wrap-up. The router is told
/// too while the phone runs (a problem there shows in the phone's view).
#[tauri::command]
async fn set_work_state(
    agent: State<'_, Agent>,
    state: WorkStateKind,
    reason: Option<String>,
) -> Result<WorkStateView, IpcError> {
    let v = set_work_state_here(&agent, state, reason)?;
    if let Err(e) = agent.sync_router_state().await {
        tracing::info!(code = e.code(), "the router was not told the state: {e}");
    }
    Ok(v)
}

fn set_work_state_here(
    agent: &Agent,
    state: WorkStateKind,
    reason: Option<String>,
) -> Result<WorkStateView, IpcError> {
    Ok(match state {
        WorkStateKind::Ready => agent.work().set_ready(),
        WorkStateKind::NotReady => {
            agent
                .work()
                .set_not_ready(switchboard_agent::state::parse_reason(
                    reason.as_deref().unwrap_or_default(),
                )?)
        }
        WorkStateKind::OffDuty => agent.work().set_off_duty(),
        other => {
            return Err(IpcError {
                code: "invalid_state".into(),
                message: format!("{other:?} follows calls; it cannot be chosen"),
            })
        }
    })
}

/// The signed-in account, or none.
#[tauri::command]
async fn get_account(agent: State<'_, Agent>) -> Result<Option<AccountInfo>, IpcError> {
    Ok(agent.account().current().await?)
}

/// Signs in in the system browser (`$BROWSER` on Linux), with a loopback redirect.
#[tauri::command]
async fn sign_in(
    agent: State<'_, Agent>,
    kick: State<'_, PhoneKick>,
) -> Result<AccountInfo, IpcError> {
    let a = agent
        .account()
        .sign_in(&switchboard_agent::account::SystemBrowser)
        .await?;
    agent.signed_in();
    kick.0.notify_one();
    Ok(a)
}

#[tauri::command]
async fn start_device_code(agent: State<'_, Agent>) -> Result<DeviceCodeInfo, IpcError> {
    Ok(agent.account().start_device_code().await?)
}

#[tauri::command]
async fn finish_device_code(
    agent: State<'_, Agent>,
    kick: State<'_, PhoneKick>,
) -> Result<AccountInfo, IpcError> {
    let a = agent.account().finish_device_code().await?;
    agent.signed_in();
    kick.0.notify_one();
    Ok(a)
}

#[tauri::command]
fn cancel_sign_in(agent: State<'_, Agent>) {
    agent.account().cancel_sign_in();
}

#[tauri::command]
async fn sign_out(agent: State<'_, Agent>) -> Result<(), IpcError> {
    Ok(agent.sign_out().await?)
}

#[tauri::command]
async fn get_my_presence(agent: State<'_, Agent>) -> Result<PresenceInfo, IpcError> {
    Ok(agent.my_presence().await?)
}

/// The person's chosen status (`null` resets it).
#[tauri::command]
async fn set_my_presence(
    agent: State<'_, Agent>,
    availability: Option<String>,
) -> Result<PresenceInfo, IpcError> {
    Ok(agent.account().set_preferred_presence(availability).await?)
}

#[tauri::command]
async fn set_status_message(agent: State<'_, Agent>, text: String) -> Result<(), IpcError> {
    Ok(agent.account().set_status_message(&text).await?)
}

#[tauri::command]
async fn search_directory(
    agent: State<'_, Agent>,
    query: DirectoryQuery,
) -> Result<Vec<Person>, IpcError> {
    Ok(agent.account().search_directory(&query).await?)
}

#[tauri::command]
async fn get_presences(
    agent: State<'_, Agent>,
    ids: Vec<String>,
) -> Result<Vec<PresenceInfo>, IpcError> {
    Ok(agent.presences(&ids).await?)
}

/// Photos of the people shown, as `data:` URLs (none: draw initials).
#[tauri::command]
async fn get_photos(
    agent: State<'_, Agent>,
    ids: Vec<String>,
) -> Result<Vec<switchboard_agent::directory::PersonPhoto>, IpcError> {
    Ok(agent.account().photos(&ids).await?)
}

#[tauri::command]
async fn set_favourite(agent: State<'_, Agent>, id: String, on: bool) -> Result<(), IpcError> {
    Ok(agent.account().set_favourite(&id, on).await?)
}

#[tauri::command]
fn get_settings(agent: State<'_, Agent>) -> Settings {
    agent.settings()
}

// async: re-pointing the router link spawns on the tokio runtime.
#[tauri::command]
async fn save_settings(
    app: tauri::AppHandle,
    agent: State<'_, Agent>,
    settings: Settings,
) -> Result<Settings, IpcError> {
    let saved = agent.save_settings(settings).map_err(IpcError::from)?;
    // The tray speaks the language chosen.
    show_in_tray(&app, &agent.work().view());
    Ok(saved)
}

#[tauri::command]
fn get_router_status(agent: State<'_, Agent>) -> RouterStatus {
    agent.router_status()
}

#[tauri::command]
fn app_version(app: tauri::AppHandle) -> String {
    app.package_info().version.to_string()
}

// async: listing asks the sound system, which can take a moment; not on the UI thread.
#[tauri::command]
async fn list_audio_devices() -> Result<AudioDevices, IpcError> {
    tauri::async_runtime::spawn_blocking(switchboard_agent::audio::devices)
        .await
        .map_err(|e| IpcError {
            code: "sound_devices_unlisted".into(),
            message: e.to_string(),
        })?
        .map_err(IpcError::from)
}

/// Opens the microphone (`device`, else the default) and sends its level as `mic-level`
/// events until `stop_mic_test` or a new test; returns the test's number.
#[tauri::command]
fn start_mic_test(app: tauri::AppHandle, agent: State<'_, Agent>, device: Option<String>) -> u32 {
    let id = agent.mic_tests().start(device);
    tauri::async_runtime::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(60));
        loop {
            every.tick().await;
            let Some(level) = app.state::<Agent>().mic_tests().level(id) else {
                break;
            };
            if app.emit(MIC_LEVEL_EVENT, level).is_err() {
                app.state::<Agent>().mic_tests().stop(Some(id));
                break;
            }
        }
    });
    id
}

#[tauri::command]
fn stop_mic_test(agent: State<'_, Agent>, test: Option<u32>) {
    agent.mic_tests().stop(test);
}

/// Plays the chime or a ring on `device` (else the default) at `volume` %, and returns when
/// it has played.
#[tauri::command]
async fn play_test_sound(
    sound: TestSound,
    device: Option<String>,
    volume: u8,
) -> Result<SoundTestResult, IpcError> {
    tauri::async_runtime::spawn_blocking(move || {
        switchboard_agent::audio::play_test_sound(sound, device, volume)
    })
    .await
    .map_err(|e| IpcError {
        code: "sound_device_unavailable".into(),
        message: e.to_string(),
    })?
    .map_err(IpcError::from)
}

/// Called by the UI once its first frame is painted; logged for the start-up benchmark
/// (`scripts/bench-desktop.sh` reads `first_paint_unix_ms`).
#[tauri::command]
fn ui_ready() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    tracing::info!(first_paint_unix_ms = now as u64, "ui first paint");
}

/// Whether the window draws with WebKitGTK's GPU compositing: `SWITCHBOARD_WEBVIEW_GPU` (`1`
/// on, `0` off) when set, else only where the machine has a GPU render node
/// (`/dev/dri/renderD*`). Without one, OpenGL is Mesa's software renderer (llvmpipe: VMs,
/// virtual desktops, servers), and compositing through it costs 70–85 MiB of memory and CPU
/// for nothing the person sees (docs/decisions.md).
fn gpu_compositing(setting: Option<&str>, render_node: bool) -> bool {
    match setting.map(str::trim) {
        Some("1") => true,
        Some("0") => false,
        _ => render_node,
    }
}

/// Whether `/dev/dri` holds a render node (a GPU that OpenGL can use).
#[cfg(target_os = "linux")]
fn has_render_node() -> bool {
    std::fs::read_dir("/dev/dri").is_ok_and(|dir| {
        dir.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
    })
}

/// Linux: the window's WebKitGTK view draws without GPU compositing (its hardware
/// acceleration policy *never*) unless [`gpu_compositing`] says otherwise. Other systems draw
/// through their own system views: nothing to do.
fn draw_without_gpu(window: &tauri::WebviewWindow) {
    #[cfg(target_os = "linux")]
    {
        let setting = std::env::var("SWITCHBOARD_WEBVIEW_GPU").ok();
        let render_node = has_render_node();
        if gpu_compositing(setting.as_deref(), render_node) {
            tracing::info!(render_node, "the window draws with GPU compositing");
            return;
        }
        tracing::info!(
            render_node,
            "the window draws without GPU compositing (SWITCHBOARD_WEBVIEW_GPU=1 turns it on)"
        );
        let done = window.with_webview(|view| {
            use webkit2gtk::{HardwareAccelerationPolicy, SettingsExt, WebViewExt};
            if let Some(settings) = WebViewExt::settings(&view.inner()) {
                settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
            }
        });
        if let Err(e) = done {
            tracing::warn!(error = %e, "cannot set how the window draws");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = window;
}

/// Builds and runs the app until its last window closes.
pub fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let result = tauri::Builder::default()
        // First: a second start (a tel: or sip: link opened while the app runs) hands its
        // link to this one and ends.
        // Started again while running (perhaps closed to the tray): the window comes back.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            show_window(app);
        }))
        .plugin(tauri_plugin_deep_link::init())
        .plugin(tauri_plugin_notification::init())
        .setup(|app| {
            let store = SettingsStore::for_current_user()?;
            tracing::info!(settings = %store.path().display(), "starting");
            // The link lives on Tauri's tokio runtime.
            let agent = tauri::async_runtime::block_on(async {
                Agent::start(store, LinkPolicy::default())
            });
            let mut changes = agent.subscribe_router();
            let mut presence = agent.subscribe_presence();
            let mut work = agent.work().subscribe();
            let mut phone = agent.desk().subscribe();
            let mut phone_events = agent.desk().subscribe_events();
            app.manage(agent);
            app.manage(PhoneKick::default());
            app.manage(PendingLink::default());
            if let Some(tray) = make_tray(app.handle()) {
                app.manage(tray);
            }
            if let Some(w) = app.get_webview_window("main") {
                draw_without_gpu(&w);
            }
            {
                use tauri_plugin_notification::NotificationExt;
                let handle = app.handle().clone();
                app.notification().on_action(move |performed| {
                    notice_action(
                        &handle,
                        performed.action_id(),
                        performed.notification().map(|n| n.id()),
                    )
                })?;
            }
            {
                use tauri_plugin_deep_link::DeepLinkExt;
                let handle = app.handle().clone();
                app.deep_link().on_open_url(move |event| {
                    for url in event.urls() {
                        open_link(&handle, url.as_str());
                    }
                });
                if let Ok(Some(urls)) = app.deep_link().get_current() {
                    for url in urls {
                        open_link(app.handle(), url.as_str());
                    }
                }
            }
            let to_window = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                // The call last told to the OS: each call rings there once.
                let mut told = None;
                // The call whose notification is up, taken back once it stops ringing.
                let mut shown = None;
                loop {
                    let v = phone.borrow_and_update().clone();
                    let ringing = v.call.as_ref().filter(|c| c.rings_in());
                    if let Some(up) = shown.filter(|&id| ringing.map(|c| c.id) != Some(id)) {
                        untell_ringing(&to_window, up);
                        shown = None;
                    }
                    if let Some(call) = ringing {
                        if told != Some(call.id) {
                            told = Some(call.id);
                            shown = Some(call.id);
                            tell_ringing(&to_window, call);
                        }
                    }
                    if let Err(e) = to_window.emit(PHONE_EVENT, v) {
                        tracing::warn!(error = %e, "cannot send the phone's state to the window");
                    }
                    if phone.changed().await.is_err() {
                        break;
                    }
                }
            });
            let to_window = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    match phone_events.recv().await {
                        Ok(e) => {
                            if let Err(e) = to_window.emit(PHONE_RAW_EVENT, e) {
                                tracing::warn!(error = %e, "cannot send a phone event to the window");
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            tracing::debug!(missed = n, "phone events skipped")
                        }
                        Err(RecvError::Closed) => break,
                    }
                }
            });
            tauri::async_runtime::spawn(keep_phone(app.handle().clone()));
            let to_window = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    match presence.recv().await {
                        Ok(p) => {
                            if let Err(e) = to_window.emit(PRESENCE_EVENT, p) {
                                tracing::warn!(error = %e, "cannot send presence to the window");
                            }
                        }
                        // The window's next refresh catches up.
                        Err(RecvError::Lagged(n)) => {
                            tracing::debug!(missed = n, "presence events skipped")
                        }
                        Err(RecvError::Closed) => break,
                    }
                }
            });
            let to_window = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                loop {
                    let v = work.borrow_and_update().clone();
                    show_in_tray(&to_window, &v);
                    if let Err(e) = to_window.emit(WORK_STATE_EVENT, v) {
                        tracing::warn!(error = %e, "cannot send the agent state to the window");
                    }
                    if work.changed().await.is_err() {
                        break;
                    }
                }
            });
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                loop {
                    let status = changes.borrow_and_update().clone();
                    if let Err(e) = handle.emit(ROUTER_STATUS_EVENT, status) {
                        tracing::warn!(error = %e, "cannot send router status to the window");
                    }
                    if changes.changed().await.is_err() {
                        break;
                    }
                }
            });
            Ok(())
        })
        .on_window_event(|window, event| {
            if let tauri::WindowEvent::CloseRequested { api, .. } = event {
                let app = window.app_handle();
                let to_tray = window.label() == "main"
                    && app.try_state::<Tray>().is_some()
                    && app
                        .try_state::<Agent>()
                        .is_some_and(|a| a.settings().close_to_tray);
                if to_tray {
                    api.prevent_close();
                    if let Err(e) = window.hide() {
                        tracing::warn!(error = %e, "cannot hide the window");
                    }
                    tracing::info!("the window closed to the tray; the phone keeps running");
                }
            }
        })
        .invoke_handler(tauri::generate_handler![
            get_settings,
            save_settings,
            link_handler,
            set_link_handler,
            get_router_status,
            app_version,
            ui_ready,
            list_audio_devices,
            start_mic_test,
            stop_mic_test,
            play_test_sound,
            get_account,
            sign_in,
            start_device_code,
            finish_device_code,
            cancel_sign_in,
            sign_out,
            get_my_presence,
            set_my_presence,
            set_status_message,
            search_directory,
            get_presences,
            get_photos,
            set_favourite,
            get_work_state,
            set_work_state,
            phone_status,
            phone_connect,
            phone_dial,
            phone_targets,
            phone_transfer,
            phone_consult,
            phone_consult_step,
            phone_history,
            supervisor_board,
            supervisor_set_state,
            supervisor_monitor,
            take_link,
            phone_answer,
            phone_reject,
            phone_transfer_answer,
            phone_hangup,
            phone_hold,
            phone_mute,
            phone_dtmf,
            phone_volume,
            phone_quality,
            phone_wrap_up,
            get_phone_settings,
            save_phone_settings,
            forget_sip_password
        ])
        .build(tauri::generate_context!("../tauri.conf.json"));
    match result {
        Ok(app) => app.run(|app, event| {
            if let tauri::RunEvent::Exit = event {
                // This app's Teams presence session goes with it (else it lingers until
                // it expires).
                if let Some(agent) = app.try_state::<Agent>() {
                    // The phone hangs up, unregisters and signs off at the router first,
                    // for good: the task keeping it up must not start it again meanwhile.
                    tauri::async_runtime::block_on(agent.desk().close());
                    tauri::async_runtime::block_on(agent.work().finish());
                }
            }
        }),
        Err(e) => {
            eprintln!("Switchboard could not start: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::gpu_compositing;

    #[test]
    fn the_window_composites_on_a_gpu_unless_told_otherwise() {
        assert!(gpu_compositing(None, true));
        assert!(!gpu_compositing(None, false));
        assert!(gpu_compositing(Some("1"), false));
        assert!(!gpu_compositing(Some("0"), true));
        assert!(!gpu_compositing(Some(" 0 "), true));
        // Anything else: as the machine is.
        assert!(gpu_compositing(Some("yes"), true));
        assert!(!gpu_compositing(Some(""), false));
    }
}

#[cfg(test)]
mod bindings {
    //! The UI's TypeScript types are generated from these Rust types, so the two cannot drift:
    //! `export_bindings_are_current` fails when `ui/src/ipc/bindings/` is stale. Regenerate
    //! with `SWITCHBOARD_UPDATE_BINDINGS=1 cargo test -p switchboard-desktop bindings`.
    use std::path::{Path, PathBuf};

    use ts_rs::TS;

    fn export_to(dir: &Path) {
        switchboard_agent::Settings::export_all_to(dir).unwrap();
        switchboard_agent::RouterStatus::export_all_to(dir).unwrap();
        switchboard_agent::AudioDevices::export_all_to(dir).unwrap();
        switchboard_agent::MicLevel::export_all_to(dir).unwrap();
        switchboard_agent::TestSound::export_all_to(dir).unwrap();
        switchboard_agent::SoundTestResult::export_all_to(dir).unwrap();
        switchboard_agent::account::AccountInfo::export_all_to(dir).unwrap();
        switchboard_agent::account::DeviceCodeInfo::export_all_to(dir).unwrap();
        switchboard_agent::directory::Person::export_all_to(dir).unwrap();
        switchboard_agent::directory::DirectoryQuery::export_all_to(dir).unwrap();
        switchboard_agent::state::WorkStateView::export_all_to(dir).unwrap();
        switchboard_agent::directory::PersonPhoto::export_all_to(dir).unwrap();
        switchboard_agent::desk::PhoneView::export_all_to(dir).unwrap();
        switchboard_agent::call::CallQuality::export_all_to(dir).unwrap();
        switchboard_agent::desk::HistoryEntry::export_all_to(dir).unwrap();
        switchboard_agent::desk::ConsultStep::export_all_to(dir).unwrap();
        switchboard_agent::desk::TransferTargets::export_all_to(dir).unwrap();
        switchboard_agent::desk::SupervisorBoard::export_all_to(dir).unwrap();
        switchboard_agent::PhoneSettingsView::export_all_to(dir).unwrap();
        super::IpcError::export_all_to(dir).unwrap();
        super::link_handler::LinkHandler::export_all_to(dir).unwrap();
    }

    fn committed_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/ipc/bindings")
    }

    fn read_all(dir: &Path) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "ts"))
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            std::fs::read_to_string(e.path()).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn export_bindings_are_current() {
        if std::env::var_os("SWITCHBOARD_UPDATE_BINDINGS").is_some() {
            export_to(&committed_dir());
        }
        let tmp = std::env::temp_dir().join(format!("sb-bindings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        export_to(&tmp);
        let fresh = read_all(&tmp);
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(!fresh.is_empty());
        assert_eq!(
            read_all(&committed_dir()),
            fresh,
            "ui/src/ipc/bindings is stale: run SWITCHBOARD_UPDATE_BINDINGS=1 cargo test -p switchboard-desktop bindings"
        );
    }
}
