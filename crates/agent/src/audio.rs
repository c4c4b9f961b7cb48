//! Sound devices as the front ends see them: the lists for Settings → Audio, the microphone
//! test's live level, the test sound and the test ring. The work is done by
//! `switchboard_media::device` and `switchboard_media::check`; this module gives it shapes the
//! UI can take (and that ts-rs turns into TypeScript) and errors that say what to do.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_media::check::{self, MicTest, Player};
use switchboard_media::device::{self, DeviceEvent};

/// One device as Settings lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct AudioDevice {
    /// The name to choose it by (as the system gives it).
    pub name: String,
    /// The system's default for its direction.
    pub is_default: bool,
    pub channels: u16,
    pub sample_rate: u32,
}

/// The devices the system offers now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct AudioDevices {
    pub inputs: Vec<AudioDevice>,
    pub outputs: Vec<AudioDevice>,
}

/// What happened to a device, for a person (the UI words it by `kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct DeviceNotice {
    /// `opened`, `fallback` (the chosen device is missing: the default is used), `lost` (it
    /// failed or was unplugged: reopening), `unavailable` (none can be opened).
    pub kind: String,
    /// `input` or `output`.
    pub direction: String,
    /// The device now in use, when there is one.
    pub device: Option<String>,
    /// The device that was asked for, on a fallback.
    pub wanted: Option<String>,
    /// The system's words, when something failed.
    pub reason: Option<String>,
}

impl From<&DeviceEvent> for DeviceNotice {
    fn from(e: &DeviceEvent) -> Self {
        Self::from(&crate::call::DeviceReport::from(e))
    }
}

impl From<&crate::call::DeviceReport> for DeviceNotice {
    fn from(r: &crate::call::DeviceReport) -> Self {
        use crate::call::DeviceReport;
        let notice = |kind: &str, direction: &str| Self {
            kind: kind.into(),
            direction: direction.into(),
            device: None,
            wanted: None,
            reason: None,
        };
        match r {
            DeviceReport::Opened {
                direction, name, ..
            } => Self {
                device: Some(name.clone()),
                ..notice("opened", direction)
            },
            DeviceReport::Fallback {
                direction,
                wanted,
                name,
                reason,
            } => Self {
                device: Some(name.clone()),
                wanted: Some(wanted.clone()),
                reason: Some(reason.clone()),
                ..notice("fallback", direction)
            },
            DeviceReport::Lost {
                direction,
                name,
                reason,
            } => Self {
                wanted: Some(name.clone()),
                reason: Some(reason.clone()),
                ..notice("lost", direction)
            },
            DeviceReport::Unavailable { direction, reason } => Self {
                reason: Some(reason.clone()),
                ..notice("unavailable", direction)
            },
        }
    }
}

/// The microphone test's reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct MicLevel {
    /// Which test this reading belongs to (a new test gets a new number).
    pub test: u32,
    /// Level of the latest 20 ms, dBFS (−120 is silence, 0 full scale).
    pub level_db: f32,
    /// The loudest 20 ms since the last reading, dBFS.
    pub peak_db: f32,
    /// Device events since the last reading.
    pub notices: Vec<DeviceNotice>,
}

/// Which sound to test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum TestSound {
    /// The three-note chime, on the call device.
    Chime,
    /// One cycle of the ring, on the ringing device.
    Ring,
}

/// How a test sound went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct SoundTestResult {
    /// The device it played on.
    pub device: Option<String>,
    pub notices: Vec<DeviceNotice>,
}

/// Why a sound device could not be listed or used.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot list the sound devices: {0} — check that the sound system (PulseAudio, PipeWire, Core Audio, WASAPI) is running")]
    List(String),
    #[error("no {direction} device can be opened: {reason} — plug in a headset or choose another device in Settings → Audio")]
    Unavailable { direction: String, reason: String },
}

impl AudioError {
    /// A stable code for the UI.
    pub fn code(&self) -> &'static str {
        match self {
            Self::List(_) => "sound_devices_unlisted",
            Self::Unavailable { .. } => "sound_device_unavailable",
        }
    }
}

fn listed(d: device::DeviceInfo) -> AudioDevice {
    AudioDevice {
        name: d.name,
        is_default: d.default,
        channels: d.channels,
        sample_rate: d.sample_rate,
    }
}

/// The input and output devices now.
pub fn devices() -> Result<AudioDevices, AudioError> {
    let l = device::list().map_err(|e| AudioError::List(e.to_string()))?;
    Ok(AudioDevices {
        inputs: l.inputs.into_iter().map(listed).collect(),
        outputs: l.outputs.into_iter().map(listed).collect(),
    })
}

/// Plays a test sound once on `device` (else the default) at `volume` % and waits for it to
/// end. Blocking (about 1.5 s for the chime, 1.3 s for a ring's bursts): call it off the UI
/// thread.
pub fn play_test_sound(
    sound: TestSound,
    device: Option<String>,
    volume: u8,
) -> Result<SoundTestResult, AudioError> {
    let clip = match sound {
        TestSound::Chime => check::test_sound(),
        // The bursts without the long pause.
        TestSound::Ring => check::ring_cycle()[..48_000 * 12 / 10].to_vec(),
    };
    let player = Player::start(device, clip, f32::from(volume.min(100)) / 100.0, false);
    let events = player.wait(Duration::from_secs(8));
    let notices: Vec<DeviceNotice> = events.iter().map(DeviceNotice::from).collect();
    let opened = events.iter().rev().find_map(|e| match e {
        DeviceEvent::Opened { name, .. } => Some(name.clone()),
        _ => None,
    });
    if opened.is_none() {
        if let Some(DeviceEvent::Unavailable { reason, .. }) = events
            .iter()
            .find(|e| matches!(e, DeviceEvent::Unavailable { .. }))
        {
            return Err(AudioError::Unavailable {
                direction: "output".into(),
                reason: reason.clone(),
            });
        }
    }
    Ok(SoundTestResult {
        device: opened,
        notices,
    })
}

/// The microphone test, at most one at a time (a new one replaces the old).
#[derive(Debug, Default)]
pub struct MicTests {
    current: Mutex<Option<(u32, MicTest)>>,
    next: std::sync::atomic::AtomicU32,
}

impl MicTests {
    /// Opens `device` (else the default) and starts measuring; returns the test's number.
    pub fn start(&self, device: Option<String>) -> u32 {
        let id = self
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(1);
        let test = MicTest::start(device);
        let old = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace((id, test));
        // The old device is closed outside the lock (joining its thread takes a moment).
        drop(old);
        id
    }

    /// A reading of test `id`, or `None` once it was stopped or replaced.
    pub fn level(&self, id: u32) -> Option<MicLevel> {
        let guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let (current, test) = guard.as_ref()?;
        (*current == id).then(|| MicLevel {
            test: id,
            level_db: test.level(),
            peak_db: test.take_peak(),
            notices: std::iter::from_fn(|| test.try_event())
                .map(|e| DeviceNotice::from(&e))
                .collect(),
        })
    }

    /// Stops the test (any, or only `id`) and closes its device.
    pub fn stop(&self, id: Option<u32>) {
        let old = {
            let mut guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
            match (guard.as_ref(), id) {
                (Some((current, _)), Some(id)) if *current != id => None,
                _ => guard.take(),
            }
        };
        drop(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_media::device::Direction;

    #[test]
    fn device_events_become_notices() {
        let n = DeviceNotice::from(&DeviceEvent::Fallback {
            kind: Direction::Input,
            wanted: "Jabra".into(),
            using: "default".into(),
            reason: "no input device is named \"Jabra\"".into(),
        });
        assert_eq!(n.kind, "fallback");
        assert_eq!(n.direction, "input");
        assert_eq!(n.device.as_deref(), Some("default"));
        assert_eq!(n.wanted.as_deref(), Some("Jabra"));
        let n = DeviceNotice::from(&DeviceEvent::Unavailable {
            kind: Direction::Output,
            reason: "the system has no output device".into(),
        });
        assert_eq!((n.kind.as_str(), n.device), ("unavailable", None));
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = AudioError::Unavailable {
            direction: "output".into(),
            reason: "the system has no output device".into(),
        };
        assert_eq!(e.code(), "sound_device_unavailable");
        assert!(e.to_string().contains("Settings → Audio"), "{e}");
    }

    #[test]
    fn a_stopped_or_replaced_mic_test_gives_no_readings() {
        // Opening fails quietly without a sound system; the bookkeeping is what is tested.
        let tests = MicTests::default();
        let a = tests.start(Some("no such microphone".into()));
        assert!(tests.level(a).is_some());
        let b = tests.start(None);
        assert_ne!(a, b);
        assert!(tests.level(a).is_none(), "replaced");
        tests.stop(Some(a));
        assert!(
            tests.level(b).is_some(),
            "stopping an old test leaves the new one"
        );
        tests.stop(None);
        assert!(tests.level(b).is_none());
    }
}
