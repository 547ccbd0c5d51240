// Open a spray report in headless Chromium and check what a reviewer relies on.
//
//   node check_report.mjs REPORT/index.html SCREENSHOT.png [HOSTILE_TEXT] [--max-pages N]
//
// The index, then each class page it links to (the first N in rank order, and the largest
// page, when --max-pages is given). Fails (exit 1) on: a console error or uncaught exception
// on any page, any dialog (alert/confirm: a sign that data from file names executed), a request
// leaving the report (it must be self-contained), a missing ranking table or overview chart on
// the index, a class page without its spectrum chart or scatter plot, a scatter point whose
// preview does not show, an evidence strip that does not decode or lacks a caption per panel,
// a broken link between pages, or HOSTILE_TEXT not shown as literal text
// on any page. SCREENSHOT is the index; the first class page goes beside it (-class.png).
import { chromium } from "playwright-core";
import { statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
let maxPages = Infinity;
const at = args.indexOf("--max-pages");
if (at >= 0) {
  maxPages = Number(args[at + 1]);
  args.splice(at, 2);
}
const [report, screenshot, hostile] = args;
if (!report || !screenshot) {
  console.error("usage: node check_report.mjs REPORT/index.html SCREENSHOT.png [HOSTILE_TEXT] [--max-pages N]");
  process.exit(2);
}
const failures = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

async function open(url, label) {
  const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
  page.on("console", (m) => { if (m.type() === "error") failures.push(`${label}: console error: ${m.text()}`); });
  page.on("pageerror", (e) => failures.push(`${label}: uncaught exception: ${e.message}`));
  page.on("dialog", async (d) => { failures.push(`${label}: a dialog opened (${d.type()}: ${d.message()}): data executed as code`); await d.dismiss(); });
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith("file:") && !u.startsWith("data:")) failures.push(`${label}: request left the page: ${u}`);
  });
  const response = await page.goto(url, { waitUntil: "load" });
  if (response && !response.ok()) failures.push(`${label}: cannot open ${url}`);
  return page;
}

let hostileSeen = false;
async function lookForHostile(page) {
  if (!hostile) return;
  const bodyText = await page.locator("body").innerText();
  if (bodyText.includes(hostile)) hostileSeen = true;
  const injected = await page.locator('img[src="x"]').count();
  if (injected > 0) failures.push("hostile markup became an element");
}

let summary = "";
try {
  const index = await open("file://" + report, "index");
  const rows = await index.locator("#ranking-table tbody tr").count();
  if (rows < 1) failures.push("index: ranking table has no rows");
  const overview = await index.locator(".chart.spectrum-overview svg").count();
  if (overview < 1) failures.push("index: no eigenvalue overview chart");
  if ((await index.locator("#flagged").count()) < 1) failures.push("index: no flagged-classes section");
  // Sorting: clicking the n header, then rank, must not throw.
  await index.locator("#ranking-table th").nth(2).click();
  await index.locator("#ranking-table th").nth(0).click();
  await lookForHostile(index);
  await index.screenshot({ path: screenshot, fullPage: true });
  // The class pages in rank order (the links of the ranking table, resolved by the browser).
  const byRank = await index.locator("#ranking-table tbody tr").evaluateAll((trs) =>
    trs.map((tr) => [Number(tr.cells[0].textContent), tr.querySelector("td.name a")?.href])
      .filter((x) => x[1]).sort((a, b) => a[0] - b[0]).map((x) => x[1]));
  await index.close();
  if (byRank.length < 1) failures.push("index: no class page linked");
  let chosen = byRank.slice(0, Math.min(byRank.length, maxPages));
  if (chosen.length < byRank.length) {
    // The largest page too: the one a size bound is about.
    const largest = byRank.reduce((a, b) =>
      statSync(fileURLToPath(b)).size > statSync(fileURLToPath(a)).size ? b : a);
    if (!chosen.includes(largest)) chosen.push(largest);
  }
  let points = 0;
  let pictured = 0;
  for (const [i, url] of chosen.entries()) {
    const label = url.split("/").pop();
    const page = await open(url, label);
    if ((await page.locator(".chart.spectrum svg").count()) < 1) failures.push(`${label}: no spectrum chart`);
    const circles = page.locator(".chart.scatter svg circle");
    const n = await circles.count();
    points += n;
    for (let j = 0; j < n; j++) await circles.nth(j).dispatchEvent("mouseenter");
    if (n > 0) {
      const text = await page.locator(".preview .text").first().textContent();
      if (!text || !text.includes("cluster")) failures.push(`${label}: scatter preview did not update: ${text}`);
    }
    // Every evidence strip decodes (four panels side by side: a width divisible by four),
    // with a caption under each panel.
    const strips = await page.locator("figure.strip").evaluateAll((fs) => fs.map((f) => {
      const img = f.querySelector("img");
      return { ok: img.complete && img.naturalWidth > 0 && img.naturalWidth % 4 === 0,
               captions: f.querySelectorAll("figcaption span").length };
    }));
    strips.forEach((s, j) => {
      if (!s.ok) failures.push(`${label}: evidence strip ${j} does not show`);
      if (s.captions !== 4) failures.push(`${label}: evidence strip ${j} has ${s.captions} captions`);
    });
    pictured += strips.length;
    // Its links back to the index and to its neighbours lead to pages that exist.
    const hrefs = await page.locator("nav.pager a").evaluateAll((as) => as.map((a) => a.href));
    for (const h of hrefs) {
      try { statSync(fileURLToPath(h)); } catch { failures.push(`${label}: broken link ${h}`); }
    }
    await lookForHostile(page);
    if (i === 0) await page.screenshot({ path: screenshot.replace(/\.png$/, "-class.png"), fullPage: true });
    await page.close();
  }
  if (points < 1) failures.push("no scatter plot points on any class page");
  if (hostile && !hostileSeen) failures.push(`hostile name not shown as text on any page: ${hostile}`);
  summary = `report ok: ${rows} classes ranked, ${chosen.length} of ${byRank.length} class pages opened, ${points} points, ${pictured} evidence strips; screenshot ${screenshot}`;
} finally {
  await browser.close();
}
if (failures.length) {
  for (const f of failures) console.error("FAIL: " + f);
  process.exit(1);
}
console.log(summary);
