//! The Janus VideoRoom connector against the real Janus (Debian's 1.1.2) in a network namespace
//! the test creates, with real WebRTC participants (webrtc-rs + libopus) speaking espeak-ng
//! sentences: the bot receives each participant as its own stream, and what it decodes is what
//! was said; a room that does not exist or refuses the bot fails the join with the reason.

use meetbot_bot::audio_stream::Outgoing;
use meetbot_bot::connector::{ConnectError, ConnectorEvent, MeetingConnector, Signal};
use meetbot_bot::janus::{JanusAudioBridge, JanusVideoRoom, VideoRoomSettings};
use meetbot_bot::session::{LeaveReason, Lifecycle, Rules, run_session};
use meetbot_testsupport::janus::{
    JanusServer, Publisher, Room, ice_ip, in_netns, speech, voiced_span,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;

const SENTENCES: [&str; 3] = [
    "The quarterly numbers look better than we expected.",
    "Please send the signed contract to the client by Friday.",
    "We will review the treatment plan at the next appointment.",
];

fn settings(j: &JanusServer, room: u64, pin: Option<&str>) -> VideoRoomSettings {
    VideoRoomSettings {
        url: j.url(),
        room,
        pin: pin.map(String::from),
        ice_ip: ice_ip(),
        channel_depth: 4096,
    }
}

#[test]
fn bot_receives_each_of_three_speakers_as_its_own_stream_and_decodes_what_they_said() {
    in_netns(|| async {
        let j = JanusServer::start().await;
        j.create_room(1234, None).await;
        let (tx, mut rx) = mpsc::channel(4096);
        let bot = JanusVideoRoom::new(settings(&j, 1234, None));
        let joined = bot.join("meetbot (recording)", tx).await.unwrap();

        let lead_in = Duration::from_millis(2500);
        let mut sent = BTreeMap::new();
        let mut publishers = Vec::new();
        for (i, s) in SENTENCES.iter().enumerate() {
            let pcm = speech(s);
            let p = Publisher::start(
                &j.url(),
                1234,
                &format!("Speaker {i}"),
                lead_in,
                pcm.clone(),
            )
            .await;
            sent.insert(p.id.to_string(), pcm);
            publishers.push(p);
        }
        let longest = sent.values().map(|p| p.len()).max().unwrap() as u64 * 1000 / 48_000;
        let until = tokio::time::Instant::now() + lead_in + Duration::from_millis(longest + 2500);

        let mut joined_ids = Vec::new();
        let mut packets: BTreeMap<String, Vec<(u16, Vec<u8>)>> = BTreeMap::new();
        let mut ssrcs: BTreeMap<String, u32> = BTreeMap::new();
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, rx.recv()).await {
            match ev {
                ConnectorEvent::Signal(Signal::ParticipantJoined { id, display }) => {
                    assert!(display.unwrap().starts_with("Speaker "));
                    joined_ids.push(id);
                }
                ConnectorEvent::Audio(a) => {
                    let prev = ssrcs.insert(a.participant.clone(), a.ssrc);
                    assert!(prev.is_none_or(|s| s == a.ssrc), "one SSRC per participant");
                    packets
                        .entry(a.participant)
                        .or_default()
                        .push((a.sequence, a.payload));
                }
                _ => {}
            }
        }
        joined_ids.sort();
        let mut expected: Vec<String> = sent.keys().cloned().collect();
        expected.sort();
        assert_eq!(joined_ids, expected, "every publisher announced");
        assert_eq!(packets.len(), 3, "three separate streams");
        let distinct: std::collections::BTreeSet<u32> = ssrcs.values().copied().collect();
        assert_eq!(distinct.len(), 3, "three SSRCs");

        for (id, mut pkts) in packets {
            pkts.sort_by_key(|(seq, _)| *seq);
            let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
            let mut pcm = Vec::new();
            let mut buf = vec![0i16; 5760];
            for (_, p) in &pkts {
                let n = dec.decode(p, &mut buf, false).unwrap();
                pcm.extend_from_slice(&buf[..n]);
            }
            let want = voiced_span(&sent[&id], 300.0);
            let got = voiced_span(&pcm, 300.0);
            let diff = (got.as_secs_f64() - want.as_secs_f64()).abs() / want.as_secs_f64();
            assert!(
                diff <= 0.02,
                "participant {id}: sent {want:?} of speech, decoded {got:?} ({:.1}% off)",
                diff * 100.0
            );
            eprintln!(
                "participant {id}: {} packets, speech sent {want:?}, decoded {got:?} ({:.2}% off)",
                pkts.len(),
                diff * 100.0
            );
            let energy = pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / pcm.len() as f64;
            assert!(energy.sqrt() > 300.0, "participant {id}: no speech energy");
        }
        for p in publishers {
            p.leave().await;
        }
        joined.leave().await;
    });
}

#[test]
fn a_room_that_does_not_exist_or_wants_a_pin_fails_the_join_with_the_reason() {
    in_netns(|| async {
        let j = JanusServer::start().await;
        let (tx, _rx) = mpsc::channel(16);
        let e = JanusVideoRoom::new(settings(&j, 999, None))
            .join("meetbot (recording)", tx.clone())
            .await
            .err()
            .expect("joined a room that does not exist");
        assert!(matches!(e, ConnectError::NoSuchMeeting(_)), "{e}");
        j.create_room(77, Some("1234")).await;
        let e = JanusVideoRoom::new(settings(&j, 77, Some("0000")))
            .join("meetbot (recording)", tx.clone())
            .await
            .err()
            .expect("joined with a wrong pin");
        assert!(matches!(e, ConnectError::Refused(_)), "{e}");
        // With the right pin it joins.
        let ok = JanusVideoRoom::new(settings(&j, 77, Some("1234")))
            .join("meetbot (recording)", tx)
            .await
            .unwrap();
        ok.leave().await;
    });
}

/// Runs a bot session in `room` with `rules`; returns the lifecycle it reported.
async fn session(
    j: &JanusServer,
    room: u64,
    rules: Rules,
    stop: impl std::future::Future<Output = ()>,
) -> (Vec<Lifecycle>, LeaveReason, u64) {
    let (rtx, mut rrx) = mpsc::channel(64);
    let (atx, mut arx) = mpsc::channel(4096);
    let drain = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(o) = arx.recv().await {
            n += u64::from(matches!(o, Outgoing::Audio(_)));
        }
        n
    });
    let bot = JanusVideoRoom::new(settings(j, room, None));
    let out = run_session(&bot, "meetbot (recording)", "", rules, rtx, atx, stop)
        .await
        .unwrap();
    let mut life = Vec::new();
    while let Ok(l) = rrx.try_recv() {
        life.push(l);
    }
    let forwarded = drain.await.unwrap();
    assert_eq!(
        forwarded, out.packets,
        "every packet went to the audio stream"
    );
    (life, out.reason, out.packets)
}

fn short(alone: u64, silence: u64, max: u64) -> Rules {
    Rules {
        alone_timeout: Duration::from_millis(alone),
        silence_timeout: Duration::from_millis(silence),
        max_duration: Duration::from_millis(max),
        ..Rules::default()
    }
}

#[test]
fn alone_silence_max_duration_and_a_destroyed_room_each_end_the_session_with_their_reason() {
    in_netns(|| async {
        let j = JanusServer::start().await;
        for room in [2001, 2002, 2003, 2004] {
            j.create_room(room, None).await;
        }
        let talk = speech(SENTENCES[0]);

        // Alone: the only participant speaks, then leaves.
        let p = Publisher::start(&j.url(), 2001, "Speaker", Duration::ZERO, talk.clone()).await;
        let url = j.url();
        let leaver = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            p.leave().await;
        });
        let (life, reason, packets) = session(
            &j,
            2001,
            short(1000, 30_000, 60_000),
            std::future::pending(),
        )
        .await;
        leaver.await.unwrap();
        assert_eq!(reason, LeaveReason::Alone);
        assert!(packets > 0);
        assert_eq!(life.first(), Some(&Lifecycle::Joining));
        assert!(
            life.contains(&Lifecycle::InCall) && life.contains(&Lifecycle::Recording),
            "{life:?}"
        );
        assert_eq!(life.last(), Some(&Lifecycle::Leaving(LeaveReason::Alone)));

        // Silence: a participant is there, sending packets, saying nothing.
        let quiet = Publisher::start(&url, 2002, "Quiet", Duration::ZERO, Vec::new()).await;
        let (_, reason, packets) = session(
            &j,
            2002,
            short(30_000, 2000, 60_000),
            std::future::pending(),
        )
        .await;
        assert_eq!(reason, LeaveReason::Silence);
        assert!(packets > 0, "silence is measured on audio that arrives");
        quiet.leave().await;

        // Max duration: people keep talking.
        let mut long = Vec::new();
        for _ in 0..4 {
            long.extend_from_slice(&talk);
        }
        let talker = Publisher::start(&url, 2003, "Talker", Duration::ZERO, long).await;
        let (_, reason, _) = session(
            &j,
            2003,
            short(30_000, 30_000, 2500),
            std::future::pending(),
        )
        .await;
        assert_eq!(reason, LeaveReason::MaxDuration);
        talker.leave().await;

        // The room is destroyed under the bot.
        let other = Publisher::start(&url, 2004, "Host", Duration::ZERO, talk.clone()).await;
        let destroyer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let s = meetbot_bot::janus::JanusSession::create(&url)
                .await
                .unwrap();
            let h = s.attach("janus.plugin.videoroom").await.unwrap();
            s.message(
                h.id,
                serde_json::json!({"request": "destroy", "room": 2004}),
                None,
            )
            .await
            .unwrap();
            s.destroy().await;
        });
        let (_, reason, _) = session(
            &j,
            2004,
            short(30_000, 30_000, 60_000),
            std::future::pending(),
        )
        .await;
        destroyer.await.unwrap();
        assert_eq!(reason, LeaveReason::Ended("room destroyed".into()));
        other.leave().await;
    });
}

#[test]
fn in_an_audiobridge_the_bot_receives_the_mix_of_both_speakers() {
    in_netns(|| async {
        let j = JanusServer::start().await;
        j.create_bridge(4321).await;
        let (tx, mut rx) = mpsc::channel(4096);
        let bot = JanusAudioBridge::new(settings(&j, 4321, None));
        let joined = bot.join("meetbot (recording)", tx).await.unwrap();
        let lead_in = Duration::from_millis(2500);
        let a = speech(SENTENCES[0]);
        let b = speech(SENTENCES[1]);
        let longest = a.len().max(b.len()) as u64 * 1000 / 48_000;
        let pa = Publisher::start_in(
            Room::AudioBridge,
            &j.url(),
            4321,
            "Speaker A",
            lead_in,
            a.clone(),
        )
        .await;
        let pb = Publisher::start_in(
            Room::AudioBridge,
            &j.url(),
            4321,
            "Speaker B",
            lead_in,
            b.clone(),
        )
        .await;
        let until = tokio::time::Instant::now() + lead_in + Duration::from_millis(longest + 2500);
        let mut joined_names = Vec::new();
        let mut streams = std::collections::BTreeSet::new();
        let mut pkts: Vec<(u16, Vec<u8>)> = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, rx.recv()).await {
            match ev {
                ConnectorEvent::Signal(Signal::ParticipantJoined { display, .. }) => {
                    joined_names.push(display.unwrap_or_default())
                }
                ConnectorEvent::Audio(p) => {
                    streams.insert(p.participant.clone());
                    pkts.push((p.sequence, p.payload));
                }
                _ => {}
            }
        }
        joined_names.sort();
        assert_eq!(joined_names, vec!["Speaker A", "Speaker B"]);
        assert_eq!(
            streams.into_iter().collect::<Vec<_>>(),
            vec!["mix".to_string()]
        );
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = Vec::new();
        let mut buf = vec![0i16; 5760];
        for (_, p) in &pkts {
            let n = dec.decode(p, &mut buf, false).unwrap();
            pcm.extend_from_slice(&buf[..n]);
        }
        let want = voiced_span(if a.len() > b.len() { &a } else { &b }, 300.0);
        let got = voiced_span(&pcm, 300.0);
        let diff = (got.as_secs_f64() - want.as_secs_f64()).abs() / want.as_secs_f64();
        eprintln!(
            "mix: {} packets, longest speech {want:?}, decoded {got:?}",
            pkts.len()
        );
        assert!(diff <= 0.05, "mix: speech {want:?}, decoded {got:?}");
        pa.leave().await;
        pb.leave().await;
        joined.leave().await;
    });
}
