// Open a spray report in headless Chromium and check what a reviewer relies on.
//
//   node check_report.mjs REPORT.html SCREENSHOT.png [HOSTILE_TEXT]
//
// Fails (exit 1) on: a console error or uncaught exception, any dialog (alert/confirm: a sign
// that data from file names executed), a request leaving the page (the report must be
// self-contained), a missing ranking table, spectrum chart or scatter plot, a scatter point
// whose preview does not show, or HOSTILE_TEXT not shown as literal text.
import { chromium } from "playwright-core";

const [report, screenshot, hostile] = process.argv.slice(2);
if (!report || !screenshot) {
  console.error("usage: node check_report.mjs REPORT.html SCREENSHOT.png [HOSTILE_TEXT]");
  process.exit(2);
}
const failures = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
  page.on("console", (m) => { if (m.type() === "error") failures.push(`console error: ${m.text()}`); });
  page.on("pageerror", (e) => failures.push(`uncaught exception: ${e.message}`));
  page.on("dialog", async (d) => { failures.push(`a dialog opened (${d.type()}: ${d.message()}): data executed as code`); await d.dismiss(); });
  page.on("request", (r) => {
    const url = r.url();
    if (!url.startsWith("file:") && !url.startsWith("data:")) failures.push(`request left the page: ${url}`);
  });
  await page.goto("file://" + report, { waitUntil: "load" });

  const rows = await page.locator("#ranking-table tbody tr").count();
  if (rows < 1) failures.push("ranking table has no rows");
  const spectra = await page.locator(".chart.spectrum svg").count();
  if (spectra < 1) failures.push("no spectrum chart");
  const overview = await page.locator(".chart.spectrum-overview svg").count();
  if (overview < 1) failures.push("no eigenvalue overview chart");
  const circles = page.locator(".chart.scatter svg circle");
  const points = await circles.count();
  if (points < 1) failures.push("no scatter plot points");

  // Sorting: clicking the n header twice must not throw; first rank cell stays a number.
  await page.locator("#ranking-table th").nth(2).click();
  await page.locator("#ranking-table th").nth(0).click();

  // Hover each scatter point of the first class; its preview must show the sample's text.
  if (points > 0) {
    const scatter = page.locator(".chart.scatter").first();
    const n = await scatter.locator("svg circle").count();
    for (let i = 0; i < n; i++) {
      await scatter.locator("svg circle").nth(i).dispatchEvent("mouseenter");
    }
    const text = await page.locator(".preview .text").first().textContent();
    if (!text || !text.includes("cluster")) failures.push(`scatter preview did not update: ${text}`);
  }

  if (hostile) {
    const bodyText = await page.locator("body").innerText();
    if (!bodyText.includes(hostile)) failures.push(`hostile name not shown as text: ${hostile}`);
    const injected = await page.locator('img[src="x"]').count();
    if (injected > 0) failures.push("hostile markup became an element");
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`report ok: ${rows} classes ranked, ${spectra} spectra, ${points} points; screenshot ${screenshot}`);
} finally {
  await browser.close();
}
if (failures.length) {
  for (const f of failures) console.error("FAIL: " + f);
  process.exit(1);
}
