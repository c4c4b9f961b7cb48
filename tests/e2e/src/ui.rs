//! Steps in the real window: find by CSS, click when clickable, wait for a text or an
//! attribute, save a screenshot to `artifacts/e2e/`.

use std::time::Duration;

use anyhow::{bail, Result};
use fantoccini::{Client, Locator};

use crate::{eventually, workspace_root};

/// How long a step waits for the window.
pub const WAIT: Duration = Duration::from_secs(45);

pub fn css(s: &str) -> Locator<'_> {
    Locator::Css(s)
}

/// Ends the WebDriver session (the driver closes the app), giving up after 15 s: a window
/// that stopped answering must not hold the test, whose result is what matters.
pub async fn end_session(c: Client) {
    if tokio::time::timeout(Duration::from_secs(15), c.close())
        .await
        .is_err()
    {
        eprintln!("the WebDriver session did not end within 15 s; left to the driver's exit");
    }
}

/// While a screenshot is taken, a dot of 1 px in the corner, all but transparent, changes
/// every 50 ms. Drawing without GPU compositing (WebKitGTK 2.50), WebDriver's screenshot
/// waits for the page's next repaint, which a page where nothing moves never makes; the
/// window itself is painted (docs/decisions.md).
const NUDGE_START: &str = "
    const d = document.createElement('div');
    d.id = 'sb-e2e-nudge';
    d.style.cssText = 'position:fixed;left:0;top:0;width:1px;height:1px;pointer-events:none;z-index:2147483647;background:rgba(0,0,0,0.01)';
    document.body.appendChild(d);
    let n = 0;
    window.sbE2eNudge = setInterval(() => { n ^= 1; d.style.opacity = n ? '0.5' : '1'; }, 50);
";
const NUDGE_STOP: &str = "
    clearInterval(window.sbE2eNudge);
    document.getElementById('sb-e2e-nudge')?.remove();
";

/// The window as a PNG (WebDriver's screenshot, with the dot above changing meanwhile);
/// `None` when it did not come within `within`.
pub async fn window_png(c: &Client, within: Duration) -> Result<Option<Vec<u8>>> {
    c.execute(NUDGE_START, vec![]).await?;
    let png = tokio::time::timeout(within, c.screenshot()).await;
    let _ = c.execute(NUDGE_STOP, vec![]).await;
    match png {
        Ok(png) => Ok(Some(png?)),
        Err(_) => Ok(None),
    }
}

/// Saves the window as `artifacts/e2e/{name}`.
pub async fn screenshot(c: &Client, name: &str) -> Result<()> {
    let dir = workspace_root().join("artifacts/e2e");
    std::fs::create_dir_all(&dir)?;
    let Some(png) = window_png(c, WAIT).await? else {
        bail!("the window took no screenshot ({name}) in {WAIT:?}");
    };
    std::fs::write(dir.join(name), png)?;
    Ok(())
}

/// Waits for `selector`'s text to contain `want`.
pub async fn wait_text(c: &Client, selector: &str, want: &str) -> Result<()> {
    eventually(&format!("{selector} to show {want:?}"), WAIT, || async {
        let text = c.find(css(selector)).await?.text().await?;
        if text.contains(want) {
            Ok(Some(()))
        } else {
            bail!("{selector} shows {text:?}")
        }
    })
    .await
}

/// Reads a clock shown as `m:ss` (or `h:mm:ss`) in seconds.
fn clock_secs(text: &str) -> Option<u64> {
    text.trim()
        .split(':')
        .try_fold(0u64, |acc, part| Some(acc * 60 + part.parse::<u64>().ok()?))
}

/// Waits for the clock at `selector` (`m:ss`) to show at least `secs` seconds. Not an exact
/// figure: a step before it that took a few seconds on a slow machine would have let the
/// clock run past it (CI saw "0:46" while waiting for "0:02").
pub async fn wait_clock(c: &Client, selector: &str, secs: u64) -> Result<()> {
    eventually(&format!("{selector} to reach {secs} s"), WAIT, || async {
        let text = c.find(css(selector)).await?.text().await?;
        match clock_secs(&text) {
            Some(shown) if shown >= secs => Ok(Some(())),
            _ => bail!("{selector} shows {text:?}"),
        }
    })
    .await
}

/// Waits for `selector`'s `attr` to equal `want`.
pub async fn wait_attr(c: &Client, selector: &str, attr: &str, want: &str) -> Result<()> {
    eventually(&format!("{selector} [{attr}={want}]"), WAIT, || async {
        let v = c.find(css(selector)).await?.attr(attr).await?;
        if v.as_deref() == Some(want) {
            Ok(Some(()))
        } else {
            bail!("{selector} has {attr}={v:?}")
        }
    })
    .await
}

/// The `title` (tooltip) of the element at `selector`, or nothing.
pub async fn title_of(c: &Client, selector: &str) -> Result<String> {
    Ok(c.find(css(selector))
        .await?
        .attr("title")
        .await?
        .unwrap_or_default())
}

/// The `value` of the form field at `selector` (what a `<select>` has chosen, what an
/// `<input>` holds).
pub async fn value_of(c: &Client, selector: &str) -> Result<Option<String>> {
    Ok(c.find(css(selector)).await?.prop("value").await?)
}

/// Waits for the form field at `selector` to hold `want`.
pub async fn wait_value(c: &Client, selector: &str, want: &str) -> Result<()> {
    eventually(&format!("{selector} = {want}"), WAIT, || async {
        let v = value_of(c, selector).await?;
        if v.as_deref() == Some(want) {
            Ok(Some(()))
        } else {
            bail!("{selector} holds {v:?}")
        }
    })
    .await
}

/// Picks `value` in the `<select>` at `selector`.
pub async fn choose(c: &Client, selector: &str, value: &str) -> Result<()> {
    let option = format!(r#"{selector} option[value="{value}"]"#);
    click(c, &option).await
}

pub async fn click(c: &Client, selector: &str) -> Result<()> {
    eventually(&format!("{selector} to be clickable"), WAIT, || async {
        let e = c.find(css(selector)).await?;
        // Into the middle of the view first: an element out of view, or half under the status
        // bar, WebKit's driver neither scrolls to nor clicks.
        c.execute(
            "arguments[0].scrollIntoView({block: 'center'})",
            vec![serde_json::to_value(&e)?],
        )
        .await?;
        e.click().await?;
        Ok(Some(()))
    })
    .await
}

/// Presses Ctrl+Shift+`key` with the focus on the element at `selector` (the window's
/// shortcuts listen on the whole window): WebDriver keeps the modifiers down until its NULL
/// key.
pub async fn shortcut(c: &Client, selector: &str, key: char) -> Result<()> {
    eventually(
        &format!("{selector} to take Ctrl+Shift+{key}"),
        WAIT,
        || async {
            let e = c.find(css(selector)).await?;
            e.send_keys(&format!("\u{E009}\u{E008}{key}\u{E000}"))
                .await?;
            Ok(Some(()))
        },
    )
    .await
}

/// Waits until nothing matches `selector`.
pub async fn gone(c: &Client, selector: &str) -> Result<()> {
    eventually(&format!("{selector} to go"), WAIT, || async {
        Ok(c.find_all(css(selector)).await?.is_empty().then_some(()))
    })
    .await
}

/// Replaces the text of the input at `selector` with `text`.
pub async fn type_into(c: &Client, selector: &str, text: &str) -> Result<()> {
    eventually(&format!("{selector} to take {text:?}"), WAIT, || async {
        let e = c.find(css(selector)).await?;
        e.clear().await?;
        e.send_keys(text).await?;
        Ok(Some(()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::clock_secs;

    #[test]
    fn reads_the_call_clock() {
        assert_eq!(clock_secs("0:02"), Some(2));
        assert_eq!(clock_secs(" 1:05 "), Some(65));
        assert_eq!(clock_secs("1:00:01"), Some(3601));
        assert_eq!(clock_secs(""), None);
        assert_eq!(clock_secs("0:x"), None);
    }
}
