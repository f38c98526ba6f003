// Headless Chromium (Debian's, driven by playwright-core): does the status snippet fit the
// iframe size the docs recommend? Used by tests/test_webstatus_embed.py.
//
//   node iframe_fit.mjs PAGE_URL EXPECTED_SHOW [CHROMIUM]
//   stdout: one JSON object: the frame's inner size, and for the dot, show, status and jid
//           elements (when shown) their box relative to the frame, whether their text is
//           cut (scrollWidth > clientWidth) and their text-overflow; plus the document's
//           scroll size. PAGE_URL embeds the snippet as <iframe id="status">.
import { chromium } from "playwright-core";

const [pageUrl, expectedShow, executable = "/usr/bin/chromium"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: executable,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  await page.goto(pageUrl, { waitUntil: "load", timeout: 15000 });
  const frame = await (await page.waitForSelector("iframe#status", { timeout: 10000 })).contentFrame();
  await frame.waitForFunction(
    (text) => document.getElementById("ws-show")?.textContent === text, expectedShow,
    { timeout: 10000, polling: 50 });
  await frame.evaluate(() => document.fonts.ready);
  const report = await frame.evaluate(() => {
    const box = (el) => {
      const r = el.getBoundingClientRect();
      return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width,
               cut: el.scrollWidth > el.clientWidth, overflow: getComputedStyle(el).textOverflow,
               text: el.textContent };
    };
    const shown = (sel) => { const el = document.querySelector(sel); return el && !el.hidden ? box(el) : null; };
    return {
      frame: { width: window.innerWidth, height: window.innerHeight },
      scroll: { width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight },
      dot: shown(".dot"), show: shown("#ws-show"), status: shown("#ws-status"), jid: shown("#ws-jid"),
    };
  });
  process.stdout.write(JSON.stringify(report) + "\n");
} finally {
  await browser.close();
}
