//! Settings → Links: whether this app is the one the OS opens `tel:`, `sip:` and `sips:` links
//! with, and making it so (or not) at the person's request — never by itself at start, since
//! another app (Teams, a browser's softphone) may be the one they chose.
//!
//! The deep-link plugin does the OS's part: on Linux a `<binary>-handler.desktop` file in the
//! data directory's `applications` and `xdg-mime default` (the freedesktop.org way every
//! desktop reads), on Windows the user's `Software\Classes` keys. macOS takes the schemes from
//! the installed bundle's Info.plist, and the default app is chosen in the system's settings,
//! so there is nothing to change from the app. The bundles declare the schemes too
//! (`plugins.deep-link` in `tauri.conf.json`): installing one offers the app for them.

use serde::Serialize;

use crate::IpcError;

/// The schemes the app opens (`plugins.deep-link.desktop.schemes` in `tauri.conf.json`).
pub const SCHEMES: [&str; 3] = ["tel", "sip", "sips"];

/// Whether the app opens `tel:`, `sip:` and `sips:` links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct LinkHandler {
    /// The app can make itself the handler here (Linux, Windows); on macOS the system's
    /// settings choose it.
    pub can_change: bool,
    /// The schemes of [`SCHEMES`] this app opens now.
    pub schemes: Vec<String>,
}

/// The app's `.desktop` file for links on Linux, as the deep-link plugin names it.
#[cfg(target_os = "linux")]
fn handler_file() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    Some(format!(
        "{}-handler.desktop",
        exe.file_name()?.to_string_lossy()
    ))
}

/// The default application `mimeapps` (the text of a freedesktop.org `mimeapps.list`) names
/// first for `scheme`'s links, if any.
pub fn default_in_mimeapps(mimeapps: &str, scheme: &str) -> Option<String> {
    let key = format!("x-scheme-handler/{scheme}");
    let mut in_defaults = false;
    for line in mimeapps.lines().map(str::trim) {
        if line.starts_with('[') {
            in_defaults = line == "[Default Applications]";
        } else if in_defaults {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    return v
                        .split(';')
                        .map(str::trim)
                        .find(|d| !d.is_empty())
                        .map(str::to_owned);
                }
            }
        }
    }
    None
}

/// Whether the app opens `scheme`'s links. The plugin asks `xdg-mime`; xdg-utils 1.1 (Debian
/// 12) answers nothing for a handler whose `Exec` is quoted, as the plugin writes it, so on
/// Linux the user's `mimeapps.list`, which `xdg-mime default` writes, is read too.
fn opens(app: &tauri::AppHandle, scheme: &str) -> bool {
    use tauri_plugin_deep_link::DeepLinkExt;
    if app.deep_link().is_registered(scheme).unwrap_or(false) {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        use tauri::Manager;
        let Ok(config) = app.path().config_dir() else {
            return false;
        };
        let mimeapps = std::fs::read_to_string(config.join("mimeapps.list")).unwrap_or_default();
        let ours = handler_file();
        ours.is_some() && default_in_mimeapps(&mimeapps, scheme) == ours
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Where the app stands for links now.
pub fn status(app: &tauri::AppHandle) -> LinkHandler {
    let can_change = cfg!(any(target_os = "linux", windows));
    LinkHandler {
        can_change,
        schemes: if can_change {
            SCHEMES
                .iter()
                .filter(|s| opens(app, s))
                .map(|s| (*s).to_owned())
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// Makes the app the handler of every scheme of [`SCHEMES`] (`on`), or stops being it.
pub fn set(app: &tauri::AppHandle, on: bool) -> Result<LinkHandler, IpcError> {
    use tauri_plugin_deep_link::DeepLinkExt;
    if !cfg!(any(target_os = "linux", windows)) {
        return Err(IpcError {
            code: "link_handler_system".into(),
            message:
                "On this system the app for tel: and sip: links is chosen in the system's settings."
                    .into(),
        });
    }
    for scheme in SCHEMES {
        let done = if on {
            app.deep_link().register(scheme)
        } else {
            app.deep_link().unregister(scheme)
        };
        if let Err(e) = done {
            tracing::warn!(scheme, on, error = %e, "changing the app for links failed");
            return Err(IpcError {
                code: "link_handler_failed".into(),
                message: format!(
                    "Could not change the app for {scheme}: links: {e} — on Linux this needs xdg-utils (xdg-mime) installed."
                ),
            });
        }
    }
    tracing::info!(on, "the app for tel: and sip: links changed");
    Ok(status(app))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_for_a_scheme_is_read_from_the_default_applications_only() {
        let list = "\n[Added Associations]\nx-scheme-handler/tel=other.desktop;\n\n\
                    [Default Applications]\ntext/html=firefox.desktop\n\
                    x-scheme-handler/tel = switchboard-desktop-handler.desktop;other.desktop;\n\
                    x-scheme-handler/sipx=nope.desktop\n";
        assert_eq!(
            default_in_mimeapps(list, "tel").as_deref(),
            Some("switchboard-desktop-handler.desktop")
        );
        // `sip` is not `sipx`, and a section other than the defaults does not count.
        assert_eq!(default_in_mimeapps(list, "sip"), None);
        assert_eq!(
            default_in_mimeapps(
                "[Added Associations]\nx-scheme-handler/sip=a.desktop\n",
                "sip"
            ),
            None
        );
        assert_eq!(default_in_mimeapps("", "tel"), None);
        assert_eq!(
            default_in_mimeapps("[Default Applications]\nx-scheme-handler/tel=;\n", "tel"),
            None
        );
    }
}
