// Headless Chromium (Debian's, driven by playwright-core) looking at a page that embeds the
// webstatus iframe and SVG badge. Driven line by line from tests/test_webstatus.py:
//
//   node webstatus_browser.mjs PAGE_URL USER_DATA_DIR SCREENSHOT_DIR [CHROMIUM]
//   stdin:  {"expect": "Available"}   wait until the iframe shows that text (no reload)
//           {"quit": true}
//   stdout: one JSON object per line: {"event": "ready"}, then for each expect
//           {"event": "seen", "show": ..., "status": ..., "dot": ..., "markerKept": bool,
//            "badge": {"complete": bool, "width": n}, "ms": n}  or  {"event": "error", ...}
import readline from "node:readline";
import path from "node:path";
import { chromium } from "playwright-core";

const [pageUrl, userDataDir, shotDir, executable = "/usr/bin/chromium"] = process.argv.slice(2);
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: executable,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let shots = 0;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => emit({ event: "console", text: m.text() }));
  await page.goto(pageUrl, { waitUntil: "load", timeout: 15000 });
  const frame = await (await page.waitForSelector("iframe#status", { timeout: 10000 })).contentFrame();
  emit({ event: "ready" });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const command = JSON.parse(line);
    if (command.quit) break;
    const t0 = Date.now();
    try {
      await frame.waitForFunction(
        (text) => document.getElementById("ws-show")?.textContent === text,
        command.expect, { timeout: command.timeout ?? 10000, polling: 50 });
    } catch (e) {
      const seen = await frame.evaluate(() => document.getElementById("ws-show")?.textContent).catch(() => null);
      emit({ event: "error", expected: command.expect, seen, message: String(e) });
      continue;
    }
    const ms = Date.now() - t0;
    // A marker set on the first check survives only if the iframe never reloaded:
    // every later check must report markerKept.
    const state = await frame.evaluate(() => {
      const markerKept = window.__webstatusMarker === 42;
      window.__webstatusMarker = 42;
      const status = document.getElementById("ws-status");
      return {
        show: document.getElementById("ws-show").textContent,
        status: status.hidden ? null : status.textContent,
        dot: getComputedStyle(document.querySelector(".dot")).backgroundColor,
        markerKept,
        scripts: document.scripts.length,
      };
    });
    const badge = await page.evaluate(() => {
      const img = document.getElementById("badge");
      return { complete: img.complete, width: img.naturalWidth, height: img.naturalHeight };
    });
    shots += 1;
    await page.screenshot({ path: path.join(shotDir, `webstatus-${shots}.png`) });
    emit({ event: "seen", ...state, badge, ms });
  }
} catch (e) {
  emit({ event: "error", message: String(e) });
} finally {
  await context.close();
}
process.exit(0);
