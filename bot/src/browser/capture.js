// meetbot's page helper, installed before the meeting page's own scripts run.
//
// * Every RTCPeerConnection the page makes is watched; each remote audio track it receives is
//   relayed to the bot over a loopback peer connection of its own (one per track, send-only,
//   candidates only on the bot's address). Offers wait in an outbox the bot drains.
// * look(cfg) reports what the page shows (state, participants, who speaks) in one call.
// * act(step) performs one join step (wait, click, type) if its target is there.
// Nothing here stores or sends audio anywhere but to the bot's relay.
(() => {
  if (window.__meetbot) return;
  const Native = window.RTCPeerConnection;
  const M = {
    outbox: [],
    closed: [],
    relays: new Map(),
    relayed: new Set(),
    nextId: 1,
    // Set by the bot in front of this script: only candidates on it go into relay offers.
    relayAddress: window.__meetbotRelayAddress || null,
  };

  const visible = (e) => !!(e && (e.offsetWidth || e.offsetHeight || e.getClientRects().length));
  const textOf = (e) =>
    ((e.innerText || '').trim() || e.getAttribute('aria-label') || e.getAttribute('title') || e.value || '').trim();

  function find(t) {
    if (!t) return [];
    let re = null;
    if (t.text) re = new RegExp(t.text, 'i');
    if (t.selector) {
      let els;
      try { els = Array.from(document.querySelectorAll(t.selector)); } catch (_) { return []; }
      return els.filter((e) => visible(e) && (!re || re.test(textOf(e))));
    }
    const body = document.body ? document.body.innerText || '' : '';
    return re && re.test(body) ? [document.body] : [];
  }
  const any = (list) => (list || []).some((t) => find(t).length > 0);

  function filterSdp(sdp) {
    if (!M.relayAddress) return sdp;
    return sdp
      .split('\r\n')
      .filter((l) => !l.startsWith('a=candidate:') || l.split(' ')[4] === M.relayAddress)
      .join('\r\n');
  }

  async function relay(track, streamId) {
    if (track.kind !== 'audio' || M.relayed.has(track.id)) return;
    M.relayed.add(track.id);
    const id = M.nextId++;
    const pc = new Native({ iceServers: [] });
    M.relays.set(id, pc);
    pc.addTransceiver(track, { direction: 'sendonly' });
    const gathered = new Promise((resolve) => {
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') resolve();
      });
      setTimeout(resolve, 3000);
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered;
    M.outbox.push({ relay: id, track: track.id, stream: streamId || '', sdp: filterSdp(pc.localDescription.sdp) });
    track.addEventListener('ended', () => {
      M.closed.push(id);
      pc.close();
      M.relays.delete(id);
    });
  }

  function watch(pc) {
    pc.addEventListener('track', (ev) => {
      const s = ev.streams && ev.streams[0];
      relay(ev.track, s ? s.id : '').catch(() => {});
    });
  }

  class Watched extends Native {
    constructor(...args) {
      super(...args);
      watch(this);
    }
  }
  window.RTCPeerConnection = Watched;
  if (window.webkitRTCPeerConnection) window.webkitRTCPeerConnection = Watched;

  function people(p, self) {
    const out = [];
    if (!p || !p.item) return out;
    let items;
    try { items = Array.from(document.querySelectorAll(p.item)); } catch (_) { return out; }
    const seen = new Set();
    items.forEach((item, i) => {
      let name = '';
      if (p.name) {
        const n = item.querySelector(p.name);
        name = n ? textOf(n) : '';
      }
      if (!name) name = textOf(item).split('\n')[0].trim();
      // The bot itself (platforms add "(You)", "(Guest)" and the like to its name).
      if (!name || name === self || name.startsWith(self + ' ')) return;
      const id = (p.id_attribute && item.getAttribute(p.id_attribute)) || name || 'item-' + i;
      if (seen.has(id)) return;
      seen.add(id);
      let speaking = false;
      if (p.speaking) {
        try { speaking = item.matches(p.speaking) || !!item.querySelector(p.speaking); } catch (_) {}
      }
      const track = (p.track_attribute && item.getAttribute(p.track_attribute)) || null;
      out.push({ id, name, speaking, track });
    });
    return out;
  }

  function count(p) {
    if (!p || !p.count) return null;
    const e = find(p.count)[0];
    if (!e) return null;
    const m = (e.innerText || e.textContent || '').match(/\d+/);
    return m ? parseInt(m[0], 10) : null;
  }

  window.__meetbot = {
    look(cfg) {
      const s = cfg.states;
      let state = null;
      for (const k of ['removed', 'denied', 'ended', 'admitted', 'lobby']) {
        if (any(s[k])) { state = k; break; }
      }
      const offers = M.outbox.splice(0);
      const closed = M.closed.splice(0);
      return {
        state,
        participants: people(cfg.participants, cfg.self),
        count: count(cfg.participants),
        offers,
        closed,
      };
    },
    async answer(id, sdp) {
      const pc = M.relays.get(id);
      if (!pc) return false;
      await pc.setRemoteDescription({ type: 'answer', sdp });
      return true;
    },
    // 'done' when the step acted (or its wait is over), 'absent' when its target is not there.
    act(step, value) {
      const el = find(step)[0];
      if (!el) return 'absent';
      if (step.do === 'click') {
        el.scrollIntoView({ block: 'center' });
        el.click();
      } else if (step.do === 'type') {
        el.focus();
        if (typeof el.select === 'function') el.select();
        if (!document.execCommand('insertText', false, value)) {
          const proto = el instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
          const setter = Object.getOwnPropertyDescriptor(proto, 'value');
          if (setter && setter.set) setter.set.call(el, value); else el.value = value;
          el.dispatchEvent(new Event('input', { bubbles: true }));
          el.dispatchEvent(new Event('change', { bubbles: true }));
        }
      }
      return 'done';
    },
    relays() { return M.relays.size; },
  };
})();
