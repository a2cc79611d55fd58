//! Audio in: WAV and Ogg/Opus files, Opus packets from the bots, all turned into 16 kHz mono f32
//! (what every speech engine here takes). Buffers are zeroized when dropped; nothing is written
//! anywhere. Bad input is an [`AudioError`], never a panic.

use rubato::Resampler as _;
use zeroize::Zeroizing;

/// The engines' sample rate.
pub const RATE: u32 = 16_000;
/// Opus always decodes at 48 kHz here.
pub const OPUS_RATE: u32 = 48_000;
/// 20 ms at 48 kHz: the largest Opus frame is 120 ms = 5760 samples.
const MAX_OPUS_SAMPLES: usize = 5760;
/// Refuse files longer than this (a day of audio would not fit in memory as f32 anyway).
pub const MAX_SECONDS: u64 = 6 * 3600;

/// 16 kHz mono samples in [-1, 1], zeroized on drop.
pub type Pcm = Zeroizing<Vec<f32>>;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("empty audio: the file has no samples")]
    Empty,
    #[error("unrecognised audio format (expected WAV or Ogg/Opus)")]
    UnknownFormat,
    #[error("bad WAV file: {0}")]
    Wav(String),
    #[error("bad Ogg/Opus file: {0}")]
    Ogg(String),
    #[error("corrupt Opus packet: {0}")]
    Opus(String),
    #[error("unsupported sample rate {0} Hz (8000..=192000)")]
    Rate(u32),
    #[error("unsupported channel count {0}")]
    Channels(u16),
    #[error("audio longer than {MAX_SECONDS} s")]
    TooLong,
    #[error("resampler: {0}")]
    Resample(String),
}

/// Decodes a WAV or Ogg/Opus file held in memory to 16 kHz mono.
pub fn decode_file(bytes: &[u8]) -> Result<Pcm, AudioError> {
    if bytes.starts_with(b"RIFF") || bytes.starts_with(b"RIFX") {
        decode_wav(bytes)
    } else if bytes.starts_with(b"OggS") {
        decode_ogg_opus(bytes)
    } else if bytes.is_empty() {
        Err(AudioError::Empty)
    } else {
        Err(AudioError::UnknownFormat)
    }
}

fn check_rate(rate: u32) -> Result<(), AudioError> {
    if (8_000..=192_000).contains(&rate) {
        Ok(())
    } else {
        Err(AudioError::Rate(rate))
    }
}

pub fn decode_wav(bytes: &[u8]) -> Result<Pcm, AudioError> {
    let r = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| AudioError::Wav(e.to_string()))?;
    let spec = r.spec();
    check_rate(spec.sample_rate)?;
    if spec.channels == 0 || spec.channels > 8 {
        return Err(AudioError::Channels(spec.channels));
    }
    let frames = r.duration() as u64;
    if frames / spec.sample_rate as u64 > MAX_SECONDS {
        return Err(AudioError::TooLong);
    }
    let ch = spec.channels as usize;
    let mut interleaved: Zeroizing<Vec<f32>> = Zeroizing::new(Vec::with_capacity(
        (frames as usize).saturating_mul(ch).min(1 << 28),
    ));
    let err = |e: hound::Error| AudioError::Wav(format!("truncated or corrupt data: {e}"));
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for s in r.into_samples::<f32>() {
                interleaved.push(s.map_err(err)?.clamp(-1.0, 1.0));
            }
        }
        hound::SampleFormat::Int => {
            if !(8..=32).contains(&spec.bits_per_sample) {
                return Err(AudioError::Wav(format!(
                    "{} bits per sample",
                    spec.bits_per_sample
                )));
            }
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            for s in r.into_samples::<i32>() {
                interleaved.push(s.map_err(err)? as f32 * scale);
            }
        }
    }
    let mono = downmix(&interleaved, ch);
    to_16k(&mono, spec.sample_rate)
}

fn downmix(interleaved: &[f32], ch: usize) -> Pcm {
    if ch <= 1 {
        return Zeroizing::new(interleaved.to_vec());
    }
    Zeroizing::new(
        interleaved
            .chunks_exact(ch)
            .map(|f| f.iter().sum::<f32>() / ch as f32)
            .collect(),
    )
}

/// Decodes an Ogg/Opus file (RFC 7845): OpusHead, OpusTags, then audio packets.
pub fn decode_ogg_opus(bytes: &[u8]) -> Result<Pcm, AudioError> {
    let mut rd = ogg::PacketReader::new(std::io::Cursor::new(bytes));
    let next = |rd: &mut ogg::PacketReader<_>| {
        rd.read_packet()
            .map_err(|e| AudioError::Ogg(format!("truncated or corrupt: {e}")))
    };
    let head = next(&mut rd)?.ok_or(AudioError::Empty)?;
    let d = &head.data;
    if d.len() < 19 || &d[..8] != b"OpusHead" {
        return Err(AudioError::Ogg(
            "the first packet is not an OpusHead".into(),
        ));
    }
    let channels = d[9];
    let pre_skip = u16::from_le_bytes([d[10], d[11]]) as usize;
    if channels == 0 || channels > 2 {
        return Err(AudioError::Channels(channels as u16));
    }
    let tags = next(&mut rd)?.ok_or(AudioError::Empty)?;
    if !tags.data.starts_with(b"OpusTags") {
        return Err(AudioError::Ogg("the second packet is not OpusTags".into()));
    }
    let opus_ch = if channels == 2 {
        opus::Channels::Stereo
    } else {
        opus::Channels::Mono
    };
    let mut dec =
        opus::Decoder::new(OPUS_RATE, opus_ch).map_err(|e| AudioError::Opus(e.to_string()))?;
    let mut out: Pcm = Zeroizing::new(Vec::new());
    let mut buf = Zeroizing::new(vec![0f32; MAX_OPUS_SAMPLES * channels as usize]);
    while let Some(p) = next(&mut rd)? {
        let n = dec
            .decode_float(&p.data, &mut buf, false)
            .map_err(|e| AudioError::Opus(e.to_string()))?;
        let frame = downmix(&buf[..n * channels as usize], channels as usize);
        out.extend_from_slice(&frame);
        if out.len() as u64 / OPUS_RATE as u64 > MAX_SECONDS {
            return Err(AudioError::TooLong);
        }
    }
    let skip = pre_skip.min(out.len());
    let trimmed = Zeroizing::new(out[skip..].to_vec());
    to_16k(&trimmed, OPUS_RATE)
}

/// Resamples a whole buffer to 16 kHz (rubato's FFT resampler; the output is aligned with the
/// input: the resampler's delay is removed).
pub fn to_16k(input: &[f32], rate: u32) -> Result<Pcm, AudioError> {
    check_rate(rate)?;
    if input.is_empty() {
        return Err(AudioError::Empty);
    }
    if rate == RATE {
        return Ok(Zeroizing::new(input.to_vec()));
    }
    let mut s = StreamResampler::new(rate)?;
    let mut out = s.push(input)?;
    out.extend_from_slice(&s.finish()?);
    Ok(out)
}

/// A streaming resampler to 16 kHz: push any number of samples, get what is ready.
pub struct StreamResampler {
    r: Option<rubato::FftFixedIn<f32>>,
    pending: Zeroizing<Vec<f32>>,
    /// Output samples still to drop (the resampler's delay).
    delay: usize,
    ratio: f64,
    taken: u64,
    given: u64,
}

impl StreamResampler {
    pub fn new(rate: u32) -> Result<Self, AudioError> {
        check_rate(rate)?;
        if rate == RATE {
            return Ok(StreamResampler {
                r: None,
                pending: Zeroizing::new(Vec::new()),
                delay: 0,
                ratio: 1.0,
                taken: 0,
                given: 0,
            });
        }
        // 20 ms chunks at the input rate.
        let chunk = (rate / 50) as usize;
        let r = rubato::FftFixedIn::<f32>::new(rate as usize, RATE as usize, chunk, 1, 1)
            .map_err(|e| AudioError::Resample(e.to_string()))?;
        let delay = r.output_delay();
        Ok(StreamResampler {
            r: Some(r),
            pending: Zeroizing::new(Vec::new()),
            delay,
            ratio: RATE as f64 / rate as f64,
            taken: 0,
            given: 0,
        })
    }

    fn emit(&mut self, mut v: Vec<f32>, out: &mut Pcm) {
        let drop = self.delay.min(v.len());
        self.delay -= drop;
        out.extend_from_slice(&v[drop..]);
        self.given += (v.len() - drop) as u64;
        zeroize::Zeroize::zeroize(&mut v);
    }

    pub fn push(&mut self, input: &[f32]) -> Result<Pcm, AudioError> {
        let mut out: Pcm = Zeroizing::new(Vec::new());
        self.taken += input.len() as u64;
        let Some(r) = self.r.as_mut() else {
            out.extend_from_slice(input);
            return Ok(out);
        };
        self.pending.extend_from_slice(input);
        let mut at = 0;
        let mut produced = Vec::new();
        loop {
            let need = r.input_frames_next();
            if self.pending.len() - at < need {
                break;
            }
            let res = r
                .process(&[&self.pending[at..at + need]], None)
                .map_err(|e| AudioError::Resample(e.to_string()))?;
            at += need;
            produced.extend(res.into_iter().next());
        }
        self.pending.drain(..at);
        for v in produced {
            self.emit(v, &mut out);
        }
        Ok(out)
    }

    /// Flushes what is left, so the output length matches the input length times the ratio.
    pub fn finish(&mut self) -> Result<Pcm, AudioError> {
        let mut out: Pcm = Zeroizing::new(Vec::new());
        let Some(r) = self.r.as_mut() else {
            return Ok(out);
        };
        let want = (self.taken as f64 * self.ratio).round() as u64;
        let mut produced = Vec::new();
        let mut guard = 0;
        while self.given + produced.iter().map(Vec::len).sum::<usize>() as u64
            <= want + self.delay as u64
            && guard < 8
        {
            let rest: Vec<f32> = std::mem::take(&mut *self.pending);
            let res = if rest.is_empty() {
                r.process_partial::<&[f32]>(None, None)
            } else {
                r.process_partial(Some(&[&rest[..]]), None)
            }
            .map_err(|e| AudioError::Resample(e.to_string()))?;
            produced.extend(res.into_iter().next());
            guard += 1;
        }
        for v in produced {
            self.emit(v, &mut out);
        }
        let excess = (self.given.saturating_sub(want)) as usize;
        let keep = out.len().saturating_sub(excess);
        out.truncate(keep);
        self.given = want;
        Ok(out)
    }
}

/// Writes 16 kHz mono PCM as a 16-bit WAV file in memory (for HTTP engines).
pub fn wav_bytes(pcm: &[f32]) -> Zeroizing<Vec<u8>> {
    let mut b = Zeroizing::new(Vec::with_capacity(44 + pcm.len() * 2));
    let data_len = (pcm.len() * 2) as u32;
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&RATE.to_le_bytes());
    b.extend_from_slice(&(RATE * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in pcm {
        b.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    b
}

/// Decodes one participant's Opus packets (48 kHz mono) to 16 kHz, concealing lost packets.
pub struct OpusTo16k {
    dec: opus::Decoder,
    rs: StreamResampler,
    buf: Zeroizing<Vec<f32>>,
}

impl OpusTo16k {
    pub fn new() -> Result<Self, AudioError> {
        Ok(OpusTo16k {
            dec: opus::Decoder::new(OPUS_RATE, opus::Channels::Mono)
                .map_err(|e| AudioError::Opus(e.to_string()))?,
            rs: StreamResampler::new(OPUS_RATE)?,
            buf: Zeroizing::new(vec![0f32; MAX_OPUS_SAMPLES]),
        })
    }

    /// One packet in, its 16 kHz samples out.
    pub fn packet(&mut self, payload: &[u8]) -> Result<Pcm, AudioError> {
        if payload.is_empty() {
            return Err(AudioError::Opus("empty packet".into()));
        }
        let n = self
            .dec
            .decode_float(payload, &mut self.buf, false)
            .map_err(|e| AudioError::Opus(e.to_string()))?;
        let samples = Zeroizing::new(self.buf[..n].to_vec());
        self.rs.push(&samples)
    }

    /// `samples48` of silence (a gap in the RTP timestamps) in, 16 kHz zeros out.
    pub fn gap(&mut self, samples48: usize) -> Result<Pcm, AudioError> {
        self.rs.push(&vec![0f32; samples48])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, secs: f32, hz: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| (i as f32 * hz * std::f32::consts::TAU / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn resampling_48k_keeps_length_and_frequency() {
        let x = tone(48_000, 1.0, 440.0);
        let y = to_16k(&x, 48_000).unwrap();
        assert_eq!(y.len(), 16_000);
        // Zero crossings of a 440 Hz tone over one second: about 880.
        let zc = y.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        assert!((430..=450).contains(&zc), "{zc}");
    }

    #[test]
    fn streaming_resampler_matches_chunks_of_any_size() {
        let x = tone(44_100, 0.5, 300.0);
        let mut s = StreamResampler::new(44_100).unwrap();
        let mut out = Vec::new();
        for c in x.chunks(333) {
            out.extend_from_slice(&s.push(c).unwrap());
        }
        out.extend_from_slice(&s.finish().unwrap());
        assert_eq!(out.len(), 8_000);
    }

    #[test]
    fn wav_of_any_common_format_decodes_to_16k_mono() {
        for (rate, ch, bits) in [
            (16_000, 1, 16),
            (44_100, 2, 16),
            (48_000, 1, 24),
            (8_000, 1, 8),
        ] {
            let spec = hound::WavSpec {
                channels: ch,
                sample_rate: rate,
                bits_per_sample: bits,
                sample_format: hound::SampleFormat::Int,
            };
            let mut c = std::io::Cursor::new(Vec::new());
            {
                let mut w = hound::WavWriter::new(&mut c, spec).unwrap();
                for s in tone(rate, 0.25, 200.0) {
                    for _ in 0..ch {
                        w.write_sample((s * ((1i32 << (bits - 1)) - 1) as f32) as i32)
                            .unwrap();
                    }
                }
                w.finalize().unwrap();
            }
            let pcm = decode_file(c.get_ref()).unwrap();
            assert_eq!(pcm.len(), 4_000, "{rate} {ch} {bits}");
            let peak = pcm.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!((0.4..0.6).contains(&peak), "{peak}");
        }
    }

    #[test]
    fn truncated_wav_and_garbage_are_clear_errors() {
        let w = wav_bytes(&tone(16_000, 0.1, 100.0));
        let cut = &w[..w.len() / 2 + 1];
        assert!(matches!(decode_file(cut), Err(AudioError::Wav(_))));
        assert!(matches!(decode_file(b""), Err(AudioError::Empty)));
        assert!(matches!(
            decode_file(b"ID3\x03 mp3"),
            Err(AudioError::UnknownFormat)
        ));
        assert!(matches!(decode_file(b"OggS\0\0"), Err(AudioError::Ogg(_))));
        let empty = wav_bytes(&[]);
        assert!(matches!(decode_file(&empty), Err(AudioError::Empty)));
    }

    #[test]
    fn wav_with_unsupported_rate_is_refused() {
        let mut w = wav_bytes(&tone(16_000, 0.1, 100.0)).to_vec();
        w[24..28].copy_from_slice(&1_000u32.to_le_bytes());
        w[28..32].copy_from_slice(&2_000u32.to_le_bytes());
        assert!(matches!(decode_file(&w), Err(AudioError::Rate(1_000))));
    }

    #[test]
    fn corrupt_opus_packets_are_errors() {
        let mut d = OpusTo16k::new().unwrap();
        assert!(d.packet(&[]).is_err());
        // A valid packet decodes; its 20 ms become 320 samples at 16 kHz (after the delay).
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let frame = tone(48_000, 0.02, 300.0);
        let mut out = vec![0u8; 1500];
        let mut total = 0;
        for _ in 0..10 {
            let n = enc.encode_float(&frame, &mut out).unwrap();
            total += d.packet(&out[..n]).unwrap().len();
        }
        assert!(total > 2_500 && total <= 3_200, "{total}");
        // Bytes that are no Opus packet: an error, no panic.
        let _ = d.packet(&[0xff; 3]);
    }

    /// An Ogg/Opus file (RFC 7845) of `pcm` (48 kHz mono), in memory.
    fn ogg_opus(pcm: &[f32], pre_skip: u16) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = ogg::PacketWriter::new(std::io::Cursor::new(&mut out));
            let mut head = b"OpusHead".to_vec();
            head.push(1);
            head.push(1);
            head.extend_from_slice(&pre_skip.to_le_bytes());
            head.extend_from_slice(&48_000u32.to_le_bytes());
            head.extend_from_slice(&0i16.to_le_bytes());
            head.push(0);
            w.write_packet(head, 7, ogg::PacketWriteEndInfo::EndPage, 0)
                .unwrap();
            let mut tags = b"OpusTags".to_vec();
            tags.extend_from_slice(&4u32.to_le_bytes());
            tags.extend_from_slice(b"test");
            tags.extend_from_slice(&0u32.to_le_bytes());
            w.write_packet(tags, 7, ogg::PacketWriteEndInfo::EndPage, 0)
                .unwrap();
            let mut enc =
                opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
            let frames: Vec<&[f32]> = pcm.chunks(960).collect();
            for (i, f) in frames.iter().enumerate() {
                let mut f = f.to_vec();
                f.resize(960, 0.0);
                let p = enc.encode_vec_float(&f, 1500).unwrap();
                let end = if i + 1 == frames.len() {
                    ogg::PacketWriteEndInfo::EndStream
                } else {
                    ogg::PacketWriteEndInfo::NormalPacket
                };
                w.write_packet(p, 7, end, (i as u64 + 1) * 960).unwrap();
            }
        }
        out
    }

    #[test]
    fn ogg_opus_files_decode_to_16k_without_the_pre_skip() {
        let file = ogg_opus(&tone(48_000, 1.0, 300.0), 312);
        let pcm = decode_file(&file).unwrap();
        // One second minus the pre-skip (312 samples at 48 kHz = 104 at 16 kHz).
        assert_eq!(pcm.len(), 16_000 - 104);
        let zc = pcm[2000..]
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        assert!((250..=270).contains(&zc), "{zc}");
        // Cut in the middle of a page: a clear error.
        assert!(matches!(
            decode_file(&file[..file.len() - 100]),
            Err(AudioError::Ogg(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = decode_file(&b);
            let mut riff = b"RIFF".to_vec();
            riff.extend_from_slice(&b);
            let _ = decode_file(&riff);
            let mut ogg = b"OggS".to_vec();
            ogg.extend_from_slice(&b);
            let _ = decode_file(&ogg);
            let mut d = OpusTo16k::new().unwrap();
            let _ = d.packet(&b);
        }
    }
}
