// The web app's browser test, run by tests/tests/web.rs (which builds the world and passes it
// in the environment). Playwright (playwright-core) drives Debian's chromium; axe-core scans
// every page for serious and critical accessibility violations; every page is screenshotted.
// Exits non-zero on the first failed expectation, naming it.

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";

const modules = process.env.MEETBOT_WEB_MODULES;
const require = createRequire(modules + "/");
const { chromium } = require("playwright-core");
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env("BASE");
const SHOTS = env("SHOTS");
const LIVE = env("LIVE"), DONE = env("DONE"), OTHER = env("OTHER"), MINE = env("MINE");

let step = "start";
const t0 = Date.now();
function at(name) {
  step = name;
  console.log(`[web] ${((Date.now() - t0) / 1000).toFixed(1)}s ${name}`);
}

const violations = [];
async function scan(page, name) {
  await page.evaluate(AXE);
  const r = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    await axe.run(document, { resultTypes: ["violations"] }));
  const bad = r.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of bad) {
    violations.push(`${name}: ${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`);
  }
  console.log(`[web]   axe ${name}: ${r.violations.length} violation(s), ${bad.length} serious or critical`);
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

// Our pages must never break their own Content-Security-Policy.
const cspErrors = [];
function watch(page) {
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Refused to/i.test(m.text())) cspErrors.push(`${page.url()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => cspErrors.push(`${page.url()}: script error ${e.message}`));
  page.on("dialog", (d) => d.accept());
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  // Nothing leaves loopback: every name but localhost fails to resolve.
  args: ["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE 127.0.0.2", "--disable-background-networking", "--no-first-run"],
});

try {
  // ---- the owner signs in with the one-time link ----
  const owner = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await owner.newPage();
  watch(page);
  at("sign in with the one-time link");
  let resp = await page.goto(env("OWNER_LINK"));
  assert.equal(new URL(page.url()).pathname, "/app/", "the link leads to the meetings page");
  assert.equal(resp.status(), 200);
  const headers = resp.headers();
  assert.match(headers["content-security-policy"] ?? "", /script-src 'self'/);
  assert.match(headers["content-security-policy"] ?? "", /frame-ancestors 'none'/);
  assert.equal(headers["cache-control"], "no-store");
  await page.getByRole("heading", { level: 1, name: "Meetings" }).waitFor();

  at("meetings: upcoming, live, what the bot will do and why");
  const body = await page.locator("main").innerText();
  assert.match(body, /Live now/);
  assert.match(body, /Weekly clinic huddle/);
  assert.match(body, /Board planning/);
  assert.match(body, /Bot joins at|Bot will join/);
  assert.match(body, /No bot: declined/);
  assert.doesNotMatch(body, /Quarterly review with Acme/, "a past meeting is not upcoming");
  assert.match(body, /Budget <script>window\.__pwned=1<\/script><img src=x/, "a hostile title is shown as text");
  assert.equal(await page.evaluate(() => window.__pwned), undefined, "and never runs");
  assert.equal(await page.locator("main img, main script").count(), 0);
  await shot(page, "meetings");
  await scan(page, "meetings");

  at("meetings: past, and search");
  await page.selectOption("#view", "past");
  await page.click("text=Search");
  await page.waitForURL(/view=past/);
  assert.match(await page.locator("main").innerText(), /Quarterly review with Acme/);
  await page.goto(`${BASE}/app/?view=all&q=board`);
  const searched = await page.locator("table.meetings tbody tr").allInnerTexts();
  assert.equal(searched.length, 1, `search for "board": ${searched}`);
  assert.match(searched[0], /Board planning/);

  at("the one-time link works once");
  const other = await browser.newContext();
  const p2 = await other.newPage();
  resp = await p2.goto(env("OWNER_LINK"));
  assert.equal(resp.status(), 401, "a used link is refused");
  assert.match(await p2.locator("main").innerText(), /used up, expired or unknown/);
  await other.close();

  // ---- a live meeting ----
  at("live transcript appears without a reload");
  await page.goto(`${BASE}/app/meetings/${LIVE}`);
  await page.evaluate(() => { window.__stillHere = true; });
  const lines = page.locator("#live-lines li");
  const before = await lines.count();
  await page.waitForFunction((n) => document.querySelectorAll("#live-lines li").length >= n + 3, before, { timeout: 30000 });
  assert.equal(await page.evaluate(() => window.__stillHere), true, "the page was not reloaded");
  assert.match(await page.locator("#live-lines").innerText(), /waiting list|twelve patients|two more slots|front desk/);
  const ids = await lines.evaluateAll((ls) => ls.map((l) => l.dataset.id));
  assert.equal(new Set(ids).size, ids.length, "no line is shown twice");
  at("who is in the call, as the bot saw them join");
  await page.waitForFunction(() => document.querySelectorAll("#presence-rows tr").length >= 2, null, { timeout: 30000 });
  const rows = (sel) => page.locator(sel).evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent).join(" | ")));
  assert.deepEqual(await rows("#presence-rows tr"), ["Olga | 0:00 | in the call", "Adam | 0:02 | in the call"]);
  assert.match(await page.locator("main").innerText(), /Timeline/);
  await shot(page, "meeting-live");
  await scan(page, "meeting-live");

  at("stop the bot mid-call");
  await page.getByRole("button", { name: "Stop the bot now" }).click();
  await page.waitForURL(`${BASE}/app/meetings/${LIVE}`);
  await page.getByText("Bot was stopped").waitFor();
  assert.equal(await page.locator("#live").count(), 0, "no live transcript once the bot is stopped");

  // ---- a finished meeting: summary, transcript, deletion ----
  at("read the summary and the transcript");
  await page.goto(`${BASE}/app/meetings/${DONE}`);
  const done = await page.locator("main").innerText();
  assert.match(done, /Contract review with Acme before Friday/);
  assert.match(done, /Keep the price as it is/);
  assert.match(done, /Tom: send the draft to Acme tomorrow/);
  assert.match(done, /I will send the draft to Acme tomorrow/);
  assert.match(done, /sarah@acme\.test/);
  assert.match(await page.locator("#presence").innerText(), /Who was in the call/);
  assert.deepEqual(await rows("#presence-rows tr"), ["Sarah | 0:00 | stayed until the bot left", "Tom | 0:01 | 1:11"]);
  await shot(page, "meeting-done");
  await scan(page, "meeting-done");

  at("delete the transcript: gone, with a receipt");
  await page.getByRole("button", { name: "Delete the transcript" }).click();
  await page.waitForURL(`${BASE}/app/meetings/${DONE}`);
  await page.getByText("No transcript yet").waitFor();

  at("delete the session, see it gone, restore it");
  await page.getByRole("button", { name: "Delete the session" }).click();
  await page.waitForURL(`${BASE}/app/meetings/${DONE}/restore`);
  await page.getByRole("heading", { name: "Session deleted" }).waitFor();
  await shot(page, "restore");
  await scan(page, "restore");
  await page.goto(`${BASE}/app/?view=all`);
  assert.doesNotMatch(await page.locator("main").innerText(), /Quarterly review with Acme/, "a deleted session is gone from the list");
  resp = await page.goto(`${BASE}/app/meetings/${DONE}`);
  assert.equal(resp.status(), 404, "a deleted session's page is not found");
  await page.goto(`${BASE}/app/meetings/${DONE}/restore`);
  await page.getByRole("button", { name: "Restore the session" }).click();
  await page.waitForURL(`${BASE}/app/meetings/${DONE}`);
  assert.match(await page.locator("main").innerText(), /Contract review with Acme before Friday/, "the restored session is back, summary included");

  // ---- calendars ----
  at("connect an ICS feed, and see a provider's consent");
  await page.goto(`${BASE}/app/calendars`);
  await page.fill("#feed_url", env("ICS_URL"));
  await page.getByRole("button", { name: "Connect the feed" }).click();
  await page.waitForURL(`${BASE}/app/calendars`);
  assert.match(await page.locator("main").innerText(), /ICS feed/);
  await shot(page, "calendars");
  await scan(page, "calendars");
  await page.getByRole("button", { name: "Connect Google Calendar", exact: true }).click();
  await page.getByRole("heading", { name: "Connect Google" }).waitFor();
  const consent = await page.getByRole("link", { name: "Continue to Google" }).getAttribute("href");
  assert.match(consent, /^https:\/\/accounts\.google\.com\//, "the consent goes to Google");
  assert.match(consent, /calendar/, "with calendar scopes");
  await page.goto(`${BASE}/app/calendars`);
  await page.check("#mode-ext");
  await page.fill("#domains", "clinic.test");
  await page.getByRole("button", { name: "Save the rules" }).click();
  await page.getByText("Your auto-join rules are saved").waitFor();
  assert.equal(await page.isChecked("#mode-ext"), true);

  // ---- send a bot ----
  at("send a bot to a link now");
  await page.goto(`${BASE}/app/bots/new`);
  await shot(page, "send-bot");
  await scan(page, "send-bot");
  await page.fill("#meeting_url", "http://127.0.0.1:9/rooms/standup");
  await page.fill("#title", "Stand-up");
  await page.getByRole("button", { name: "Send the bot now" }).click();
  await page.waitForURL(/\/app\/meetings\//);
  assert.match(await page.locator("main").innerText(), /Stand-up[\s\S]*Bot joins at/);

  // ---- admin pages ----
  at("people and API keys: a key's token is shown once");
  await page.goto(`${BASE}/app/people`);
  assert.match(await page.locator("main").innerText(), /mia@clinic\.test/);
  await page.fill("#key-name", "CRM sync");
  await page.getByRole("button", { name: "Make the key" }).click();
  const token = await page.locator("code.secret").innerText();
  assert.match(token, /^mbk_/);
  await shot(page, "people");
  await scan(page, "people");
  await page.goto(`${BASE}/app/people`);
  assert.equal(await page.locator("code.secret").count(), 0, "the token is not shown again");
  await page.fill("#email", "temp@clinic.test");
  await page.getByRole("button", { name: "Add", exact: true }).click();
  await page.waitForURL(`${BASE}/app/people`);
  assert.match(await page.locator("main").innerText(), /temp@clinic\.test/);
  await page.getByRole("button", { name: "Remove temp@clinic.test" }).click();
  await page.waitForURL(`${BASE}/app/people`);
  assert.doesNotMatch(await page.locator("main").innerText(), /temp@clinic\.test/, "removed");
  await page.getByLabel("Role of adam@clinic.test").selectOption("member");
  await page.getByRole("button", { name: "Change the role of adam@clinic.test" }).click();
  await page.waitForURL(`${BASE}/app/people`);
  assert.equal(await page.getByLabel("Role of adam@clinic.test").inputValue(), "member");

  at("privacy: receipts verified, the audit chain intact");
  await page.goto(`${BASE}/app/privacy`);
  const privacy = await page.locator("main").innerText();
  assert.match(privacy, /verified/i);
  assert.match(privacy, /intact/i);
  assert.match(privacy, /session\.restore/);
  assert.match(privacy, /v1 \(in use\)\s+local/, "the data key and what wraps it");
  await shot(page, "privacy");
  await scan(page, "privacy");

  at("privacy: export the organisation, with progress and a download");
  await page.getByRole("button", { name: "Start the export" }).click();
  await page.getByRole("heading", { name: "Export" }).waitFor();
  await page.getByText(/Ready: \d+ meetings/).waitFor({ timeout: 30000 });
  await shot(page, "export");
  await scan(page, "export");
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "Download the export" }).click(),
  ]);
  assert.match(download.suggestedFilename(), /\.tar\.gz$/);
  const archive = await download.path();
  assert.ok(readFileSync(archive).length > 100, "the archive has content");

  at("privacy: erase a person, with a verified receipt");
  await page.goto(`${BASE}/app/privacy`);
  await page.fill("#erase-email", "tom@acme.test");
  await page.fill("#erase-name", "Tom");
  await page.getByRole("button", { name: "Erase" }).click();
  await page.getByText(/Erased\. Receipt .*verified/).waitFor();

  at("settings: retention, redaction, delivery, the bot");
  await page.goto(`${BASE}/app/settings`);
  await page.getByRole("heading", { level: 1, name: "Settings" }).waitFor();
  await page.fill("#transcript_days", "30");
  await page.fill("#rules", "@acme.test 7 -");
  await page.getByRole("button", { name: "Save retention" }).click();
  await page.getByText("Saved.").waitFor();
  assert.equal(await page.inputValue("#transcript_days"), "30");
  assert.equal(await page.inputValue("#rules"), "@acme.test 7 -");
  await page.fill("#rules", "@acme.test seven -");
  await page.getByRole("button", { name: "Save retention" }).click();
  assert.match(await page.locator("main").innerText(), /retention rule on line 1/, "a bad rule is named");
  await page.goto(`${BASE}/app/settings`);
  await page.check("#enabled");
  await page.getByRole("button", { name: "Save redaction" }).click();
  await page.getByText("Saved.").waitFor();
  assert.equal(await page.isChecked("#enabled"), true);
  await page.fill("#emails", "team@clinic.test");
  await page.getByRole("button", { name: "Save delivery" }).click();
  await page.getByText("Saved.").waitFor();
  assert.equal(await page.inputValue("#emails"), "team@clinic.test");
  await page.fill("#display_name", "Clinic notetaker");
  await page.getByRole("button", { name: "Save the bot's rules" }).click();
  await page.getByText("Saved.").waitFor();
  assert.equal(await page.inputValue("#display_name"), "Clinic notetaker");
  at("settings: who may sign in");
  await page.getByLabel(/clinic-idp/).check();
  await page.fill("#email_domains", "Clinic.test\npartner.test");
  await page.getByRole("button", { name: "Save sign-in" }).click();
  await page.getByText("Saved.").waitFor();
  assert.equal(await page.getByLabel(/clinic-idp/).isChecked(), true);
  assert.equal(await page.inputValue("#email_domains"), "clinic.test\npartner.test");
  await page.fill("#email_domains", "partner.test");
  await page.getByRole("button", { name: "Save sign-in" }).click();
  assert.match(await page.locator("main").innerText(), /must include your own address's domain/, "no locking oneself out");
  await page.goto(`${BASE}/app/settings`);
  assert.equal(await page.inputValue("#email_domains"), "clinic.test\npartner.test", "the refused change was not kept");
  await shot(page, "settings");
  await scan(page, "settings");

  at("forms without their token are refused");
  let r = await page.request.post(`${BASE}/app/meetings/${OTHER}/delete`, { form: { csrf: "0".repeat(64) }, maxRedirects: 0 });
  assert.equal(r.status(), 403, "a wrong token");
  r = await page.request.post(`${BASE}/app/meetings/${OTHER}/delete`, { form: {}, maxRedirects: 0 });
  assert.equal(r.status(), 400, "no token");
  r = await page.request.post(`${BASE}/app/meetings/${OTHER}/delete`, { maxRedirects: 0 });
  assert.ok(r.status() >= 400 && r.status() < 500, `no body: ${r.status()}`);
  await page.goto(`${BASE}/app/meetings/${OTHER}`);
  assert.match(await page.locator("main").innerText(), /Board planning/, "still there");

  at("the phone layout");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${BASE}/app/?view=all`);
  await shot(page, "meetings-phone");
  await scan(page, "meetings-phone");

  at("sign out");
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(`${BASE}/app/sign-in`);
  await page.goto(`${BASE}/app/`);
  assert.equal(new URL(page.url()).pathname, "/app/sign-in", "signed out: back to sign-in");
  await shot(page, "sign-in");
  await scan(page, "sign-in");
  await owner.close();

  // ---- a member ----
  at("a member sees their own meetings only, and no admin page");
  const m = await browser.newContext();
  const mp = await m.newPage();
  watch(mp);
  await mp.goto(env("MEMBER_LINK"));
  const mine = await mp.locator("main").innerText();
  assert.match(mine, /Mia's patient follow-up/);
  assert.doesNotMatch(mine, /Board planning|Weekly clinic huddle/);
  assert.equal(await mp.getByRole("link", { name: "People" }).count(), 0, "no admin links");
  const memberToken = await mp.locator("form.signout input[name=csrf]").inputValue();
  const form = await mp.request.post(`${BASE}/app/settings/retention`, { form: { csrf: memberToken, transcript_days: "1" }, maxRedirects: 0 });
  assert.equal(form.status(), 403, "a member cannot change settings");
  for (const path of ["/app/people", "/app/privacy", "/app/settings"]) {
    resp = await mp.goto(`${BASE}${path}`);
    assert.equal(resp.status(), 403, path);
    assert.match(await mp.locator("h1").innerText(), /do not have access/);
  }
  await shot(mp, "forbidden");
  await scan(mp, "forbidden");
  resp = await mp.goto(`${BASE}/app/meetings/${OTHER}`);
  assert.equal(resp.status(), 404, "another person's meeting is not found");

  at("a member previews auto-join rules on their own next meetings");
  await mp.goto(`${BASE}/app/calendars`);
  await mp.check("#mode-mine");
  await mp.fill("#exclude", "patient");
  await mp.getByRole("button", { name: "Preview" }).click();
  await mp.getByText("A preview: these rules are not saved yet.").waitFor();
  let previewed = await mp.locator("main").innerText();
  assert.match(previewed, /Mia's patient follow-up\s+skips title contains excluded keyword/i);
  await mp.fill("#exclude", "");
  await mp.getByRole("button", { name: "Preview" }).click();
  await mp.getByText("A preview: these rules are not saved yet.").waitFor();
  previewed = await mp.locator("main").innerText();
  assert.match(previewed, /Mia's patient follow-up\s+joins/i);
  assert.doesNotMatch(previewed, /Board planning/, "only the member's own calendars");
  assert.equal(await mp.isChecked("#mode-mine"), true, "the draft stays in the form");
  await shot(mp, "rules-preview");
  await scan(mp, "rules-preview");
  resp = await mp.goto(`${BASE}/app/meetings/${MINE}`);
  assert.equal(resp.status(), 200);
  assert.equal(await mp.getByRole("button", { name: "Delete the session" }).count(), 0, "members cannot delete sessions");
  await m.close();

  // ---- JavaScript off ----
  at("readable with JavaScript off");
  const nojs = await browser.newContext({ javaScriptEnabled: false });
  const np = await nojs.newPage();
  await np.goto(env("OWNER_NOJS_LINK"));
  await np.goto(`${BASE}/app/meetings/${DONE}`);
  assert.match(await np.locator("main").innerText(), /Contract review with Acme before Friday/);
  await shot(np, "meeting-nojs");
  await nojs.close();

  assert.deepEqual(cspErrors, [], "no page broke its Content-Security-Policy or threw");
  assert.deepEqual(violations, [], "no serious or critical accessibility violation");
  at("done");
} catch (e) {
  console.error(`[web] FAILED at "${step}": ${e.stack || e}`);
  if (violations.length) console.error(violations.join("\n"));
  if (cspErrors.length) console.error(cspErrors.join("\n"));
  await browser.close();
  process.exit(1);
}
await browser.close();
