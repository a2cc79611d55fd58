// meetbot web app: small improvements on server-rendered pages. Every page works without it.
"use strict";

// Times in the reader's own zone (the server writes UTC).
function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const d = new Date(el.getAttribute("datetime"));
    if (!isNaN(d)) {
      el.title = el.textContent;
      el.textContent = d.toLocaleString(undefined, {
        weekday: "short", day: "numeric", month: "short", year: "numeric",
        hour: "2-digit", minute: "2-digit",
      });
    }
  }
}

// Destructive forms ask first.
function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  }
}

function clock(ms) {
  const s = Math.floor(ms / 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return s >= 3600
    ? `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`
    : `${Math.floor(s / 60)}:${pad(s % 60)}`;
}

// The live transcript: server-sent events from the API, one line per utterance.
function live() {
  const section = document.getElementById("live");
  if (!section || !window.EventSource) return;
  const list = document.getElementById("live-lines");
  const status = document.getElementById("live-status");
  const es = new EventSource(section.dataset.src);
  es.addEventListener("status", (e) => {
    const s = JSON.parse(e.data);
    status.textContent = s.live
      ? "The bot is in the call. New lines appear as they are said."
      : `The bot is ${s.bot}.`;
  });
  es.addEventListener("segment", (e) => {
    const s = JSON.parse(e.data);
    if (list.querySelector(`li[data-id="${CSS.escape(s.id)}"]`)) return;
    const li = document.createElement("li");
    li.dataset.id = s.id;
    const at = document.createElement("span");
    at.className = "at";
    at.textContent = clock(s.start_ms);
    const who = document.createElement("strong");
    who.className = "who";
    who.textContent = s.speaker || `Speaker ${String(s.participant).slice(0, 6)}`;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = s.text;
    li.append(at, " ", who, " ", text);
    li.dataset.at = String(s.start_ms);
    // In the order they were said: a line stored late goes where it belongs.
    const after = [...list.children].find((x) => Number(x.dataset.at) > s.start_ms);
    list.insertBefore(li, after || null);
  });
  // Who is in the call: the whole list, each time it changes.
  es.addEventListener("people", (e) => {
    const rows = document.getElementById("presence-rows");
    if (!rows) return;
    const { people } = JSON.parse(e.data);
    rows.replaceChildren(...people.map((p) => {
      const tr = document.createElement("tr");
      const who = p.name || `Speaker ${String(p.participant).slice(0, 6)}`;
      const left = p.left_ms == null ? "in the call" : clock(p.left_ms);
      for (const text of [who, clock(p.joined_ms), left]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    }));
    document.getElementById("presence-table").hidden = people.length === 0;
    document.getElementById("presence-empty").hidden = people.length > 0;
  });
  es.addEventListener("done", () => {
    es.close();
    status.textContent = "The bot has left the meeting. The summary and the full transcript follow in a moment.";
    // The page shows them once they are stored.
    setTimeout(() => window.location.reload(), 4000);
  });
}

// The bot has just left and the summary is being made: look again shortly.
function pendingSummary() {
  if (document.getElementById("summary-pending") && !document.getElementById("live")) {
    setTimeout(() => window.location.reload(), 5000);
  }
}

// An export's progress, read from the API until it is ready or failed.
function exportProgress() {
  const el = document.getElementById("export-progress");
  if (!el) return;
  const tick = async () => {
    try {
      const r = await fetch(el.dataset.src, { credentials: "same-origin" });
      if (!r.ok) return;
      const e = await r.json();
      el.textContent = e.state === "ready" ? `Ready: ${e.total} meetings.`
        : e.state === "failed" ? `Failed: ${e.error || "see the server's log"}.`
        : `Running: ${e.done} of ${e.total} meetings.`;
      if (e.state === "running") setTimeout(tick, 1500);
    } catch (_) { /* the page still says where it stood */ }
  };
  setTimeout(tick, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  confirmations();
  live();
  pendingSummary();
  exportProgress();
});
