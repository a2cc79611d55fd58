// A local stand-in for a meeting platform's web client, for the browser connector's tests.
// It reproduces each platform's join flow with the elements and texts the built-in profiles
// look for: launcher (Teams), pre-join (name, microphone, camera, join), lobby, admission or
// denial after a delay, the call (leave button, participant list with a speaking marker,
// chat), removal and the end of the meeting. Speakers are espeak WAVs played by the page into
// a peer connection inside the page, so the page receives them as remote WebRTC audio tracks:
// one track per speaker (Meet) or one mixed track (Teams, Zoom). What the bot does is reported
// to the test server at /events.
(async () => {
  const S = window.SCENARIO;
  const P = S.platform;
  const post = (ev) => fetch('/events/' + S.id, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(ev) });
  const root = document.getElementById('app');
  const h = (html) => { root.innerHTML = html; };
  const esc = (s) => s.replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
  let mic = true, cam = true, typedName = '';

  // Pre-join ----------------------------------------------------------------------------------
  function launcher() {
    h(`<h1>How do you want to join your Teams meeting?</h1>
       <button id="web">Continue on this browser</button><button>Open your Teams app</button>`);
    document.getElementById('web').onclick = prejoin;
  }

  function prejoin() {
    const join = S.join_label || (P === 'meet' ? 'Ask to join' : P === 'teams' ? 'Join now' : 'Join');
    if (P === 'meet') {
      h(`<h1>What's your name?</h1>
         <input aria-label="Your name" placeholder="Your name" id="name">
         <div role="button" tabindex="0" id="mic" aria-label="Turn off microphone (ctrl + d)">mic</div>
         <div role="button" tabindex="0" id="cam" aria-label="Turn off camera (ctrl + e)">cam</div>
         <button id="join"><span>${join}</span></button>`);
      document.getElementById('mic').onclick = (e) => { mic = false; e.target.setAttribute('aria-label', 'Turn on microphone (ctrl + d)'); };
      document.getElementById('cam').onclick = (e) => { cam = false; e.target.setAttribute('aria-label', 'Turn on camera (ctrl + e)'); };
    } else if (P === 'teams') {
      h(`<h1>Choose your video and audio options</h1>
         <input data-tid="prejoin-display-name-input" placeholder="Type your name" id="name">
         <div role="switch" data-tid="toggle-mute" aria-checked="true" id="mic">Microphone</div>
         <div role="switch" data-tid="toggle-video" aria-checked="true" id="cam">Camera</div>
         <button data-tid="${S.join_tid || 'prejoin-join-button'}" id="join">${join}</button>`);
      document.getElementById('mic').onclick = (e) => { mic = false; e.target.setAttribute('aria-checked', 'false'); };
      document.getElementById('cam').onclick = (e) => { cam = false; e.target.setAttribute('aria-checked', 'false'); };
    } else {
      h(`<h1>Enter Meeting Info</h1>
         <input id="input-for-name" aria-label="Your Name">
         <button id="preview-audio-control-button" aria-label="Mute">Mute</button>
         <button id="preview-video-control-button" aria-label="Stop Video">Stop Video</button>
         <button class="preview-join-button zm-btn--primary" id="join">${join}</button>`);
      document.getElementById('preview-audio-control-button').onclick = (e) => { mic = false; e.target.setAttribute('aria-label', 'Unmute'); };
      document.getElementById('preview-video-control-button').onclick = (e) => { cam = false; e.target.setAttribute('aria-label', 'Start Video'); };
    }
    const name = document.querySelector('#name, #input-for-name');
    name.addEventListener('input', () => { typedName = name.value; });
    document.getElementById('join').onclick = () => {
      post({ kind: 'join', name: name.value, mic, cam });
      if (S.flow === 'open') return call();
      lobby();
    };
  }

  // Lobby ---------------------------------------------------------------------------------------
  function lobby() {
    const text = P === 'meet' ? 'Asking to be let in...' : P === 'teams' ? 'Hi, Someone in the meeting should let you in soon' : 'Please wait, the meeting host will let you in soon.';
    h(`<p>${text}</p>`);
    if (S.flow === 'deny') {
      setTimeout(() => {
        const t = P === 'meet' ? "You can't join this call" : P === 'teams' ? 'Sorry, but you were denied access to the meeting.' : 'The host has denied your request';
        h(`<h2>${t}</h2>`);
        post({ kind: 'denied' });
      }, S.admit_after_ms);
    } else if (S.flow === 'admit') {
      setTimeout(() => { post({ kind: 'admitted' }); call(); }, S.admit_after_ms);
    }
  }

  // The call --------------------------------------------------------------------------------------
  const people = S.speakers.map((s, i) => ({ ...s, speaking: false, tid: 'pid-' + (1000 + i) }));
  function roster() {
    const me = typedName || 'me';
    const all = [...people, { name: me, tid: 'pid-self', speaking: false }];
    if (P === 'meet') {
      return all.map((p) => `<div data-participant-id="spaces/x/devices/${p.tid}" data-speaking="${p.speaking}"><span class="notranslate">${esc(p.name)}</span></div>`).join('');
    } else if (P === 'teams') {
      return `<div data-tid="participantsInCall-In this meeting">` + all.map((p) => `<div data-cid="roster-participant" data-object-id="${p.tid}"><span data-tid="roster-participant-name">${esc(p.name)}</span><div data-tid="voice-level-stream-outline" data-is-speaking="${p.speaking}"></div></div>`).join('') + `</div>`;
    }
    return `<ul aria-label="participants list">` + all.map((p) => `<li class="participants-item__item-layout${p.speaking ? ' participants-item__speaking' : ''}" data-participant-id="${p.tid}"><span class="participants-item__display-name">${esc(p.name)}</span></li>`).join('') + `</ul>`;
  }
  let rosterOpen = P === 'meet';
  let chatOpen = false;
  function render() {
    const panel = document.getElementById('roster');
    if (panel) panel.innerHTML = rosterOpen ? roster() : '';
  }

  function call() {
    if (P === 'meet') {
      h(`<div id="roster"></div>
         <button aria-label="Chat with everyone" id="chatbtn">chat</button>
         <div id="chat"></div>
         <button aria-label="Leave call" id="leave">leave</button>`);
    } else if (P === 'teams') {
      h(`<button data-tid="roster-button" aria-pressed="false" id="rosterbtn">People</button>
         <button data-tid="chat-button" aria-pressed="false" id="chatbtn">Chat</button>
         <div id="roster"></div><div id="chat"></div>
         <button data-tid="hangup-main-btn" id="leave">Leave</button>`);
      document.getElementById('rosterbtn').onclick = (e) => { rosterOpen = true; e.target.setAttribute('aria-pressed', 'true'); render(); };
    } else {
      h(`<button aria-label="open the participants list pane,[${people.length + 1}] particpants" id="rosterbtn">Participants <span class="footer-button__number-counter">${people.length + 1}</span></button>
         <button aria-label="open the chat panel" id="chatbtn">Chat</button>
         <div id="roster"></div><div id="chat"></div>
         <button class="footer__leave-btn" aria-label="Leave" id="leave">Leave</button>`);
      document.getElementById('rosterbtn').onclick = () => { rosterOpen = true; render(); };
    }
    document.getElementById('chatbtn').onclick = (e) => {
      if (chatOpen) return;
      chatOpen = true;
      if (e.target.hasAttribute('aria-pressed')) e.target.setAttribute('aria-pressed', 'true');
      const c = document.getElementById('chat');
      if (P === 'meet') {
        c.innerHTML = `<textarea aria-label="Send a message"></textarea><button aria-label="Send a message" id="send">send</button>`;
      } else if (P === 'teams') {
        c.innerHTML = `<div data-tid="ckeditor" contenteditable="true" role="textbox"></div><button data-tid="newMessageCommands-send" id="send">Send</button>`;
      } else {
        c.innerHTML = `<textarea class="chat-box__chat-textarea"></textarea>`;
        const ta = c.querySelector('textarea');
        ta.addEventListener('keydown', (k) => {
          if (k.key === 'Enter') { k.preventDefault(); post({ kind: 'chat', text: ta.value }); ta.value = ''; }
        });
      }
      const send = document.getElementById('send');
      if (send) send.onclick = () => {
        const box = c.querySelector('textarea, [contenteditable]');
        post({ kind: 'chat', text: box.value !== undefined ? box.value : box.innerText });
      };
    };
    document.getElementById('leave').onclick = () => { post({ kind: 'left' }); h('<h2>You left the meeting.</h2>'); stopAudio(); };
    render();
    audio().catch((e) => post({ kind: 'error', text: String(e) }));
    if (S.remove_after_ms) setTimeout(() => {
      stopAudio();
      const t = P === 'meet' ? "You've been removed from the meeting" : P === 'teams' ? "You've been removed from this meeting" : 'You have been removed from this meeting';
      h(`<h2>${t}</h2>`); post({ kind: 'removed' });
    }, S.remove_after_ms);
    if (S.end_after_ms) setTimeout(() => {
      stopAudio();
      const t = P === 'meet' ? 'The call has ended' : P === 'teams' ? 'The meeting has ended' : 'This meeting has been ended by host';
      h(`<h2>${t}</h2>`); post({ kind: 'ended' });
    }, S.end_after_ms);
  }

  // Audio: speakers' WAVs into a peer connection inside the page, received as remote tracks.
  let pcs = [];
  function stopAudio() { pcs.forEach((pc) => pc.close()); pcs = []; }
  async function audio() {
    if (!people.length) return;
    const ctx = new AudioContext({ sampleRate: 48000 });
    await ctx.resume();
    const send = new RTCPeerConnection({ iceServers: [] });
    const recv = new RTCPeerConnection({ iceServers: [] });
    pcs = [send, recv];
    send.onicecandidate = (e) => e.candidate && recv.addIceCandidate(e.candidate);
    recv.onicecandidate = (e) => e.candidate && send.addIceCandidate(e.candidate);
    const sinks = [];
    recv.ontrack = (e) => {
      const a = new Audio();
      a.srcObject = e.streams[0];
      a.muted = true;
      a.play().catch(() => {});
      sinks.push(a);
    };
    const mixed = S.audio === 'mixed' ? ctx.createMediaStreamDestination() : null;
    const buffers = await Promise.all(people.map(async (p) => ctx.decodeAudioData(await (await fetch(p.wav)).arrayBuffer())));
    const dests = people.map((p) => mixed || ctx.createMediaStreamDestination());
    if (mixed) send.addTrack(mixed.stream.getAudioTracks()[0], mixed.stream);
    else dests.forEach((d) => send.addTrack(d.stream.getAudioTracks()[0], d.stream));
    await send.setLocalDescription(await send.createOffer());
    await recv.setRemoteDescription(send.localDescription);
    await recv.setLocalDescription(await recv.createAnswer());
    await send.setRemoteDescription(recv.localDescription);
    post({ kind: 'audio-ready' });
    people.forEach((p, i) => {
      setTimeout(() => {
        const src = ctx.createBufferSource();
        src.buffer = buffers[i];
        src.connect(dests[i]);
        p.speaking = true; render();
        src.onended = () => { p.speaking = false; render(); post({ kind: 'spoke', name: p.name }); };
        src.start();
      }, p.start_ms);
    });
  }

  if (S.path_check && location.pathname !== S.path_check) {
    h('<h2>Not found</h2>');
    return;
  }
  if (P === 'teams') launcher(); else prejoin();
})();
