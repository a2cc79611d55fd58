//! Real Janus (Debian's `janus` 1.1) for bot tests, inside a network namespace the test creates:
//! Janus ignores loopback interfaces for ICE, so the namespace gets a veth pair carrying
//! 127.0.0.2/32, Janus is told to use only that (`ice_enforce_list`), mDNS and STUN are off, and
//! every peer binds 127.0.0.2. Nothing leaves the namespace.
//!
//! * [`in_netns`] runs a test body on a thread that has its own network namespace (sockets and
//!   child processes made there live in it) with a current-thread tokio runtime.
//! * [`JanusServer`] starts Janus with a generated configuration (HTTP transport on
//!   127.0.0.1:8088 inside the namespace, VideoRoom plugin only) and stops it by PID.
//! * [`Publisher`] is a real WebRTC participant (webrtc-rs): joins a VideoRoom, publishes an
//!   Opus track encoded from PCM (libopus), paced at 20 ms a packet.
//! * [`speech`] makes 48 kHz PCM of a sentence with espeak-ng.

use meetbot_bot::janus::{GatherDone, JanusSession, gathered_description, peer_connection};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::PeerConnection;

/// The address every WebRTC peer in the namespace uses.
pub const ICE_IP: &str = "127.0.0.2";

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args[0]));
    assert!(st.success(), "{args:?} failed");
}

/// Runs `body` on a thread in a new network namespace (loopback up, a veth pair with
/// 127.0.0.2/32) with a current-thread tokio runtime; returns its result.
pub fn in_netns<F, Fut, T>(body: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        // SAFETY: unshare(2) with CLONE_NEWNET moves only this thread (and what it starts) into
        // a fresh network namespace; it touches no memory.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) failed: {} (the Janus tests need root or CAP_SYS_ADMIN)",
            std::io::Error::last_os_error()
        );
        sh(&["ip", "link", "set", "lo", "up"]);
        sh(&[
            "ip", "link", "add", "mbv0", "type", "veth", "peer", "name", "mbv1",
        ]);
        sh(&["ip", "addr", "add", "127.0.0.2/32", "dev", "mbv0"]);
        sh(&["ip", "link", "set", "mbv0", "up"]);
        sh(&["ip", "link", "set", "mbv1", "up"]);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(body())
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

pub struct JanusServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl JanusServer {
    /// Starts Janus in the current network namespace (call inside [`in_netns`]).
    pub async fn start() -> Self {
        assert!(
            Command::new("janus").arg("--version").output().is_ok(),
            "janus is not installed: `apt-get install janus` (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let lib = "/usr/lib/x86_64-linux-gnu/janus";
        let plugins: Vec<String> = std::fs::read_dir(format!("{lib}/plugins"))
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| {
                        n.ends_with(".so")
                            && n != "libjanus_videoroom.so"
                            && n != "libjanus_audiobridge.so"
                    })
                    .collect()
            })
            .unwrap_or_default();
        let transports: Vec<String> = std::fs::read_dir(format!("{lib}/transports"))
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.ends_with(".so") && n != "libjanus_http.so")
                    .collect()
            })
            .unwrap_or_default();
        std::fs::write(
            dir.path().join("janus.jcfg"),
            format!(
                r#"general: {{
	configs_folder = "{d}"
	plugins_folder = "{lib}/plugins"
	transports_folder = "{lib}/transports"
	events_folder = "{lib}/events"
	loggers_folder = "{lib}/loggers"
	debug_level = 4
	session_timeout = 60
}}
media: {{
	rtp_port_range = "20000-40000"
}}
nat: {{
	ice_enforce_list = "mbv0"
	ignore_mdns = true
}}
plugins: {{
	disable = "{}"
}}
transports: {{
	disable = "{}"
}}
events: {{
	broadcast = false
}}
loggers: {{
	disable = "libjanus_jsonlog.so"
}}
"#,
                plugins.join(","),
                transports.join(",")
            ),
        )
        .expect("write janus.jcfg");
        std::fs::write(
            dir.path().join("janus.transport.http.jcfg"),
            "general: {\n\tbase_path = \"/janus\"\n\thttp = true\n\tport = 8088\n\tip = \"127.0.0.1\"\n\thttps = false\n}\nadmin: {\n\tadmin_http = false\n}\n",
        )
        .expect("write http config");
        std::fs::write(
            dir.path().join("janus.plugin.videoroom.jcfg"),
            "general: {\n}\n",
        )
        .expect("write videoroom config");
        std::fs::write(
            dir.path().join("janus.plugin.audiobridge.jcfg"),
            "general: {\n}\n",
        )
        .expect("write audiobridge config");
        let log = std::fs::File::create(dir.path().join("janus.log")).expect("log");
        let child = Command::new("janus")
            .args(["-F", &d, "-C", &format!("{d}/janus.jcfg")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start janus");
        let server = JanusServer { child, dir };
        let start = Instant::now();
        loop {
            if reqwest::Client::new()
                .get("http://127.0.0.1:8088/janus/info")
                .send()
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "Janus did not answer within 15 s; log:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    pub fn url(&self) -> String {
        "http://127.0.0.1:8088/janus".into()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("janus.log")).unwrap_or_default()
    }

    /// Creates an audio VideoRoom `room` (Opus), optionally with a `pin`.
    pub async fn create_room(&self, room: u64, pin: Option<&str>) {
        let s = JanusSession::create(&self.url()).await.expect("session");
        let h = s.attach("janus.plugin.videoroom").await.expect("attach");
        let mut req = json!({"request": "create", "room": room, "publishers": 16,
                             "audiocodec": "opus", "description": "meetbot test room"});
        if let Some(p) = pin {
            req["pin"] = json!(p);
        }
        let v = s.message(h.id, req, None).await.expect("create room");
        assert_eq!(v["plugindata"]["data"]["videoroom"], "created", "{v}");
        s.destroy().await;
    }

    /// Creates an AudioBridge `room` (48 kHz Opus mix).
    pub async fn create_bridge(&self, room: u64) {
        let s = JanusSession::create(&self.url()).await.expect("session");
        let h = s.attach("janus.plugin.audiobridge").await.expect("attach");
        let v = s
            .message(
                h.id,
                json!({"request": "create", "room": room, "sampling_rate": 48000,
                       "description": "meetbot test bridge"}),
                None,
            )
            .await
            .expect("create bridge");
        assert_eq!(v["plugindata"]["data"]["audiobridge"], "created", "{v}");
        s.destroy().await;
    }

    /// Destroys `room` (participants are told).
    pub async fn destroy_room(&self, room: u64) {
        let s = JanusSession::create(&self.url()).await.expect("session");
        let h = s.attach("janus.plugin.videoroom").await.expect("attach");
        let _ = s
            .message(h.id, json!({"request": "destroy", "room": room}), None)
            .await;
        s.destroy().await;
    }
}

impl Drop for JanusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 48 kHz mono PCM of `text` spoken by espeak-ng (its 22.05 kHz output, resampled linearly).
pub fn speech(text: &str) -> Vec<i16> {
    let (rate, pcm) = crate::speech::espeak_at(text, None, 150);
    crate::speech::resample(&pcm, rate, 48_000)
}

/// Length of the voiced part of 48 kHz PCM: from the first to the last 20 ms frame whose RMS is
/// above `threshold`.
pub fn voiced_span(pcm: &[i16], threshold: f64) -> Duration {
    let frames: Vec<bool> = pcm
        .chunks(960)
        .map(|f| {
            let e = f.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / f.len().max(1) as f64;
            e.sqrt() > threshold
        })
        .collect();
    let first = frames.iter().position(|&v| v);
    let last = frames.iter().rposition(|&v| v);
    match (first, last) {
        (Some(a), Some(b)) => Duration::from_millis(((b - a + 1) * 20) as u64),
        _ => Duration::ZERO,
    }
}

/// Which Janus room plugin a participant joins.
#[derive(Clone, Copy, Debug)]
pub enum Room {
    VideoRoom,
    AudioBridge,
}

/// What a participant says: each line's PCM (48 kHz mono) from its offset after joining; lines
/// do not overlap.
pub type Script = Vec<(Duration, Arc<Vec<i16>>)>;

/// A participant publishing Opus audio into a VideoRoom or an AudioBridge.
pub struct Publisher {
    pub id: u64,
    session: Arc<JanusSession>,
    handle: u64,
    pc: Arc<dyn PeerConnection>,
    sender: tokio::task::JoinHandle<()>,
}

impl Publisher {
    /// Joins `room` as `display` and sends `lead_in` of silence, then `pcm` (48 kHz mono), then
    /// silence until it leaves, one 20 ms Opus packet at a time.
    pub async fn start(
        url: &str,
        room: u64,
        display: &str,
        lead_in: Duration,
        pcm: Vec<i16>,
    ) -> Self {
        Self::start_in(Room::VideoRoom, url, room, display, lead_in, pcm).await
    }

    /// [`Publisher::start`] in a VideoRoom or an AudioBridge room.
    pub async fn start_in(
        kind: Room,
        url: &str,
        room: u64,
        display: &str,
        lead_in: Duration,
        pcm: Vec<i16>,
    ) -> Self {
        Self::join(kind, url, room, display, vec![(lead_in, Arc::new(pcm))]).await
    }

    /// Joins a VideoRoom `room` as `display` and says each line of `script` at its offset
    /// from joining (silence between and after), until it leaves.
    pub async fn speak(url: &str, room: u64, display: &str, script: Script) -> Self {
        Self::join(Room::VideoRoom, url, room, display, script).await
    }

    async fn join(kind: Room, url: &str, room: u64, display: &str, mut script: Script) -> Self {
        script.sort_by_key(|(at, _)| *at);
        let session = JanusSession::create(url).await.expect("publisher session");
        let (plugin, join, configure) = match kind {
            Room::VideoRoom => (
                "janus.plugin.videoroom",
                json!({"request": "join", "ptype": "publisher", "room": room, "display": display}),
                json!({"request": "configure", "audio": true, "video": false}),
            ),
            Room::AudioBridge => (
                "janus.plugin.audiobridge",
                json!({"request": "join", "room": room, "display": display, "muted": false}),
                json!({"request": "configure", "muted": false}),
            ),
        };
        let h = session.attach(plugin).await.expect("attach");
        let joined = session
            .message(h.id, join, None)
            .await
            .expect("publisher join");
        let id = joined["plugindata"]["data"]["id"]
            .as_u64()
            .expect("publisher id");

        let (gathered, grx) = GatherDone::new();
        let pc = peer_connection(ice_ip(), Arc::new(gathered))
            .await
            .expect("peer connection");
        let ssrc: u32 = rand_ssrc();
        let codec = RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        };
        let track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    format!("stream-{id}"),
                    format!("audio-{id}"),
                    format!("audio-{id}"),
                    RtpCodecKind::Audio,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(ssrc),
                            ..Default::default()
                        },
                        codec,
                        ..Default::default()
                    }],
                ),
            )
            .expect("track"),
        );
        pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .expect("add track");
        let offer = pc.create_offer(None).await.expect("offer");
        pc.set_local_description(offer).await.expect("set local");
        let offer = gathered_description(pc.as_ref(), grx)
            .await
            .expect("local description");
        let configured = session
            .message(h.id, configure, Some(offer))
            .await
            .expect("configure");
        let answer: RTCSessionDescription =
            serde_json::from_value(configured["jsep"].clone()).expect("answer jsep");
        pc.set_remote_description(answer).await.expect("set remote");

        let payload_type = negotiated_opus_pt(&configured["jsep"]);
        let sender = tokio::spawn(async move {
            let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
                .expect("opus encoder");
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut out = vec![0u8; 1500];
            let mut frame = vec![0i16; 960];
            // Sample offset of each 20 ms frame from joining; `line` is the first line not over.
            let mut at = 0usize;
            let mut line = 0usize;
            let start_of = |(off, _): &(Duration, Arc<Vec<i16>>)| off.as_millis() as usize * 48;
            loop {
                tick.tick().await;
                while script
                    .get(line)
                    .is_some_and(|l| at >= start_of(l) + l.1.len())
                {
                    line += 1;
                }
                frame.fill(0);
                if let Some(l) = script.get(line)
                    && at >= start_of(l)
                {
                    let from = at - start_of(l);
                    let part = &l.1[from..(from + 960).min(l.1.len())];
                    frame[..part.len()].copy_from_slice(part);
                }
                at += 960;
                let n = match enc.encode(&frame, &mut out) {
                    Ok(n) => n,
                    Err(_) => continue,
                };
                let sample = rtc::media::Sample {
                    data: bytes::Bytes::copy_from_slice(&out[..n]),
                    duration: Duration::from_millis(20),
                    ..rtc::media::Sample::new(Instant::now())
                };
                if track
                    .sample_writer(ssrc, payload_type)
                    .write_sample(&sample)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Publisher {
            id,
            session,
            handle: h.id,
            pc,
            sender,
        }
    }

    /// Leaves the room (the bot sees `leaving`/`unpublished`).
    pub async fn leave(self) {
        self.sender.abort();
        let _ = self
            .session
            .message(self.handle, json!({"request": "leave"}), None)
            .await;
        let _ = self.pc.close().await;
        self.session.destroy().await;
    }
}

fn rand_ssrc() -> u32 {
    let mut b = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u32::from_le_bytes(b) | 1
}

/// The payload type Janus's answer gives Opus.
fn negotiated_opus_pt(jsep: &Value) -> u8 {
    jsep["sdp"]
        .as_str()
        .and_then(|sdp| {
            sdp.lines().find_map(|l| {
                let rest = l.strip_prefix("a=rtpmap:")?;
                let (pt, codec) = rest.split_once(' ')?;
                codec
                    .to_ascii_lowercase()
                    .starts_with("opus/")
                    .then(|| pt.parse().ok())?
            })
        })
        .unwrap_or(111)
}

/// One participant in each VideoRoom `first..first + n` at `url`, talking without a pause for
/// `seconds`, then leaving (the load of the bot benchmarks).
pub async fn talk_in_rooms(url: &str, first: u64, n: u64, seconds: u64) {
    let mut talk = Vec::new();
    for _ in 0..30 {
        talk.extend(speech(
            "We will review the treatment plan at the next appointment.",
        ));
    }
    let mut ps = Vec::new();
    for r in first..first + n {
        ps.push(Publisher::start(url, r, "Speaker", Duration::ZERO, talk.clone()).await);
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    for p in ps {
        p.leave().await;
    }
}

/// `ip` from [`ICE_IP`].
pub fn ice_ip() -> IpAddr {
    ICE_IP.parse().expect("literal")
}

/// Makes `target` (a server in the host's network namespace, e.g. RabbitMQ or the MongoDB-wire
/// server) reachable from inside a test's namespace: call it on the namespace's thread; it binds
/// a loopback port there and returns it. Each connection to it is accepted by a task of `host`
/// (a runtime whose threads were started outside the namespace), which opens the outward
/// connection from the host's namespace and copies both ways. Nothing else leaves the namespace.
pub fn relay_from_host(
    host: &tokio::runtime::Handle,
    target: std::net::SocketAddr,
) -> std::net::SocketAddr {
    // Without its `Cut` the relay's connections are never cut (a closed watch is ignored).
    relay_with_cut(host, target).0
}

/// Cuts every connection a relay carries at the moment (new ones are still accepted): what a
/// broker restart or a network fault looks like to the clients.
pub struct Cut(tokio::sync::watch::Sender<u64>);

impl Cut {
    pub fn cut(&self) {
        self.0.send_modify(|n| *n += 1);
    }
}

/// [`relay_from_host`] with a [`Cut`] for its connections.
pub fn relay_with_cut(
    host: &tokio::runtime::Handle,
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, Cut) {
    let (cut, cuts) = tokio::sync::watch::channel(0u64);
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind a relay port in the namespace");
    listener
        .set_nonblocking(true)
        .expect("non-blocking relay listener");
    let addr = listener.local_addr().expect("relay address");
    host.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("relay listener");
        while let Ok((mut inner, _)) = listener.accept().await {
            let mut cuts = cuts.clone();
            cuts.mark_unchanged();
            tokio::spawn(async move {
                // Opened on a host runtime thread: a socket of the host's namespace.
                if let Ok(mut outer) = tokio::net::TcpStream::connect(target).await {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inner, &mut outer) => {}
                        Ok(()) = cuts.changed() => {}
                    }
                }
            });
        }
    });
    (addr, Cut(cut))
}
