//! The bot's audio stream to the transcriber: [`crate::audio_frame`] frames over a WebSocket,
//! authenticated per job (`Authorization: Bearer <job token>`), acknowledged by the receiver,
//! and resumed after a reconnect from an in-memory buffer of what was not yet acknowledged.
//!
//! Back-pressure: the buffer is bounded. While connected and full, the stream stops taking
//! packets (the session's channel fills and the connector drops and counts what does not fit);
//! while disconnected and full, the stream fails with [`StreamError::Overflow`] and the job
//! fails with that reason. Audio is only ever in memory (zeroized when released).

use crate::audio_frame::{Frame, FrameError};
use crate::connector::AudioPacket;
use aws_lc_rs::hmac;
use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use zeroize::Zeroizing;

/// The token a bot presents for `job`, valid for `valid_for` from now:
/// `v2.<unix expiry>.<hex HMAC-SHA256>` under the secret the bots and the transcriber share,
/// the MAC over tenant, job and expiry. A token opens one job's stream (and its live text)
/// and nothing else, and only until it expires.
pub fn job_token(secret: &SecretString, tenant: &str, job: &str, valid_for: Duration) -> String {
    job_token_expiring(
        secret,
        tenant,
        job,
        unix_now().saturating_add(valid_for.as_secs()),
    )
}

/// [`job_token`] expiring at `expires` (seconds since the Unix epoch).
pub fn job_token_expiring(secret: &SecretString, tenant: &str, job: &str, expires: u64) -> String {
    let tag = hmac::sign(&token_key(secret), &token_message(tenant, job, expires));
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v2.{expires}.{hex}")
}

/// Why a job token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the audio token is malformed (expected v2.<expiry>.<mac>)")]
    Malformed,
    #[error("the audio token is not this job's")]
    WrongJob,
    #[error("the audio token expired")]
    Expired,
}

/// Checks `token` for `tenant`'s `job` at `now` (seconds since the Unix epoch): the MAC in
/// constant time, then the expiry. Returns the expiry.
pub fn check_job_token(
    secret: &SecretString,
    token: &str,
    tenant: &str,
    job: &str,
    now: u64,
) -> Result<u64, TokenError> {
    let mut parts = token.split('.');
    let (Some("v2"), Some(exp), Some(mac), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if exp.is_empty() || exp.len() > 20 || !exp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TokenError::Malformed);
    }
    let expires: u64 = exp.parse().map_err(|_| TokenError::Malformed)?;
    if mac.len() != 64 || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed);
    }
    let tag: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&mac[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    hmac::verify(
        &token_key(secret),
        &token_message(tenant, job, expires),
        &tag,
    )
    .map_err(|_| TokenError::WrongJob)?;
    if expires <= now {
        return Err(TokenError::Expired);
    }
    Ok(expires)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn token_key(secret: &SecretString) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes())
}

/// Length-prefixed, so no tenant/job split can be read as another.
fn token_message(tenant: &str, job: &str, expires: u64) -> Vec<u8> {
    format!(
        "meetbot/audio/v2|{}:{tenant}|{}:{job}|{expires}",
        tenant.len(),
        job.len()
    )
    .into_bytes()
}

#[derive(Clone, Debug)]
pub struct StreamSettings {
    /// `ws://` or `wss://` URL of the transcriber's audio endpoint.
    pub url: String,
    pub token: SecretString,
    /// Frames kept until acknowledged (50 per second per speaking participant).
    pub buffer_frames: usize,
    /// Give up when the receiver has been unreachable this long.
    pub max_outage: Duration,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct StreamReport {
    pub frames: u64,
    pub acked: u64,
    pub reconnects: u32,
    /// Frames sent again after a reconnect (not acknowledged before the connection dropped).
    pub resent: u64,
    /// Receiver messages that were not valid frames (counted and ignored).
    pub garbage: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(
        "the audio buffer overflowed ({0} frames unacknowledged) while the transcriber was unreachable"
    )]
    Overflow(usize),
    #[error("the transcriber refused this job's audio token")]
    Unauthorized,
    #[error("the transcriber stayed unreachable for {0:?}: {1}")]
    Unreachable(Duration, String),
    #[error("bad audio frame: {0}")]
    Frame(#[from] FrameError),
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The WebSocket TLS connector of every client here: rustls with aws-lc-rs and the system's
/// roots (the transcriber's Deepgram client uses it too).
pub fn tls() -> Option<tokio_tungstenite::Connector> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(tokio_tungstenite::Connector::Rustls(Arc::new(cfg)))
}

async fn connect(s: &StreamSettings) -> Result<Ws, StreamError> {
    let mut req = s
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| StreamError::Unreachable(Duration::ZERO, e.to_string()))?;
    let bearer = format!("Bearer {}", s.token.expose_secret());
    req.headers_mut().insert(
        "authorization",
        bearer
            .parse()
            .map_err(|_| StreamError::Unreachable(Duration::ZERO, "bad token".into()))?,
    );
    match tokio_tungstenite::connect_async_tls_with_config(req, None, false, tls()).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r))
            if r.status() == 401 || r.status() == 403 =>
        {
            Err(StreamError::Unauthorized)
        }
        Err(e) => Err(StreamError::Unreachable(Duration::ZERO, e.to_string())),
    }
}

/// An item for the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    Audio(AudioPacket),
    ParticipantLeft(String),
    /// The display name the meeting shows for a participant (the transcript's speaker label).
    ParticipantNamed {
        participant: String,
        name: String,
    },
}

/// Streams everything from `rx` until it closes, then sends end-of-stream and waits for its
/// acknowledgement.
pub async fn stream_audio(
    s: StreamSettings,
    mut rx: mpsc::Receiver<Outgoing>,
) -> Result<StreamReport, StreamError> {
    let mut rep = StreamReport::default();
    let mut buffer: VecDeque<(u64, Zeroizing<Vec<u8>>)> = VecDeque::new();
    let mut next_seq = 1u64;
    let mut input_done = false;
    let mut end_queued = false;
    let mut down_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    let encode = |f: Frame| f.encode().map(Zeroizing::new);
    loop {
        // Connect (or reconnect), then learn where to resume.
        let mut ws = match connect(&s).await {
            Ok(ws) => ws,
            Err(StreamError::Unauthorized) => return Err(StreamError::Unauthorized),
            Err(e) => {
                let since = *down_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= s.max_outage {
                    return Err(StreamError::Unreachable(s.max_outage, e.to_string()));
                }
                // Keep taking packets while down, as long as the buffer holds them.
                let deadline = tokio::time::sleep(backoff);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = &mut deadline => break,
                        item = rx.recv(), if !input_done => match item {
                            Some(i) => {
                                if buffer.len() >= s.buffer_frames {
                                    return Err(StreamError::Overflow(buffer.len()));
                                }
                                buffer.push_back((next_seq, encode(frame(next_seq, i))?));
                                next_seq += 1;
                                rep.frames += 1;
                            }
                            None => input_done = true,
                        }
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        if !first {
            rep.reconnects += 1;
        }
        first = false;
        down_since = None;
        backoff = Duration::from_millis(100);
        // The receiver's first message says where to resume.
        let resume = match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => match Frame::decode(&b) {
                Ok(Frame::Resume { seq }) => seq,
                _ => {
                    rep.garbage += 1;
                    continue;
                }
            },
            _ => continue,
        };
        while buffer.front().is_some_and(|(seq, _)| *seq < resume) {
            buffer.pop_front();
            rep.acked += 1;
        }
        let mut broken = false;
        for (_, bytes) in &buffer {
            if ws
                .send(Message::Binary(bytes.to_vec().into()))
                .await
                .is_err()
            {
                broken = true;
                break;
            }
            if rep.reconnects > 0 {
                rep.resent += 1;
            }
        }
        if broken {
            continue;
        }
        // Connected: send what comes, take acks, stop taking input while the buffer is full.
        loop {
            if input_done && !end_queued {
                let f = encode(Frame::EndOfStream { seq: next_seq })?;
                let sent = ws.send(Message::Binary(f.to_vec().into())).await;
                buffer.push_back((next_seq, f));
                next_seq += 1;
                end_queued = true;
                if sent.is_err() {
                    break;
                }
            }
            if end_queued && buffer.is_empty() {
                let _ = ws.close(None).await;
                return Ok(rep);
            }
            let room = buffer.len() < s.buffer_frames;
            tokio::select! {
                item = rx.recv(), if room && !input_done => match item {
                    Some(i) => {
                        let bytes = encode(frame(next_seq, i))?;
                        let sent = ws.send(Message::Binary(bytes.to_vec().into())).await;
                        buffer.push_back((next_seq, bytes));
                        next_seq += 1;
                        rep.frames += 1;
                        if sent.is_err() { break; }
                    }
                    None => input_done = true,
                },
                msg = ws.next() => match msg {
                    Some(Ok(Message::Binary(b))) => match Frame::decode(&b) {
                        Ok(Frame::Ack { seq }) => {
                            while buffer.front().is_some_and(|(s, _)| *s <= seq) {
                                buffer.pop_front();
                                rep.acked += 1;
                            }
                        }
                        _ => rep.garbage += 1,
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => rep.garbage += 1,
                }
            }
        }
    }
}

fn frame(seq: u64, i: Outgoing) -> Frame {
    match i {
        Outgoing::Audio(p) => Frame::Audio {
            seq,
            participant: p.participant,
            ssrc: p.ssrc,
            timestamp: p.timestamp,
            rtp_sequence: p.sequence,
            payload: p.payload,
        },
        Outgoing::ParticipantLeft(p) => Frame::ParticipantLeft {
            seq,
            participant: p,
        },
        Outgoing::ParticipantNamed { participant, name } => Frame::ParticipantNamed {
            seq,
            participant,
            name,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_tokens_differ_per_job_tenant_secret_and_expiry() {
        let a = SecretString::from("shared-secret".to_string());
        let b = SecretString::from("other-secret".to_string());
        let t = job_token_expiring(&a, "clinic01", "job-1", 2_000_000_000);
        assert!(
            t.starts_with("v2.2000000000.") && t.len() == 3 + 11 + 64,
            "{t}"
        );
        assert_eq!(
            t,
            job_token_expiring(&a, "clinic01", "job-1", 2_000_000_000)
        );
        assert_ne!(
            t,
            job_token_expiring(&a, "clinic01", "job-2", 2_000_000_000)
        );
        assert_ne!(
            t,
            job_token_expiring(&a, "clinic02", "job-1", 2_000_000_000)
        );
        assert_ne!(
            t,
            job_token_expiring(&b, "clinic01", "job-1", 2_000_000_000)
        );
        assert_ne!(
            t,
            job_token_expiring(&a, "clinic01", "job-1", 2_000_000_001)
        );
        let now = 1_900_000_000;
        assert_eq!(
            check_job_token(&a, &t, "clinic01", "job-1", now),
            Ok(2_000_000_000)
        );
        assert_eq!(
            check_job_token(&b, &t, "clinic01", "job-1", now),
            Err(TokenError::WrongJob)
        );
        assert_eq!(
            check_job_token(&a, &t, "clinic01", "job-2", now),
            Err(TokenError::WrongJob)
        );
    }

    #[test]
    fn an_expired_audio_token_is_refused() {
        let a = SecretString::from("shared-secret".to_string());
        let t = job_token_expiring(&a, "clinic01", "job-1", 1_000);
        assert_eq!(
            check_job_token(&a, &t, "clinic01", "job-1", 1_000),
            Err(TokenError::Expired)
        );
        assert_eq!(check_job_token(&a, &t, "clinic01", "job-1", 999), Ok(1_000));
    }

    #[test]
    fn an_audio_token_with_its_expiry_moved_or_in_the_old_form_is_refused() {
        let a = SecretString::from("shared-secret".to_string());
        let t = job_token_expiring(&a, "clinic01", "job-1", 1_000);
        let mac = t.rsplit('.').next().unwrap();
        // The expiry pushed out under the same MAC.
        let moved = format!("v2.9999999999.{mac}");
        assert_eq!(
            check_job_token(&a, &moved, "clinic01", "job-1", 500),
            Err(TokenError::WrongJob)
        );
        // The old never-expiring form (a bare hex MAC of tenant:job) and other garbage.
        for bad in [
            mac,
            "",
            "v2..",
            "v2.1000",
            "v1.1000.00",
            "v2.-1.00",
            "v2.1000.zz",
        ] {
            assert_eq!(
                check_job_token(&a, bad, "clinic01", "job-1", 500),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        // Tenant and job cannot be re-split.
        let t = job_token_expiring(&a, "clinic01", "a:b", 1_000);
        assert!(check_job_token(&a, &t, "clinic01:a", "b", 500).is_err());
    }
}
