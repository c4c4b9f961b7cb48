//! Prompts and music on hold, read once at start from `<dir>/<language>/<id>.wav` and
//! `<dir>/music/hold.wav` (made by `scripts/make-prompts.sh`; see `crates/router/prompts/`).
//! A file that is missing or unreadable is logged once and replaced by a short soft tone, so
//! a caller never waits in silence because a file is absent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchboard_media::wav::WavSource;

use crate::relay::{Clip, CLIP_RATE};

/// The prompts the router plays.
pub const IDS: &[&str] = &[
    "welcome-queue",
    "unknown-number",
    "closed",
    "queue-full",
    "no-agents",
    "invalid-choice",
    "no-input",
    "transferring",
    "transfer-failed",
    "goodbye",
    "position-prefix",
    "position-suffix",
    "wait-prefix",
    "minute",
    "minutes",
    "digit-0",
    "digit-1",
    "digit-2",
    "digit-3",
    "digit-4",
    "digit-5",
    "digit-6",
    "digit-7",
    "digit-8",
    "digit-9",
    "number-10",
    "number-11",
    "number-12",
    "number-13",
    "number-14",
    "number-15",
    "number-16",
    "number-17",
    "number-18",
    "number-19",
    "number-20",
    "callback-offer",
    "callback-confirmed",
    "callback-calling",
    "callback-overflow",
    "not-available",
];

/// The prompts that say `n`: one for 0–20, its digits one by one above.
pub fn number(n: u64) -> Vec<String> {
    match n {
        0..=9 => vec![format!("digit-{n}")],
        10..=20 => vec![format!("number-{n}")],
        _ => n
            .to_string()
            .chars()
            .map(|d| format!("digit-{d}"))
            .collect(),
    }
}

/// Every prompt in every language, and the music.
pub struct Prompts {
    clips: HashMap<(String, String), Arc<Clip>>,
    pub music: Arc<Clip>,
    /// A ringing tone (440 + 480 Hz, 2 s on, 4 s off: the North American ringback), looped
    /// while a colleague's phone rings.
    pub ringback: Arc<Clip>,
}

/// One cycle of the ringback tone at [`CLIP_RATE`].
fn ringback() -> Arc<Clip> {
    let on = 2 * CLIP_RATE as usize;
    let a = switchboard_media::tone::sine(440.0, CLIP_RATE, 2000.0, 0, on);
    let b = switchboard_media::tone::sine(480.0, CLIP_RATE, 2000.0, 0, on);
    let mut samples: Vec<i16> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| x.saturating_add(*y))
        .collect();
    samples.extend(std::iter::repeat_n(0, 4 * CLIP_RATE as usize));
    Arc::new(Clip {
        name: "ringback".into(),
        samples,
    })
}

/// The prompts shipped with the router's sources.
pub fn default_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts"))
}

fn stand_in(name: &str) -> Arc<Clip> {
    // Two soft notes and a pause: clearly "something is playing", never silence.
    let mut samples = switchboard_media::tone::sine(440.0, CLIP_RATE, 3000.0, 0, 4000);
    samples.extend(switchboard_media::tone::sine(
        554.37, CLIP_RATE, 3000.0, 0, 4000,
    ));
    samples.extend(std::iter::repeat_n(0, 8000));
    Arc::new(Clip {
        name: format!("{name} (stand-in tone)"),
        samples,
    })
}

/// The clip in `path`; `None` (and why, in `missing`) when it cannot be read.
fn read(path: &Path, name: &str, missing: &mut Vec<String>) -> Option<Arc<Clip>> {
    match WavSource::open(path, CLIP_RATE) {
        Ok(mut w) => {
            let mut samples = Vec::new();
            while !w.finished() {
                samples.extend(w.next_frame(CLIP_RATE as usize / 10));
            }
            Some(Arc::new(Clip {
                name: name.to_owned(),
                samples,
            }))
        }
        Err(e) => {
            missing.push(format!("{name}: {e}"));
            None
        }
    }
}

impl Prompts {
    /// Reads every prompt of `languages` from `dir`, and the `extra` ones the configuration
    /// names (attendants' greetings).
    pub fn load(dir: &Path, languages: &[&str], extra: &[String]) -> Self {
        let mut missing = Vec::new();
        let ids = IDS.iter().copied().chain(extra.iter().map(String::as_str));
        let ids: std::collections::BTreeSet<&str> = ids.collect();
        let music = read(&dir.join("music/hold.wav"), "music/hold", &mut missing)
            .unwrap_or_else(|| stand_in("music/hold"));
        let mut p = Self {
            clips: HashMap::new(),
            music,
            ringback: ringback(),
        };
        p.read_all(dir, languages, ids, &mut missing);
        if !missing.is_empty() {
            tracing::warn!(
                dir = %dir.display(),
                missing = missing.len(),
                first = %missing[0],
                "some prompts could not be read; English (or a tone) plays in their place — run scripts/make-prompts.sh or set [sip] prompts_dir"
            );
        }
        p
    }

    fn read_all<'a>(
        &mut self,
        dir: &Path,
        languages: &[&str],
        ids: impl IntoIterator<Item = &'a str> + Clone,
        missing: &mut Vec<String>,
    ) {
        for lang in languages {
            for id in ids.clone() {
                let path = dir.join(lang).join(format!("{id}.wav"));
                if let Some(clip) = read(&path, &format!("{lang}/{id}"), missing) {
                    self.clips.insert(((*lang).to_owned(), id.to_owned()), clip);
                }
            }
        }
    }

    /// Whether prompt `id` was read (in any language).
    pub fn has(&self, id: &str) -> bool {
        self.clips.keys().any(|(_, i)| i == id)
    }

    /// Reads prompts `ids` of `languages` from `dir` (greetings of attendants added through
    /// the API), as [`Self::load`] does.
    pub fn add(&mut self, dir: &Path, languages: &[&str], ids: &[String]) {
        let mut missing = Vec::new();
        self.read_all(dir, languages, ids.iter().map(String::as_str), &mut missing);
        if let Some(first) = missing.first() {
            tracing::debug!(dir = %dir.display(), missing = missing.len(), %first, "a greeting is missing in some languages");
        }
    }

    /// Prompt `id` in `language` (English when that language lacks it).
    pub fn get(&self, language: &str, id: &str) -> Arc<Clip> {
        self.clips
            .get(&(language.to_owned(), id.to_owned()))
            .or_else(|| self.clips.get(&("en".to_owned(), id.to_owned())))
            .cloned()
            .unwrap_or_else(|| stand_in(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_speaks_every_prompt_the_router_plays_in_every_language() {
        let table = std::fs::read_to_string(default_dir().join("prompts.tsv")).unwrap();
        let rows: Vec<Vec<&str>> = table
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.split('\t').collect())
            .collect();
        for id in IDS.iter().chain(&["demo-main-menu"]) {
            let row = rows.iter().find(|r| r[0] == *id);
            let row = row.unwrap_or_else(|| panic!("{id} is missing from prompts.tsv"));
            assert_eq!(row.len(), 1 + crate::center::LANGUAGES.len(), "{id}");
            assert!(row.iter().all(|c| !c.trim().is_empty()), "{id}");
        }
    }

    #[test]
    fn a_greeting_set_later_is_read_from_the_prompts_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("en")).unwrap();
        let mut w =
            switchboard_media::wav::WavSink::create(&dir.path().join("en/sales.wav"), CLIP_RATE)
                .unwrap();
        w.write(&vec![1000i16; CLIP_RATE as usize / 2]).unwrap();
        w.finish().unwrap();
        let mut p = Prompts::load(dir.path(), &["en", "zh-CN"], &[]);
        assert!(!p.has("sales"));
        // Not read yet: a stand-in tone, not the file.
        assert!(p.get("zh-CN", "sales").samples.iter().any(|s| *s != 1000));
        p.add(dir.path(), &["en", "zh-CN"], &["sales".to_owned()]);
        assert!(p.has("sales"));
        // Chinese callers hear the English greeting where there is no Chinese one.
        let clip = p.get("zh-CN", "sales");
        assert_eq!(clip.samples.len(), CLIP_RATE as usize / 2);
        assert!(clip.samples.iter().all(|s| *s == 1000));
    }

    #[test]
    fn numbers_are_said_whole_to_twenty_then_digit_by_digit() {
        assert_eq!(number(7), ["digit-7"]);
        assert_eq!(number(13), ["number-13"]);
        assert_eq!(number(42), ["digit-4", "digit-2"]);
        for n in 0..=120 {
            assert!(number(n).iter().all(|id| IDS.contains(&id.as_str())), "{n}");
        }
    }
}
