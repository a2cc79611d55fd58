//! meetbot's room server (the `meetbot dev` demo room) and its connector over real WebRTC on
//! loopback: each voice arrives as its own stream, labelled with the voice's participant id, its
//! audio is what espeak-ng spoke (it decodes to voice where that voice talks), every voice is
//! announced when the bot joins and leaves when the conversation ends, and an unknown room or a
//! malformed request gets a clear refusal.

use meetbot_bot::connector::{ConnectError, ConnectorEvent, MeetingConnector, Signal};
use meetbot_bot::room::{Rendered, RoomConnector, RoomServer, Script, Voice};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

async fn server() -> (RoomServer, String) {
    let rooms = RoomServer::new(loopback());
    let (addr, _task) = meetbot_testsupport::serve_on_loopback(rooms.router()).await;
    (rooms, format!("http://{addr}"))
}

fn two_voices() -> Script {
    let v = |id: &str, display: &str| Voice {
        id: id.into(),
        display: display.into(),
        espeak_voice: "en-us".into(),
    };
    Script {
        voices: vec![v("ana", "Ana"), v("ben", "Ben")],
        lines: vec![
            (
                0,
                "The quarterly numbers look better than we expected.".into(),
            ),
            (1, "Please send the signed contract by Friday.".into()),
        ],
        pause: Duration::from_millis(400),
    }
}

/// RMS of decoded audio.
fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    (pcm.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
}

#[tokio::test]
async fn each_voice_arrives_as_its_own_labelled_stream_and_leaves_when_the_conversation_ends() {
    let (rooms, base) = server().await;
    let conversation = Rendered::speak(&two_voices()).expect("espeak-ng speaks");
    let length = conversation.duration();
    rooms.add_room("r1", Arc::new(conversation));
    let c = RoomConnector::new(&format!("{base}/rooms/r1"), loopback()).unwrap();
    let (tx, mut rx) = mpsc::channel(8192);
    let joined = c.join("meetbot (recording)", tx).await.expect("joins");
    assert_eq!(rooms.members("r1"), 1);

    let mut displays = BTreeMap::new();
    let mut left = Vec::new();
    let mut packets: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + length + Duration::from_secs(20);
    while left.len() < 2 {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the conversation ends in time")
            .expect("events");
        match ev {
            ConnectorEvent::Signal(Signal::ParticipantJoined { id, display }) => {
                displays.insert(id, display);
            }
            ConnectorEvent::Signal(Signal::ParticipantLeft { id }) => left.push(id),
            ConnectorEvent::Signal(Signal::Ended(r)) => panic!("ended early: {r}"),
            ConnectorEvent::Signal(_) => {}
            ConnectorEvent::Audio(p) => packets.entry(p.participant).or_default().push(p.payload),
        }
    }
    assert_eq!(
        displays,
        BTreeMap::from([
            ("ana".to_string(), Some("Ana".to_string())),
            ("ben".to_string(), Some("Ben".to_string()))
        ])
    );
    left.sort();
    assert_eq!(left, ["ana", "ben"]);
    assert_eq!(packets.keys().collect::<Vec<_>>(), ["ana", "ben"]);
    // Every track runs the whole conversation (silence between lines), at 50 packets a second.
    let expected = length.as_millis() as usize / 20;
    for (who, p) in &packets {
        assert!(
            p.len() * 10 >= expected * 9,
            "{who}: {} packets of {expected}",
            p.len()
        );
    }
    // Ana talks first, Ben second: each track holds its own voice where it talks.
    let decode = |p: &[Vec<u8>]| {
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut out = Vec::new();
        for pkt in p {
            let mut buf = vec![0i16; 5760];
            let n = dec.decode(pkt, &mut buf, false).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        out
    };
    let ana = decode(&packets["ana"]);
    let ben = decode(&packets["ben"]);
    let half = ana.len().min(ben.len()) / 2;
    assert!(
        rms(&ana[..half]) > 10.0 * rms(&ana[half..]).max(1.0),
        "Ana talks in the first half"
    );
    assert!(
        rms(&ben[half..]) > 10.0 * rms(&ben[..half]).max(1.0),
        "Ben talks in the second half"
    );

    joined.leave().await;
    assert_eq!(
        rooms.members("r1"),
        0,
        "leaving removes the bot from the room"
    );
}

#[tokio::test]
async fn an_unknown_room_or_a_closed_server_fails_the_join_with_the_reason() {
    let (rooms, base) = server().await;
    let (tx, _rx) = mpsc::channel(16);
    let c = RoomConnector::new(&format!("{base}/rooms/nowhere"), loopback()).unwrap();
    assert!(matches!(
        c.join("bot", tx.clone()).await.err(),
        Some(ConnectError::NoSuchMeeting(_))
    ));
    let c = RoomConnector::new("http://127.0.0.1:1/rooms/x", loopback()).unwrap();
    assert!(matches!(
        c.join("bot", tx).await.err(),
        Some(ConnectError::Unreachable(_))
    ));
    drop(rooms);
}

#[tokio::test]
async fn malformed_requests_to_the_room_server_get_clear_refusals() {
    let (rooms, base) = server().await;
    rooms.add_room("r", Arc::new(Rendered::speak(&two_voices()).unwrap()));
    let http = reqwest::Client::new();
    for (body, status) in [
        ("not json", 400u16),
        ("{\"display\": \"\"}", 400),
        ("{\"name\": \"x\"}", 400),
    ] {
        let r = http
            .post(format!("{base}/rooms/r/participants"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(
            v["error"].is_string() || status != 400 || v.is_null(),
            "{v}"
        );
    }
    let r = http
        .post(format!("{base}/rooms/r/participants/m999/answer"))
        .json(&serde_json::json!({"type": "answer", "sdp": "v=0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = http
        .delete(format!("{base}/rooms/r/participants/m999"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}
