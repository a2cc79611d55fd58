//! The bot's framed audio stream over a real WebSocket: every frame arrives once and in order and
//! is acknowledged; a dropped connection is resumed from the in-memory buffer without loss or
//! duplicates; a wrong job token is refused; an outage longer than the buffer holds fails with
//! the overflow reason; garbage on the socket is counted, not fatal.

use meetbot_bot::audio_frame::Frame;
use meetbot_bot::audio_stream::{Outgoing, StreamError, StreamSettings, job_token, stream_audio};
use meetbot_bot::connector::AudioPacket;
use meetbot_testsupport::audio_sink::AudioSink;
use secrecy::SecretString;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn token() -> String {
    job_token(
        &SecretString::from("shared".to_string()),
        "clinic01",
        "job-1",
        Duration::from_secs(3600),
    )
}

fn settings(sink: &AudioSink, tok: &str, buffer: usize) -> StreamSettings {
    StreamSettings {
        url: sink.url(),
        token: SecretString::from(tok.to_string()),
        buffer_frames: buffer,
        max_outage: Duration::from_secs(10),
        trusted_ca: Vec::new(),
    }
}

fn packet(i: u32) -> Outgoing {
    Outgoing::Audio(AudioPacket {
        participant: format!("p{}", i % 3),
        ssrc: 1000 + i % 3,
        sequence: i as u16,
        timestamp: i * 960,
        payload: vec![0x78, (i % 256) as u8, 7],
        received_at: Instant::now(),
    })
}

fn audio_seqs(frames: &[Frame]) -> Vec<u64> {
    frames.iter().map(Frame::seq).collect()
}

#[tokio::test]
async fn every_frame_arrives_once_in_order_and_the_end_is_acknowledged() {
    let sink = AudioSink::start(&token()).await;
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(stream_audio(settings(&sink, &token(), 1000), rx));
    for i in 0..500 {
        tx.send(packet(i)).await.unwrap();
    }
    tx.send(Outgoing::ParticipantLeft("p1".into()))
        .await
        .unwrap();
    drop(tx);
    let rep = task.await.unwrap().unwrap();
    assert_eq!(rep.frames, 501);
    assert_eq!(rep.acked, 502, "every frame and the end acknowledged");
    assert_eq!(rep.reconnects, 0);
    let frames = sink.frames();
    assert_eq!(audio_seqs(&frames), (1..=502).collect::<Vec<_>>());
    assert!(
        matches!(&frames[500], Frame::ParticipantLeft { participant, .. } if participant == "p1")
    );
    assert!(sink.ended());
}

#[tokio::test]
async fn a_dropped_connection_resumes_from_the_buffer_without_loss_or_duplicates() {
    let sink = AudioSink::start(&token()).await;
    sink.drop_after(120);
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(stream_audio(settings(&sink, &token(), 1000), rx));
    for i in 0..400 {
        tx.send(packet(i)).await.unwrap();
    }
    drop(tx);
    let rep = task.await.unwrap().unwrap();
    assert_eq!(rep.reconnects, 1);
    assert_eq!(sink.connections(), 2);
    assert_eq!(audio_seqs(&sink.frames()), (1..=401).collect::<Vec<_>>());
    assert!(sink.ended());
}

#[tokio::test]
async fn a_wrong_job_token_is_refused() {
    let sink = AudioSink::start(&token()).await;
    let other = job_token(
        &SecretString::from("shared".to_string()),
        "clinic01",
        "job-2",
        Duration::from_secs(3600),
    );
    let (tx, rx) = mpsc::channel(8);
    tx.send(packet(1)).await.unwrap();
    let r = stream_audio(settings(&sink, &other, 100), rx).await;
    assert!(matches!(r, Err(StreamError::Unauthorized)), "{r:?}");
    assert!(sink.frames().is_empty());
}

#[tokio::test]
async fn an_outage_longer_than_the_buffer_fails_with_the_overflow_reason() {
    let sink = AudioSink::start(&token()).await;
    sink.refuse(true);
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(stream_audio(settings(&sink, &token(), 50), rx));
    let feeder = tokio::spawn(async move {
        for i in 0..200 {
            if tx.send(packet(i)).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let r = task.await.unwrap();
    let _ = feeder.await;
    let e = r.unwrap_err();
    assert!(matches!(e, StreamError::Overflow(50)), "{e}");
    assert!(e.to_string().contains("overflowed"), "{e}");
}

#[tokio::test]
async fn garbage_on_the_socket_is_counted_and_dropped() {
    use futures_util::SinkExt;
    let sink = AudioSink::start(&token()).await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        sink.url().as_str(),
    )
    .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token()).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    for junk in [
        vec![],
        vec![1, 2, 3],
        b"MBA1\x01garbage".to_vec(),
        vec![0xff; 3000],
    ] {
        ws.send(tokio_tungstenite::tungstenite::Message::Binary(junk.into()))
            .await
            .unwrap();
    }
    ws.close(None).await.unwrap();
    let start = Instant::now();
    while sink.garbage() < 4 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sink.garbage(), 4);
    assert!(sink.frames().is_empty());
}
