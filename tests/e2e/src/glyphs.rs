//! Does the window draw Chinese, or boxes? A check on the window's pixels, not the DOM.
//!
//! Where no font has a character, WebKit draws the primary font's `.notdef` glyph: the same
//! box for every missing character ("tofu"). So [`check_draws_glyphs`] screenshots an element,
//! rotates its ideographs in place (欢迎使用 → 迎使用欢: the same characters, each in another
//! place, so the layout does not move), screenshots it again and restores the text. Real glyphs
//! make the two images differ wherever an ideograph is; boxes make them identical. The verdict
//! is the share of the element's ink that changed ([`changed_ink`]): above
//! [`MIN_CHANGED_INK`] the text draws glyphs. This needs no picture of what tofu looks like
//! on a given system, and no font on the test machine.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fantoccini::Client;

/// The smallest share of an element's ink that must change when its ideographs are rotated.
/// Missing glyphs give exactly 0 (the boxes are the same pixels). Real glyphs give far more, since
/// every ideograph moves and two glyphs have little ink in common: 0.54 for the 中文 button and
/// 0.23 for the home heading (欢迎使用 Switchboard, whose Latin half does not move) under Xvfb.
pub const MIN_CHANGED_INK: f64 = 0.1;

/// A pixel is ink when one of its channels differs from the background's by more than this
/// (of 255): anti-aliased edges count, faint noise does not.
const INK_THRESHOLD: u8 = 48;

/// An 8-bit RGBA image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    /// Row-major RGBA, 4 bytes a pixel.
    pub rgba: Vec<u8>,
}

impl Image {
    /// Decodes a PNG (as WebDriver screenshots are) of any colour type and depth to RGBA8.
    pub fn from_png(bytes: &[u8]) -> Result<Self> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().context("PNG header")?;
        let size = reader
            .output_buffer_size()
            .context("PNG too large to decode")?;
        let mut buf = vec![0; size];
        let info = reader.next_frame(&mut buf).context("PNG data")?;
        buf.truncate(info.buffer_size());
        let rgba = match info.color_type {
            png::ColorType::Rgba => buf,
            png::ColorType::Rgb => buf
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 255])
                .collect(),
            png::ColorType::GrayscaleAlpha => buf
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect(),
            png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g, 255]).collect(),
            png::ColorType::Indexed => bail!("PNG still indexed after expansion"),
        };
        Ok(Self {
            width: info.width,
            height: info.height,
            rgba,
        })
    }

    /// Encodes the image as an RGBA PNG.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.rgba)?;
        writer.finish()?;
        Ok(out)
    }

    /// The part of the image inside the rectangle (pixels; clipped to the image).
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Self {
        let x0 = x.min(self.width);
        let y0 = y.min(self.height);
        let x1 = x.saturating_add(width).min(self.width);
        let y1 = y.saturating_add(height).min(self.height);
        let mut rgba = Vec::with_capacity(((x1 - x0) * (y1 - y0) * 4) as usize);
        for row in y0..y1 {
            let start = ((row * self.width + x0) * 4) as usize;
            rgba.extend_from_slice(&self.rgba[start..start + ((x1 - x0) * 4) as usize]);
        }
        Self {
            width: x1 - x0,
            height: y1 - y0,
            rgba,
        }
    }

    fn pixels(&self) -> impl Iterator<Item = [u8; 4]> + '_ {
        self.rgba.chunks_exact(4).map(|p| [p[0], p[1], p[2], p[3]])
    }

    /// The most common colour: the element's background.
    pub fn background(&self) -> [u8; 4] {
        let mut counts = std::collections::HashMap::new();
        for p in self.pixels() {
            *counts.entry(p).or_insert(0u32) += 1;
        }
        counts
            .into_iter()
            .max_by_key(|&(p, n)| (n, p))
            .map_or([255; 4], |(p, _)| p)
    }
}

fn differs(a: [u8; 4], b: [u8; 4]) -> bool {
    a.iter().zip(b).any(|(&x, y)| x.abs_diff(y) > INK_THRESHOLD)
}

/// What the rotation changed: `ink` pixels of `before` (not its background), `changed` pixels
/// that differ between the two images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InkChange {
    pub ink: usize,
    pub changed: usize,
}

impl InkChange {
    /// `changed / ink`; 0 when there is no ink (nothing drawn at all is not glyphs either).
    pub fn share(&self) -> f64 {
        if self.ink == 0 {
            0.0
        } else {
            self.changed as f64 / self.ink as f64
        }
    }
}

/// Compares two screenshots of the same element; images of different sizes are an error
/// (the element moved or resized: not a fair comparison).
pub fn changed_ink(before: &Image, after: &Image) -> Result<InkChange> {
    if (before.width, before.height) != (after.width, after.height) {
        bail!(
            "the element's screenshots differ in size ({}x{} then {}x{})",
            before.width,
            before.height,
            after.width,
            after.height
        );
    }
    let bg = before.background();
    let ink = before.pixels().filter(|&p| differs(p, bg)).count();
    let changed = before
        .pixels()
        .zip(after.pixels())
        .filter(|&(a, b)| differs(a, b))
        .count();
    Ok(InkChange { ink, changed })
}

/// Rotates the ideographs of the first element matching `arguments[0]` by one place, across
/// its text nodes, keeping the nodes (the UI framework still owns them) and what it needs to put
/// them back in `window.__sbGlyphProbe`. Returns [before, after], or a string saying why not.
const ROTATE_JS: &str = r#"
const el = document.querySelector(arguments[0]);
if (!el) return "no element matches " + arguments[0];
const ideograph = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/u;
const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
const nodes = [];
while (walker.nextNode()) nodes.push(walker.currentNode);
const chars = nodes.map((n) => Array.from(n.data));
const slots = [];
chars.forEach((cs, i) => cs.forEach((ch, j) => { if (ideograph.test(ch)) slots.push([i, j]); }));
const before = slots.map(([i, j]) => chars[i][j]);
if (new Set(before).size < 2) return "fewer than two different ideographs in " + JSON.stringify(el.textContent);
const after = before.slice(1).concat(before.slice(0, 1));
slots.forEach(([i, j], k) => { chars[i][j] = after[k]; });
window.__sbGlyphProbe = { nodes, data: nodes.map((n) => n.data) };
nodes.forEach((n, i) => { n.data = chars[i].join(""); });
return [before.join(""), after.join("")];
"#;

const RESTORE_JS: &str = r#"
const probe = window.__sbGlyphProbe;
if (probe) probe.nodes.forEach((n, i) => { n.data = probe.data[i]; });
delete window.__sbGlyphProbe;
"#;

/// The element's box in the viewport, in device pixels: [left, top, width, height].
const RECT_JS: &str = r#"
const el = document.querySelector(arguments[0]);
if (!el) return null;
const r = el.getBoundingClientRect();
const dpr = window.devicePixelRatio || 1;
return [Math.floor(r.left * dpr), Math.floor(r.top * dpr), Math.ceil(r.width * dpr), Math.ceil(r.height * dpr)];
"#;

/// Calls back after every font the page asked for has loaded and two frames were painted.
const SETTLE_JS: &str = r#"
const done = arguments[arguments.length - 1];
document.fonts.ready.then(() =>
  requestAnimationFrame(() => requestAnimationFrame(() => done(document.fonts.status))));
"#;

/// The verdict on one element: what was rotated and how much of its ink changed.
#[derive(Debug, Clone)]
pub struct GlyphCheck {
    pub before: String,
    pub after: String,
    pub change: InkChange,
}

impl GlyphCheck {
    pub fn draws_glyphs(&self) -> bool {
        self.change.share() > MIN_CHANGED_INK
    }
}

impl std::fmt::Display for GlyphCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rotating {} to {} changed {} of {} ink pixels ({:.3}; glyphs need more than {MIN_CHANGED_INK}, boxes give 0)",
            self.before,
            self.after,
            self.change.changed,
            self.change.ink,
            self.change.share()
        )
    }
}

/// The element `css` as the window shows it: cropped from a screenshot of the window.
/// (WebKitWebDriver's own element screenshot comes back black, so it is not used.)
async fn element_pixels(c: &Client, css: &str) -> Result<Image> {
    c.execute_async(SETTLE_JS, vec![])
        .await
        .context("waiting for fonts and a painted frame")?;
    let rect = c.execute(RECT_JS, vec![css.into()]).await?;
    let rect: Vec<u32> = rect
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_f64())
                .map(|v| v.max(0.0) as u32)
                .collect()
        })
        .unwrap_or_default();
    let [x, y, w, h] = rect[..] else {
        bail!("no element matches {css}");
    };
    let png = crate::ui::window_png(c, crate::ui::WAIT)
        .await
        .context("window screenshot")?
        .context("the window took no screenshot")?;
    let window = Image::from_png(&png)?;
    Ok(window.crop(x, y, w, h))
}

/// Looks at the element `css` as it is and with its ideographs rotated (then restores it),
/// saves both as `{dir}/{name}.png` and `{dir}/{name}-rotated.png`, and compares them.
pub async fn check_draws_glyphs(
    c: &Client,
    css: &str,
    dir: &Path,
    name: &str,
) -> Result<GlyphCheck> {
    let before_img = element_pixels(c, css).await?;
    let rotated = c.execute(ROTATE_JS, vec![css.into()]).await?;
    let (before, after) = match rotated.as_array().map(|a| a.as_slice()) {
        Some([b, a]) => (
            b.as_str().unwrap_or_default().to_owned(),
            a.as_str().unwrap_or_default().to_owned(),
        ),
        _ => bail!("cannot rotate the ideographs of {css}: {rotated}"),
    };
    let after_img = element_pixels(c, css).await;
    c.execute(RESTORE_JS, vec![]).await?;
    let after_img = after_img?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("{name}.png")), before_img.to_png()?)?;
    std::fs::write(dir.join(format!("{name}-rotated.png")), after_img.to_png()?)?;
    let change = changed_ink(&before_img, &after_img)?;
    Ok(GlyphCheck {
        before,
        after,
        change,
    })
}

/// [`check_draws_glyphs`] until it sees glyphs (a web font may still be loading) or `timeout`
/// passes; the error gives the last figures and where the screenshots are.
pub async fn expect_glyphs(
    c: &Client,
    css: &str,
    dir: &Path,
    name: &str,
    timeout: Duration,
) -> Result<GlyphCheck> {
    crate::eventually(
        &format!("{css} to draw Chinese glyphs, not boxes (see {name}*.png)"),
        timeout,
        || async {
            let check = check_draws_glyphs(c, css, dir, name).await?;
            if check.draws_glyphs() {
                Ok(Some(check))
            } else {
                bail!("{check}")
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A white image with black rectangles (x, y, w, h).
    fn image(w: u32, h: u32, rects: &[(u32, u32, u32, u32)]) -> Image {
        let mut rgba = vec![255u8; (w * h * 4) as usize];
        for &(x0, y0, rw, rh) in rects {
            for y in y0..y0 + rh {
                for x in x0..x0 + rw {
                    let i = ((y * w + x) * 4) as usize;
                    rgba[i..i + 3].copy_from_slice(&[0, 0, 0]);
                }
            }
        }
        Image {
            width: w,
            height: h,
            rgba,
        }
    }

    #[test]
    fn a_png_round_trips() {
        let img = image(7, 5, &[(1, 1, 2, 3)]);
        assert_eq!(Image::from_png(&img.to_png().unwrap()).unwrap(), img);
    }

    #[test]
    fn a_crop_keeps_the_pixels_inside_and_clips_at_the_edges() {
        let img = image(10, 8, &[(2, 3, 2, 2)]);
        assert_eq!(img.crop(2, 3, 2, 2), image(2, 2, &[(0, 0, 2, 2)]));
        assert_eq!(img.crop(1, 2, 4, 3), image(4, 3, &[(1, 1, 2, 2)]));
        let edge = img.crop(8, 6, 5, 5);
        assert_eq!((edge.width, edge.height), (2, 2));
        assert_eq!(img.crop(20, 20, 5, 5).rgba.len(), 0);
    }

    #[test]
    fn identical_boxes_change_nothing() {
        // Two tofu boxes, rotated: the same pixels.
        let boxes = image(40, 20, &[(2, 2, 14, 16), (22, 2, 14, 16)]);
        let change = changed_ink(&boxes, &boxes.clone()).unwrap();
        assert!(change.ink > 0);
        assert_eq!(change.changed, 0);
        assert_eq!(change.share(), 0.0);
    }

    #[test]
    fn different_glyphs_change_their_ink() {
        // "Glyphs": a vertical and a horizontal bar, then swapped.
        let a = image(40, 20, &[(8, 2, 3, 16), (22, 9, 14, 3)]);
        let b = image(40, 20, &[(2, 9, 14, 3), (28, 2, 3, 16)]);
        let change = changed_ink(&a, &b).unwrap();
        assert!(change.share() > MIN_CHANGED_INK, "{change:?}");
    }

    #[test]
    fn nothing_drawn_is_not_glyphs() {
        let blank = image(10, 10, &[]);
        assert_eq!(changed_ink(&blank, &blank).unwrap().share(), 0.0);
    }

    #[test]
    fn a_moved_element_is_an_error() {
        assert!(changed_ink(&image(10, 10, &[]), &image(11, 10, &[])).is_err());
    }

    #[test]
    fn the_background_is_the_most_common_colour() {
        let img = image(10, 10, &[(0, 0, 3, 3)]);
        assert_eq!(img.background(), [255; 4]);
    }
}
