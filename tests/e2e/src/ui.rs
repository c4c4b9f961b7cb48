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

/// Saves the window as `artifacts/e2e/{name}`.
pub async fn screenshot(c: &Client, name: &str) -> Result<()> {
    let dir = workspace_root().join("artifacts/e2e");
    std::fs::create_dir_all(&dir)?;
    let png = tokio::time::timeout(WAIT, c.screenshot())
        .await
        .map_err(|_| anyhow::anyhow!("the window took no screenshot ({name}) in {WAIT:?}"))??;
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
