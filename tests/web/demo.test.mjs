// What the README promises a newcomer, in a real browser: open the `sign in:` link that
// `meetbot dev` printed, find the demo meeting, watch its live transcript appear while the demo
// conversation is spoken, then read its summary. Run by cli/tests/dev_demo.rs beside a real
// `meetbot dev --demo-in N`. Screenshots: demo-live.png, demo-summary.png.

import { createRequire } from "node:module";
import assert from "node:assert/strict";

const require = createRequire(process.env.MEETBOT_WEB_MODULES + "/");
const { chromium } = require("playwright-core");
const LINK = process.env.LINK;
const SHOTS = process.env.SHOTS;
const TITLE = "Clinic weekly operations";

const t0 = Date.now();
const log = (m) => console.log(`[demo-web] ${((Date.now() - t0) / 1000).toFixed(1)}s ${m}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1", "--no-first-run"],
});
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  page.on("dialog", (d) => d.accept());
  await page.goto(LINK);
  assert.equal(new URL(page.url()).pathname, "/app/", "the sign-in link opens the meetings page");
  log("signed in");

  // The demo's calendar is connected a few seconds after start.
  const deadline = Date.now() + 120_000;
  let link;
  while (!(link = await page.getByRole("link", { name: TITLE }).first().getAttribute("href").catch(() => null))) {
    assert.ok(Date.now() < deadline, "the demo meeting never appeared on the meetings page");
    await page.waitForTimeout(1000);
    await page.reload();
  }
  log(`demo meeting at ${link}`);
  const row = await page.locator("tr", { has: page.getByRole("link", { name: TITLE }) }).first().innerText();
  assert.match(row, /Bot (joins at|will join|is joining|is in the call)/, `the demo meeting is armed: ${row}`);
  await page.goto(new URL(link, page.url()).href);

  // Until the bot is in the call, the page says so; then the live transcript is there.
  while ((await page.locator("#live").count()) === 0) {
    assert.ok(Date.now() < deadline, "the bot never went live on the meeting's page");
    assert.equal(await page.getByText("No summary yet").count(), 1, "the meeting ended before the page saw it live");
    await page.waitForTimeout(1000);
    await page.reload();
  }
  log("live");
  await page.evaluate(() => { window.__stillHere = true; });
  const before = await page.locator("#live-lines li").count();
  await page.waitForFunction((n) => document.querySelectorAll("#live-lines li").length >= n + 2, before, { timeout: 90_000 });
  assert.equal(await page.evaluate(() => window.__stillHere), true, "lines arrived without a reload");
  log(`live lines: ${await page.locator("#live-lines li").count()}`);
  const who = () => page.locator("#presence-rows tr td:first-child").allTextContents();
  await page.waitForFunction(() => document.querySelectorAll("#presence-rows tr").length >= 3, null, { timeout: 30_000 });
  assert.deepEqual((await who()).sort(), ["Alex (clinic manager)", "Jordan (front desk)", "Sam (IT)"], "in the call, live");
  await page.screenshot({ path: `${SHOTS}/demo-live.png`, fullPage: true });

  // When the bot leaves, the page reloads itself and shows the summary.
  await page.getByRole("heading", { name: "Action items" }).waitFor({ timeout: 120_000 });
  const text = await page.locator("main").innerText();
  assert.match(text, /Sam \(IT\)/, "action items are owned by their speakers");
  // Each speaker came once and is listed once, as the bot saw them.
  assert.deepEqual((await who()).sort(), ["Alex (clinic manager)", "Jordan (front desk)", "Sam (IT)"], "who was in the call");
  log("summary shown");
  await page.screenshot({ path: `${SHOTS}/demo-summary.png`, fullPage: true });
} catch (e) {
  console.error(`[demo-web] FAILED: ${e.stack || e}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
