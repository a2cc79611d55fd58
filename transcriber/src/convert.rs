//! CTranslate2 whisper model (`model.bin` + `vocabulary.txt`, as faster-whisper ships it) to
//! whisper.cpp's GGML f16 file, which whisper-rs loads. Format facts: CTranslate2's
//! `model.bin` layout and whisper.cpp's `convert-pt-to-ggml.py` layout (see
//! docs/decisions/0012-whisper-model-from-ctranslate2.md).
//!
//! Reading never panics on a malformed file: every length is checked against what is left.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("model.bin is truncated at byte {0} (download it again)")]
    Truncated(usize),
    #[error("model.bin: {0}")]
    Format(String),
    #[error("model.bin lacks the variable {0:?} (is this a whisper model?)")]
    Missing(String),
    #[error("vocabulary.txt: {0}")]
    Vocabulary(String),
}

/// A CTranslate2 data type (the `u8` before each variable's byte count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Dtype {
    fn from_u8(v: u8) -> Result<Self, ConvertError> {
        Ok(match v {
            0 => Dtype::F32,
            1 => Dtype::I8,
            2 => Dtype::I16,
            3 => Dtype::I32,
            4 => Dtype::F16,
            5 => Dtype::Bf16,
            o => return Err(ConvertError::Format(format!("unknown dtype {o}"))),
        })
    }
    fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::I8 => 1,
            Dtype::I16 | Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Variable {
    pub dims: Vec<usize>,
    pub dtype: Dtype,
    pub data: Vec<u8>,
}

impl Variable {
    /// The number of values its dims make; `None` when they overflow (a corrupt header).
    fn elements(&self) -> Option<usize> {
        self.dims
            .iter()
            .try_fold(1usize, |n, d| n.checked_mul(*d))
            .map(|n| n.max(1))
    }

    /// The values as f32 (float types only).
    pub fn to_f32(&self) -> Result<Vec<f32>, ConvertError> {
        let d = &self.data;
        Ok(match self.dtype {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::Bf16 => d
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            o => {
                return Err(ConvertError::Format(format!(
                    "{o:?} weights (quantized models) are not supported; use a float16 model"
                )));
            }
        })
    }

    /// The values as little-endian f16 bytes.
    pub fn to_f16_bytes(&self) -> Result<Vec<u8>, ConvertError> {
        if self.dtype == Dtype::F16 {
            return Ok(self.data.clone());
        }
        Ok(self
            .to_f32()?
            .into_iter()
            .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
            .collect())
    }

    fn scalar_i64(&self) -> Option<i64> {
        let d = &self.data;
        match self.dtype {
            Dtype::I32 if d.len() >= 4 => Some(i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64),
            Dtype::I16 if d.len() >= 2 => Some(i16::from_le_bytes([d[0], d[1]]) as i64),
            Dtype::I8 if !d.is_empty() => Some(d[0] as i8 as i64),
            _ => self.to_f32().ok()?.first().map(|v| *v as i64),
        }
    }
}

/// A parsed CTranslate2 `model.bin`: its variables by name, aliases resolved.
#[derive(Debug)]
pub struct Ct2Model {
    pub name: String,
    pub variables: BTreeMap<String, Variable>,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ConvertError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(ConvertError::Truncated(self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ConvertError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ConvertError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, ConvertError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// u16 length including a trailing NUL, then the bytes.
    fn string(&mut self) -> Result<String, ConvertError> {
        let n = self.u16()? as usize;
        let s = self.take(n)?;
        let s = s.strip_suffix(&[0]).unwrap_or(s);
        String::from_utf8(s.to_vec())
            .map_err(|_| ConvertError::Format(format!("name at byte {} is not UTF-8", self.at)))
    }
}

impl Ct2Model {
    pub fn parse(b: &[u8]) -> Result<Self, ConvertError> {
        let mut r = Reader { b, at: 0 };
        let version = r.u32()?;
        if !(3..=6).contains(&version) {
            return Err(ConvertError::Format(format!(
                "binary version {version} is not one this converter knows (3..=6)"
            )));
        }
        let name = r.string()?;
        let _revision = r.u32()?;
        let count = r.u32()? as usize;
        let mut variables = BTreeMap::new();
        for _ in 0..count {
            let vname = r.string()?;
            let rank = r.u8()? as usize;
            let mut dims = Vec::with_capacity(rank);
            for _ in 0..rank {
                dims.push(r.u32()? as usize);
            }
            let dtype = Dtype::from_u8(r.u8()?)?;
            let bytes = r.u32()? as usize;
            let data = r.take(bytes)?.to_vec();
            let v = Variable { dims, dtype, data };
            if v.elements().and_then(|n| n.checked_mul(dtype.size())) != Some(bytes) {
                return Err(ConvertError::Format(format!(
                    "{vname}: {bytes} bytes do not match dims {:?} of {dtype:?}",
                    v.dims
                )));
            }
            variables.insert(vname, v);
        }
        if r.at < b.len() {
            let aliases = r.u32()? as usize;
            for _ in 0..aliases {
                let alias = r.string()?;
                let target = r.string()?;
                let v = variables
                    .get(&target)
                    .cloned()
                    .ok_or_else(|| ConvertError::Missing(target.clone()))?;
                variables.insert(alias, v);
            }
        }
        Ok(Ct2Model { name, variables })
    }

    fn get(&self, name: &str) -> Result<&Variable, ConvertError> {
        self.variables
            .get(name)
            .ok_or_else(|| ConvertError::Missing(name.into()))
    }

    fn layers(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                let p = format!("{prefix}/layer_{i}/");
                self.variables.keys().any(|k| k.starts_with(&p))
            })
            .count()
    }
}

/// GPT-2's byte-level alphabet: the character each byte is written as in `vocabulary.txt`.
fn byte_decoder() -> HashMap<char, u8> {
    let mut bs: Vec<u32> = (u32::from('!')..=u32::from('~'))
        .chain(u32::from('¡')..=u32::from('¬'))
        .chain(u32::from('®')..=u32::from('ÿ'))
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .filter_map(|(b, c)| Some((char::from_u32(c)?, b as u8)))
        .collect()
}

/// The text tokens of `vocabulary.txt` (up to `<|endoftext|>`) as bytes.
pub fn text_tokens(vocabulary: &str) -> Result<Vec<Vec<u8>>, ConvertError> {
    let dec = byte_decoder();
    let mut out = Vec::new();
    for (i, line) in vocabulary.lines().enumerate() {
        if line == "<|endoftext|>" {
            return Ok(out);
        }
        let bytes = line
            .chars()
            .map(|c| dec.get(&c).copied())
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| {
                ConvertError::Vocabulary(format!(
                    "token {i} has a character outside the byte-level alphabet"
                ))
            })?;
        out.push(bytes);
    }
    Err(ConvertError::Vocabulary(
        "no <|endoftext|> token (is this a whisper vocabulary?)".into(),
    ))
}

fn hz_to_mel(f: f64) -> f64 {
    // Slaney's scale (librosa's default): linear below 1 kHz, logarithmic above.
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// librosa's `filters.mel(sr, n_fft, n_mels)` with Slaney scale and Slaney normalisation: the
/// filterbank OpenAI's whisper (and so whisper.cpp) computes its log-mel spectrogram with.
/// Row-major `n_mels x (n_fft / 2 + 1)`.
pub fn mel_filters(sr: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..bins)
        .map(|i| i as f64 * (sr / 2.0) / (bins - 1) as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut w = vec![0f32; n_mels * bins];
    for m in 0..n_mels {
        let (f0, f1, f2) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
        let enorm = 2.0 / (f2 - f0);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - f0) / (f1 - f0);
            let upper = (f2 - f) / (f2 - f1);
            w[m * bins + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    w
}

/// The converted model's shape, as its GGML header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hparams {
    pub n_vocab: usize,
    pub n_audio_ctx: usize,
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    pub n_text_ctx: usize,
    pub n_text_state: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
    pub n_mels: usize,
}

struct Out(Vec<u8>);
impl Out {
    fn i32(&mut self, v: usize) -> Result<(), ConvertError> {
        let v = i32::try_from(v).map_err(|_| ConvertError::Format(format!("{v} too large")))?;
        self.0.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
}

/// One tensor to write: whisper.cpp's name, the dims (PyTorch order), f32 or f16, the data.
struct Tensor {
    name: String,
    dims: Vec<usize>,
    f32: bool,
    data: Vec<u8>,
}

/// Rows `[from, to)` of a 2-D (or 1-D) variable.
fn rows(v: &Variable, from: usize, to: usize) -> Result<Variable, ConvertError> {
    let cols: usize = v.dims.iter().skip(1).product::<usize>().max(1);
    let es = v.dtype.size();
    let (a, b) = (from * cols * es, to * cols * es);
    if b > v.data.len() || from > to {
        return Err(ConvertError::Format(format!(
            "cannot split rows {from}..{to} of dims {:?}",
            v.dims
        )));
    }
    let mut dims = v.dims.clone();
    if let Some(d0) = dims.first_mut() {
        *d0 = to - from;
    }
    Ok(Variable {
        dims,
        dtype: v.dtype,
        data: v.data[a..b].to_vec(),
    })
}

fn tensor(name: String, v: &Variable, force_f32: bool) -> Result<Tensor, ConvertError> {
    let f32 = force_f32 || v.dims.len() < 2;
    let data = if f32 {
        v.to_f32()?.into_iter().flat_map(f32::to_le_bytes).collect()
    } else {
        v.to_f16_bytes()?
    };
    Ok(Tensor {
        name,
        dims: v.dims.clone(),
        f32,
        data,
    })
}

/// Converts a CTranslate2 whisper model to whisper.cpp's GGML f16 file.
pub fn ct2_to_ggml(model_bin: &[u8], vocabulary: &str) -> Result<(Vec<u8>, Hparams), ConvertError> {
    let m = Ct2Model::parse(model_bin)?;
    let conv1 = m.get("encoder/conv1/weight")?;
    let d = *conv1
        .dims
        .first()
        .ok_or(ConvertError::Missing("conv1 dims".into()))?;
    let n_mels = *conv1
        .dims
        .get(1)
        .ok_or(ConvertError::Missing("conv1 dims".into()))?;
    let enc_pos = m.get("encoder/position_encodings/encodings")?;
    let dec_pos = m.get("decoder/position_encodings/encodings")?;
    let emb = m.get("decoder/embeddings/weight")?;
    let heads = |n: &str| -> Result<usize, ConvertError> {
        m.get(n)?
            .scalar_i64()
            .filter(|h| *h > 0)
            .map(|h| h as usize)
            .ok_or_else(|| ConvertError::Format(format!("{n} is not a positive scalar")))
    };
    let hp = Hparams {
        n_vocab: *emb.dims.first().unwrap_or(&0),
        n_audio_ctx: *enc_pos.dims.first().unwrap_or(&0),
        n_audio_state: d,
        n_audio_head: heads("encoder/num_heads")?,
        n_audio_layer: m.layers("encoder"),
        n_text_ctx: *dec_pos.dims.first().unwrap_or(&0),
        n_text_state: *emb.dims.get(1).unwrap_or(&0),
        n_text_head: heads("decoder/num_heads")?,
        n_text_layer: m.layers("decoder"),
        n_mels,
    };
    let tokens = text_tokens(vocabulary)?;

    let mut ts: Vec<Tensor> = Vec::new();
    ts.push(tensor(
        "encoder.positional_embedding".into(),
        enc_pos,
        true,
    )?);
    for c in ["conv1", "conv2"] {
        ts.push(tensor(
            format!("encoder.{c}.weight"),
            m.get(&format!("encoder/{c}/weight"))?,
            false,
        )?);
        let mut b = tensor(
            format!("encoder.{c}.bias"),
            m.get(&format!("encoder/{c}/bias"))?,
            true,
        )?;
        b.dims = vec![b.dims[0], 1];
        ts.push(b);
    }
    let lin = |ts: &mut Vec<Tensor>, src: &str, dst: &str| -> Result<(), ConvertError> {
        ts.push(tensor(
            format!("{dst}.weight"),
            m.get(&format!("{src}/weight"))?,
            false,
        )?);
        ts.push(tensor(
            format!("{dst}.bias"),
            m.get(&format!("{src}/bias"))?,
            true,
        )?);
        Ok(())
    };
    let norm = |ts: &mut Vec<Tensor>, src: &str, dst: &str| -> Result<(), ConvertError> {
        ts.push(tensor(
            format!("{dst}.weight"),
            m.get(&format!("{src}/gamma"))?,
            true,
        )?);
        ts.push(tensor(
            format!("{dst}.bias"),
            m.get(&format!("{src}/beta"))?,
            true,
        )?);
        Ok(())
    };
    // Fused projections: split by rows; the key projection has no bias in OpenAI's layout.
    let split =
        |ts: &mut Vec<Tensor>, src: &str, dst: &str, names: &[&str]| -> Result<(), ConvertError> {
            let w = m.get(&format!("{src}/weight"))?;
            let b = m.get(&format!("{src}/bias"))?;
            for (i, n) in names.iter().enumerate() {
                ts.push(tensor(
                    format!("{dst}.{n}.weight"),
                    &rows(w, i * d, (i + 1) * d)?,
                    false,
                )?);
                if *n != "key" {
                    ts.push(tensor(
                        format!("{dst}.{n}.bias"),
                        &rows(b, i * d, (i + 1) * d)?,
                        true,
                    )?);
                }
            }
            Ok(())
        };
    let block = |ts: &mut Vec<Tensor>, side: &str, i: usize| -> Result<(), ConvertError> {
        let s = format!("{side}/layer_{i}");
        let t = format!("{side}.blocks.{i}");
        split(
            ts,
            &format!("{s}/self_attention/linear_0"),
            &format!("{t}.attn"),
            &["query", "key", "value"],
        )?;
        lin(
            ts,
            &format!("{s}/self_attention/linear_1"),
            &format!("{t}.attn.out"),
        )?;
        norm(
            ts,
            &format!("{s}/self_attention/layer_norm"),
            &format!("{t}.attn_ln"),
        )?;
        if side == "decoder" {
            lin(
                ts,
                &format!("{s}/attention/linear_0"),
                &format!("{t}.cross_attn.query"),
            )?;
            split(
                ts,
                &format!("{s}/attention/linear_1"),
                &format!("{t}.cross_attn"),
                &["key", "value"],
            )?;
            lin(
                ts,
                &format!("{s}/attention/linear_2"),
                &format!("{t}.cross_attn.out"),
            )?;
            norm(
                ts,
                &format!("{s}/attention/layer_norm"),
                &format!("{t}.cross_attn_ln"),
            )?;
        }
        lin(ts, &format!("{s}/ffn/linear_0"), &format!("{t}.mlp.0"))?;
        lin(ts, &format!("{s}/ffn/linear_1"), &format!("{t}.mlp.2"))?;
        norm(ts, &format!("{s}/ffn/layer_norm"), &format!("{t}.mlp_ln"))?;
        Ok(())
    };
    for i in 0..hp.n_audio_layer {
        block(&mut ts, "encoder", i)?;
    }
    norm(&mut ts, "encoder/layer_norm", "encoder.ln_post")?;
    ts.push(tensor(
        "decoder.positional_embedding".into(),
        dec_pos,
        true,
    )?);
    ts.push(tensor("decoder.token_embedding.weight".into(), emb, false)?);
    for i in 0..hp.n_text_layer {
        block(&mut ts, "decoder", i)?;
    }
    norm(&mut ts, "decoder/layer_norm", "decoder.ln")?;

    let mut o = Out(Vec::with_capacity(model_bin.len() + (1 << 20)));
    o.0.extend_from_slice(&0x6767_6d6ci32.to_le_bytes());
    for v in [
        hp.n_vocab,
        hp.n_audio_ctx,
        hp.n_audio_state,
        hp.n_audio_head,
        hp.n_audio_layer,
        hp.n_text_ctx,
        hp.n_text_state,
        hp.n_text_head,
        hp.n_text_layer,
        hp.n_mels,
        1,
    ] {
        o.i32(v)?;
    }
    let bins = 201;
    o.i32(hp.n_mels)?;
    o.i32(bins)?;
    for v in mel_filters(16_000.0, 400, hp.n_mels) {
        o.0.extend_from_slice(&v.to_le_bytes());
    }
    o.i32(tokens.len())?;
    for t in &tokens {
        o.i32(t.len())?;
        o.0.extend_from_slice(t);
    }
    for t in ts {
        o.i32(t.dims.len())?;
        o.i32(t.name.len())?;
        o.i32(if t.f32 { 0 } else { 1 })?;
        for d in t.dims.iter().rev() {
            o.i32(*d)?;
        }
        o.0.extend_from_slice(t.name.as_bytes());
        o.0.extend_from_slice(&t.data);
    }
    Ok((o.0, hp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_alphabet_round_trips_every_byte() {
        let d = byte_decoder();
        assert_eq!(d.len(), 256);
        assert_eq!(d[&'Ġ'], b' ');
        assert_eq!(d[&'Ċ'], b'\n');
        assert_eq!(d[&'a'], b'a');
    }

    #[test]
    fn dims_whose_product_overflows_are_a_format_error_not_a_panic() {
        // Found by `scripts/fuzz.sh` (ct2_model): a variable whose dims multiply past usize.
        let crash: [u8; 48] = [
            0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc2,
            0x01, 0x00, 0x00, 0x04, 0x25, 0x00, 0x48, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00, 0x00,
            0x00, 0xa8, 0xd9, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0xcd, 0xf0, 0xd9, 0x2e, 0x00, 0x00,
        ];
        assert!(Ct2Model::parse(&crash).is_err());
        let v = Variable {
            dims: vec![usize::MAX, 2],
            dtype: Dtype::F32,
            data: vec![],
        };
        assert_eq!(v.elements(), None);
    }

    #[test]
    fn vocabulary_stops_at_end_of_text_and_rejects_foreign_characters() {
        let t = text_tokens("a\nĠthe\n<|endoftext|>\n<|startoftranscript|>\n").unwrap();
        assert_eq!(t, vec![b"a".to_vec(), b" the".to_vec()]);
        assert!(text_tokens("a\nb\n").is_err());
        assert!(text_tokens("\u{4e00}\n<|endoftext|>").is_err());
    }

    #[test]
    fn slaney_mel_filterbank_matches_librosa_values() {
        // Reference values: librosa.filters.mel(sr=16000, n_fft=400, n_mels=80).
        let w = mel_filters(16_000.0, 400, 80);
        assert_eq!(w.len(), 80 * 201);
        let at = |m: usize, k: usize| w[m * 201 + k];
        assert_eq!(at(0, 0), 0.0);
        assert!((at(0, 1) - 0.024_862_4).abs() < 1e-6, "{}", at(0, 1));
        // Every filter has some weight; all weights are non-negative.
        for m in 0..80 {
            assert!((0..201).any(|k| at(m, k) > 0.0), "filter {m} empty");
        }
        assert!(w.iter().all(|v| *v >= 0.0));
    }

    #[test]
    fn truncated_or_garbage_model_files_are_errors_not_panics() {
        assert!(matches!(
            Ct2Model::parse(&[]),
            Err(ConvertError::Truncated(0))
        ));
        let mut b = 6u32.to_le_bytes().to_vec();
        b.extend_from_slice(&5u16.to_le_bytes());
        b.extend_from_slice(b"whi");
        assert!(Ct2Model::parse(&b).is_err());
        assert!(ct2_to_ggml(&[1, 2, 3], "").is_err());
    }

    fn var_bytes(name: &str, dims: &[u32], vals: &[f32]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((name.len() + 1) as u16).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.push(dims.len() as u8);
        for d in dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.push(0);
        b.extend_from_slice(&((vals.len() * 4) as u32).to_le_bytes());
        for v in vals {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn model_file_variables_and_aliases_are_read() {
        let mut b = 6u32.to_le_bytes().to_vec();
        b.extend_from_slice(&8u16.to_le_bytes());
        b.extend_from_slice(b"Whisper\0");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend(var_bytes("a/weight", &[2, 2], &[1.0, 2.0, 3.0, 4.0]));
        b.extend_from_slice(&1u32.to_le_bytes());
        for s in ["b/weight", "a/weight"] {
            b.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        }
        let m = Ct2Model::parse(&b).unwrap();
        assert_eq!(m.name, "Whisper");
        assert_eq!(
            m.variables["b/weight"].to_f32().unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        let r = rows(&m.variables["a/weight"], 1, 2).unwrap();
        assert_eq!(r.to_f32().unwrap(), vec![3.0, 4.0]);
        assert!(rows(&m.variables["a/weight"], 1, 3).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = Ct2Model::parse(&b);
            let _ = ct2_to_ggml(&b, "a\n<|endoftext|>");
        }
    }
}
