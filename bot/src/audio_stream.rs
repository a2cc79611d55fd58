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
use rustls::pki_types::CertificateDer;
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
    /// CA certificates trusted for a `wss://` transcriber besides the system's roots
    /// (`bot.transcriber_ca_file`, an in-cluster private CA; see [`read_ca_file`]).
    pub trusted_ca: Vec<CertificateDer<'static>>,
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
    #[error(
        "the transcriber's TLS certificate is not trusted ({0}): give its CA in bot.transcriber_ca_file"
    )]
    Untrusted(String),
    #[error("a CA certificate for the transcriber is unusable: {0}")]
    BadCa(String),
}

/// Why `bot.transcriber_ca_file` cannot be used (each names the file).
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid PEM: {}", .0.display(), .1)]
    BadPem(std::path::PathBuf, String),
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", .0.display())]
    Empty(std::path::PathBuf),
    #[error("{} holds a certificate that cannot be a trust anchor: {}", .0.display(), .1)]
    Unusable(std::path::PathBuf, String),
}

/// The CA certificates in `path` (PEM), each checked to be usable as a trust anchor.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|source| CaFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaFileError::BadPem(path.to_path_buf(), e.to_string()))?;
    if certs.is_empty() {
        return Err(CaFileError::Empty(path.to_path_buf()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in &certs {
        roots
            .add(c.clone())
            .map_err(|e| CaFileError::Unusable(path.to_path_buf(), e.to_string()))?;
    }
    Ok(certs)
}

/// Whether `url` sends audio in the clear off this machine: `ws://` to a host that is not
/// loopback (`localhost`, 127.0.0.0/8, ::1).
pub fn unencrypted_off_host(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    if u.scheme() != "ws" {
        return false;
    }
    match u.host() {
        Some(url::Host::Ipv4(a)) => !a.is_loopback(),
        Some(url::Host::Ipv6(a)) => !a.is_loopback(),
        Some(url::Host::Domain(d)) => !d.eq_ignore_ascii_case("localhost"),
        None => true,
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The WebSocket TLS connector of every client here: rustls with aws-lc-rs and the system's
/// roots (the transcriber's Deepgram client uses it too).
pub fn tls() -> Option<tokio_tungstenite::Connector> {
    tls_trusting(&[]).ok()
}

/// [`tls`], also trusting the CA certificates `extra` (the transcriber's private CA).
pub fn tls_trusting(
    extra: &[CertificateDer<'static>],
) -> Result<tokio_tungstenite::Connector, StreamError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    for c in extra {
        roots
            .add(c.clone())
            .map_err(|e| StreamError::BadCa(e.to_string()))?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StreamError::BadCa(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(cfg)))
}

/// The rustls certificate error under a failed TLS handshake, if that is why it failed.
fn certificate_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .filter(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        })
}

async fn connect(
    s: &StreamSettings,
    tls: &tokio_tungstenite::Connector,
) -> Result<Ws, StreamError> {
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
    match tokio_tungstenite::connect_async_tls_with_config(req, None, false, Some(tls.clone()))
        .await
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r))
            if r.status() == 401 || r.status() == 403 =>
        {
            Err(StreamError::Unauthorized)
        }
        // Not a passing network fault: retrying would not make the certificate trusted.
        Err(tokio_tungstenite::tungstenite::Error::Io(e)) if certificate_error(&e).is_some() => {
            Err(StreamError::Untrusted(
                certificate_error(&e)
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
            ))
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
    if unencrypted_off_host(&s.url) {
        // The address only: the URL's path names the tenant and job.
        let host = url::Url::parse(&s.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        tracing::warn!(
            host = %host,
            "the transcriber URL is ws://: audio travels unencrypted to another host; use wss:// (transcriber.tls_cert_file, bot.transcriber_ca_file)"
        );
    }
    let tls = tls_trusting(&s.trusted_ca)?;
    loop {
        // Connect (or reconnect), then learn where to resume.
        let mut ws = match connect(&s, &tls).await {
            Ok(ws) => ws,
            Err(StreamError::Unauthorized) => return Err(StreamError::Unauthorized),
            Err(e @ StreamError::Untrusted(_)) => return Err(e),
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

    #[test]
    fn only_plain_ws_to_another_host_counts_as_unencrypted() {
        for off in [
            "ws://meetbot-transcriber:8091/v1/audio/t/j",
            "ws://10.0.0.7/v1/audio",
            "ws://[2001:db8::1]:8091/v1/audio",
        ] {
            assert!(unencrypted_off_host(off), "{off}");
        }
        for fine in [
            "wss://meetbot-transcriber:8091/v1/audio",
            "ws://127.0.0.1:8091/v1/audio",
            "ws://127.3.2.1/v1/audio",
            "ws://[::1]:8091/v1/audio",
            "ws://LocalHost:8091/v1/audio",
        ] {
            assert!(!unencrypted_off_host(fine), "{fine}");
        }
    }

    #[test]
    fn a_missing_or_certificate_less_ca_file_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent-ca.pem");
        let e = read_ca_file(&missing).unwrap_err();
        assert!(matches!(e, CaFileError::Read { .. }), "{e}");
        assert!(e.to_string().contains("absent-ca.pem"), "{e}");
        let empty = dir.path().join("no-certs.pem");
        std::fs::write(&empty, "just text, no PEM block\n").unwrap();
        let e = read_ca_file(&empty).unwrap_err();
        assert!(matches!(e, CaFileError::Empty(_)), "{e}");
        assert!(e.to_string().contains("no-certs.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_ca_file(&junk).unwrap_err();
        assert!(matches!(e, CaFileError::Unusable(..)), "{e}");
        assert!(e.to_string().contains("junk.pem"), "{e}");
    }
}
