//! The framed audio stream from a bot to the transcriber: one WebSocket binary message per
//! frame. Every frame starts with the magic `MBA1`, a kind byte and a big-endian `u64` stream
//! sequence number (what the receiver acknowledges and what a reconnecting bot resumes from).
//!
//! ```text
//! audio (1):             magic kind seq | len u8, participant (1..=64 bytes UTF-8)
//!                        | ssrc u32 | rtp timestamp u32 | rtp sequence u16
//!                        | payload len u16 | Opus payload (1..=1275 bytes)
//! participant left (2):  magic kind seq | len u8, participant
//! participant named (4): magic kind seq | len u8, participant | len u8, name (1..=128 bytes
//!                        UTF-8: the display name the meeting shows; the transcript's speaker)
//! end of stream (3):     magic kind seq
//! ack (0x10, receiver):  magic kind seq   -- everything up to seq is safely received
//! resume (0x11, receiver, first message after connecting):
//!                        magic kind seq   -- send from seq on (what came before is kept)
//! ```
//!
//! Decoding never panics and names what is wrong; garbage is counted and dropped by callers.

pub const MAGIC: &[u8; 4] = b"MBA1";
/// The largest Opus packet (RFC 6716: 1275 bytes per frame).
pub const MAX_PAYLOAD: usize = 1275;
pub const MAX_PARTICIPANT: usize = 64;
pub const MAX_NAME: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Audio {
        seq: u64,
        participant: String,
        ssrc: u32,
        timestamp: u32,
        rtp_sequence: u16,
        payload: Vec<u8>,
    },
    ParticipantLeft {
        seq: u64,
        participant: String,
    },
    ParticipantNamed {
        seq: u64,
        participant: String,
        name: String,
    },
    EndOfStream {
        seq: u64,
    },
    /// Everything up to `seq` is durable at the receiver (stored or silence): the bot may drop
    /// it. Sent only when it moves.
    Ack {
        seq: u64,
    },
    /// The receiver's first message: send from `seq` on (frames below it are held there); `0`
    /// from a receiver new to the stream: send every frame still held.
    Resume {
        seq: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame too short: {0} bytes")]
    Short(usize),
    #[error("not an audio frame (bad magic)")]
    Magic,
    #[error("unknown frame kind {0:#04x}")]
    Kind(u8),
    #[error("participant id must be 1..=64 bytes of UTF-8")]
    Participant,
    #[error("participant name must be 1..=128 bytes of UTF-8")]
    Name,
    #[error("payload must be 1..=1275 bytes, got {0}")]
    Payload(usize),
    #[error("{0} bytes after the end of the frame")]
    Trailing(usize),
}

impl Frame {
    pub fn seq(&self) -> u64 {
        match self {
            Frame::Audio { seq, .. }
            | Frame::ParticipantLeft { seq, .. }
            | Frame::ParticipantNamed { seq, .. }
            | Frame::EndOfStream { seq }
            | Frame::Ack { seq }
            | Frame::Resume { seq } => *seq,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Frame::Audio { .. } => 1,
            Frame::ParticipantLeft { .. } => 2,
            Frame::EndOfStream { .. } => 3,
            Frame::ParticipantNamed { .. } => 4,
            Frame::Ack { .. } => 0x10,
            Frame::Resume { .. } => 0x11,
        }
    }

    /// The wire form. Fails for an invalid participant id or payload size.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(MAGIC);
        out.push(self.kind());
        out.extend_from_slice(&self.seq().to_be_bytes());
        let participant = |out: &mut Vec<u8>, p: &str| {
            if p.is_empty() || p.len() > MAX_PARTICIPANT {
                return Err(FrameError::Participant);
            }
            out.push(p.len() as u8);
            out.extend_from_slice(p.as_bytes());
            Ok(())
        };
        match self {
            Frame::Audio {
                participant: p,
                ssrc,
                timestamp,
                rtp_sequence,
                payload,
                ..
            } => {
                participant(&mut out, p)?;
                if payload.is_empty() || payload.len() > MAX_PAYLOAD {
                    return Err(FrameError::Payload(payload.len()));
                }
                out.extend_from_slice(&ssrc.to_be_bytes());
                out.extend_from_slice(&timestamp.to_be_bytes());
                out.extend_from_slice(&rtp_sequence.to_be_bytes());
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                out.extend_from_slice(payload);
            }
            Frame::ParticipantLeft { participant: p, .. } => participant(&mut out, p)?,
            Frame::ParticipantNamed {
                participant: p,
                name,
                ..
            } => {
                participant(&mut out, p)?;
                if name.is_empty() || name.len() > MAX_NAME {
                    return Err(FrameError::Name);
                }
                out.push(name.len() as u8);
                out.extend_from_slice(name.as_bytes());
            }
            _ => {}
        }
        Ok(out)
    }

    pub fn decode(b: &[u8]) -> Result<Frame, FrameError> {
        let mut r = Reader { b, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(FrameError::Magic);
        }
        let kind = r.u8()?;
        let seq = u64::from_be_bytes(r.array()?);
        let f = match kind {
            1 => {
                let participant = r.participant()?;
                let ssrc = u32::from_be_bytes(r.array()?);
                let timestamp = u32::from_be_bytes(r.array()?);
                let rtp_sequence = u16::from_be_bytes(r.array()?);
                let len = u16::from_be_bytes(r.array()?) as usize;
                if len == 0 || len > MAX_PAYLOAD {
                    return Err(FrameError::Payload(len));
                }
                let payload = r.take(len)?.to_vec();
                Frame::Audio {
                    seq,
                    participant,
                    ssrc,
                    timestamp,
                    rtp_sequence,
                    payload,
                }
            }
            2 => Frame::ParticipantLeft {
                seq,
                participant: r.participant()?,
            },
            3 => Frame::EndOfStream { seq },
            4 => {
                let participant = r.participant()?;
                let n = r.u8()? as usize;
                if n == 0 || n > MAX_NAME {
                    return Err(FrameError::Name);
                }
                let name = std::str::from_utf8(r.take(n)?)
                    .map(String::from)
                    .map_err(|_| FrameError::Name)?;
                Frame::ParticipantNamed {
                    seq,
                    participant,
                    name,
                }
            }
            0x10 => Frame::Ack { seq },
            0x11 => Frame::Resume { seq },
            k => return Err(FrameError::Kind(k)),
        };
        if r.at != b.len() {
            return Err(FrameError::Trailing(b.len() - r.at));
        }
        Ok(f)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(FrameError::Short(self.b.len()))?;
        let s = self
            .b
            .get(self.at..end)
            .ok_or(FrameError::Short(self.b.len()))?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn participant(&mut self) -> Result<String, FrameError> {
        let n = self.u8()? as usize;
        if n == 0 || n > MAX_PARTICIPANT {
            return Err(FrameError::Participant);
        }
        std::str::from_utf8(self.take(n)?)
            .map(String::from)
            .map_err(|_| FrameError::Participant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn audio(seq: u64) -> Frame {
        Frame::Audio {
            seq,
            participant: "7606914042216920".into(),
            ssrc: 0xdead_beef,
            timestamp: 960 * seq as u32,
            rtp_sequence: seq as u16,
            payload: vec![0x78, 1, 2, 3],
        }
    }

    #[test]
    fn every_kind_round_trips() {
        for f in [
            audio(7),
            Frame::ParticipantLeft {
                seq: 8,
                participant: "p".into(),
            },
            Frame::EndOfStream { seq: 9 },
            Frame::ParticipantNamed {
                seq: 11,
                participant: "p".into(),
                name: "Dr. Zoë Okafor".into(),
            },
            Frame::Ack { seq: 10 },
            Frame::Resume { seq: u64::MAX },
        ] {
            assert_eq!(Frame::decode(&f.encode().unwrap()).unwrap(), f);
        }
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        let good = audio(1).encode().unwrap();
        assert_eq!(Frame::decode(&good[..3]), Err(FrameError::Short(3)));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Frame::decode(&bad), Err(FrameError::Magic));
        let mut bad = good.clone();
        bad[4] = 9;
        assert_eq!(Frame::decode(&bad), Err(FrameError::Kind(9)));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(Frame::decode(&long), Err(FrameError::Trailing(1)));
        let too_big = Frame::Audio {
            seq: 1,
            participant: "p".into(),
            ssrc: 1,
            timestamp: 0,
            rtp_sequence: 0,
            payload: vec![0; MAX_PAYLOAD + 1],
        };
        assert_eq!(too_big.encode(), Err(FrameError::Payload(MAX_PAYLOAD + 1)));
        let nameless = Frame::ParticipantLeft {
            seq: 1,
            participant: String::new(),
        };
        assert_eq!(nameless.encode(), Err(FrameError::Participant));
        let unnamed = Frame::ParticipantNamed {
            seq: 1,
            participant: "p".into(),
            name: "x".repeat(MAX_NAME + 1),
        };
        assert_eq!(unnamed.encode(), Err(FrameError::Name));
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = Frame::decode(&b);
        }

        #[test]
        fn decoding_mutated_frames_never_panics(i in 0usize..40, v in any::<u8>()) {
            let mut b = audio(3).encode().unwrap();
            let n = b.len();
            b[i % n] = v;
            let _ = Frame::decode(&b);
        }

        #[test]
        fn valid_audio_frames_round_trip(
            seq in any::<u64>(),
            p in "[a-z0-9]{1,64}",
            ssrc in any::<u32>(),
            ts in any::<u32>(),
            rs in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 1..=MAX_PAYLOAD),
        ) {
            let f = Frame::Audio { seq, participant: p, ssrc, timestamp: ts, rtp_sequence: rs, payload };
            prop_assert_eq!(Frame::decode(&f.encode().unwrap()).unwrap(), f);
        }

        #[test]
        fn valid_name_frames_round_trip(seq in any::<u64>(), p in "[a-z0-9]{1,64}", name in "\\PC{1,32}") {
            let f = Frame::ParticipantNamed { seq, participant: p, name };
            prop_assert_eq!(Frame::decode(&f.encode().unwrap()).unwrap(), f);
        }
    }
}
