//! WAV files as the audio device of a headless agent or a test: a source that plays a file
//! (any sample rate, 8–32-bit integer or float, any channel count; mixed to mono and resampled
//! to the codec's rate with rubato) and a sink that records 16-bit mono at the codec's rate.

use std::path::Path;

use rubato::{FftFixedIn, Resampler};

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("cannot read the WAV file {path}: {source} — is it a PCM .wav file?")]
    Read { path: String, source: hound::Error },
    #[error("cannot write the WAV file {path}: {source}")]
    Write { path: String, source: hound::Error },
    #[error("cannot resample {path} from {from} Hz to {to} Hz: {detail}")]
    Resample {
        path: String,
        from: u32,
        to: u32,
        detail: String,
    },
}

/// A file's audio at the rate a call needs, played frame by frame.
#[derive(Debug, Clone)]
pub struct WavSource {
    samples: Vec<i16>,
    pos: usize,
    /// Start again at the end (prompts, hold music); otherwise silence after the end.
    pub looped: bool,
}

impl WavSource {
    /// Reads `path` and converts it to mono at `rate` Hz.
    pub fn open(path: &Path, rate: u32) -> Result<Self, WavError> {
        let shown = path.display().to_string();
        let read_err = |source| WavError::Read {
            path: shown.clone(),
            source,
        };
        let mut reader = hound::WavReader::open(path).map_err(read_err)?;
        let spec = reader.spec();
        let channels = usize::from(spec.channels.max(1));
        let interleaved: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader
                .samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(read_err)?,
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
                reader
                    .samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(read_err)?
            }
        };
        let mono: Vec<f32> = interleaved
            .chunks(channels)
            .map(|c| c.iter().sum::<f32>() / c.len() as f32)
            .collect();
        let mono = if spec.sample_rate == rate {
            mono
        } else {
            resample(&mono, spec.sample_rate, rate).map_err(|detail| WavError::Resample {
                path: shown.clone(),
                from: spec.sample_rate,
                to: rate,
                detail,
            })?
        };
        Ok(Self {
            samples: mono
                .iter()
                .map(|&s| (s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
                .collect(),
            pos: 0,
            looped: false,
        })
    }

    /// From samples already at the call's rate.
    pub fn from_samples(samples: Vec<i16>) -> Self {
        Self {
            samples,
            pos: 0,
            looped: false,
        }
    }

    /// Whether the whole file has been played (never, when looped).
    pub fn finished(&self) -> bool {
        !self.looped && self.pos >= self.samples.len()
    }

    /// The next `n` samples (silence past the end).
    pub fn next_frame(&mut self, n: usize) -> Vec<i16> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.pos >= self.samples.len() {
                if self.looped && !self.samples.is_empty() {
                    self.pos = 0;
                } else {
                    out.resize(n, 0);
                    break;
                }
            }
            let take = (n - out.len()).min(self.samples.len() - self.pos);
            out.extend_from_slice(&self.samples[self.pos..self.pos + take]);
            self.pos += take;
        }
        out
    }
}

fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    let chunk = 1024;
    let mut r = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 2, 1)
        .map_err(|e| e.to_string())?;
    let delay = r.output_delay();
    let mut out = Vec::with_capacity(input.len() * to as usize / from as usize + chunk);
    let mut pos = 0;
    while pos + r.input_frames_next() <= input.len() {
        let n = r.input_frames_next();
        let block = r
            .process(&[&input[pos..pos + n]], None)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&block[0]);
        pos += n;
    }
    let rest = &input[pos..];
    // rubato refuses an empty partial block: a file whose length is a whole number of
    // chunks has none.
    if !rest.is_empty() {
        let block = r
            .process_partial(Some(&[rest]), None)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&block[0]);
    }
    // Flush the filter's delay so the end of the file is not cut off.
    let block = r
        .process_partial::<&[f32]>(None, None)
        .map_err(|e| e.to_string())?;
    out.extend_from_slice(&block[0]);
    let expected = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let start = delay.min(out.len());
    let mut out = out.split_off(start);
    out.truncate(expected);
    Ok(out)
}

/// Records what a call heard: 16-bit mono WAV at the call's rate.
pub struct WavSink {
    writer: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
    path: String,
}

impl WavSink {
    pub fn create(path: &Path, rate: u32) -> Result<Self, WavError> {
        let shown = path.display().to_string();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|source| WavError::Write {
            path: shown.clone(),
            source,
        })?;
        Ok(Self {
            writer,
            path: shown,
        })
    }

    pub fn write(&mut self, pcm: &[i16]) -> Result<(), WavError> {
        for &s in pcm {
            self.writer
                .write_sample(s)
                .map_err(|source| WavError::Write {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Writes the header's lengths; call at the end of the call.
    pub fn finish(self) -> Result<(), WavError> {
        let path = self.path;
        self.writer
            .finalize()
            .map_err(|source| WavError::Write { path, source })
    }
}

/// Reads a 16-bit (or other PCM) WAV as mono i16 at its own rate: (samples, rate).
pub fn read_mono(path: &Path) -> Result<(Vec<i16>, u32), WavError> {
    let rate = hound::WavReader::open(path)
        .map_err(|source| WavError::Read {
            path: path.display().to_string(),
            source,
        })?
        .spec()
        .sample_rate;
    let s = WavSource::open(path, rate)?;
    Ok((s.samples, rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone;

    #[test]
    fn a_48k_stereo_file_plays_as_8k_mono_with_its_tone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for s in tone::sine(1000.0, 48000, 10000.0, 0, 48000) {
            w.write_sample(s).unwrap();
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        let mut src = WavSource::open(&path, 8000).unwrap();
        assert!(
            (src.samples.len() as i64 - 8000).abs() <= 1,
            "{}",
            src.samples.len()
        );
        let (wins, loud) = tone::detect(&src.samples, 8000, &[1000.0, 440.0]);
        assert!(wins[0] >= loud - 1 && loud >= 19, "{wins:?} of {loud}");
        let mut n = 0;
        while !src.finished() {
            assert_eq!(src.next_frame(160).len(), 160);
            n += 1;
        }
        assert_eq!(n, 50);
        assert_eq!(src.next_frame(160), vec![0; 160]);
    }

    #[test]
    fn a_file_of_whole_resampler_chunks_converts() {
        // 375 chunks of 1024 samples exactly: no partial block at the end.
        let x: Vec<f32> = (0..1024 * 375)
            .map(|i| (i as f32 * 0.13).sin() * 0.5)
            .collect();
        let out = resample(&x, 48000, 8000).unwrap();
        assert_eq!(out.len(), 1024 * 375 / 6);
    }

    #[test]
    fn the_sink_writes_what_the_source_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.wav");
        let mut sink = WavSink::create(&path, 8000).unwrap();
        let x = tone::sine(440.0, 8000, 5000.0, 0, 800);
        sink.write(&x).unwrap();
        sink.finish().unwrap();
        let (back, rate) = read_mono(&path).unwrap();
        assert_eq!(rate, 8000);
        assert_eq!(back, x);
    }

    #[test]
    fn a_file_that_is_not_wav_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        std::fs::write(&path, b"not a wav").unwrap();
        let e = WavSource::open(&path, 8000).unwrap_err().to_string();
        assert!(e.contains("x.wav") && e.contains("PCM .wav"), "{e}");
    }
}
