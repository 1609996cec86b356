// Headless Chromium: opens ORIGIN/ and uploads LEN bytes to ORIGIN/upload with
// `fetch()` from inside the page, RUNS times, one after the other.
//
// Usage: node chromium.mjs ORIGIN OUTDIR RUNS LEN
// Prints "<run> <status> <seconds> <protocol>" per upload (the time from the fetch to
// the whole answer, as the page measures it) and writes the body to OUTDIR/<run>, or
// prints "<run> ERR <what>". Over HTTP/1.1 Chromium sends the whole body before it
// reads the response, as Python does. Drives Debian's /usr/bin/chromium (or
// $CHROMIUM) through playwright-core; certificate errors are ignored (the test's
// server uses a certificate made at run time).
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [origin, out, runs, len] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'tgc-chromium-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  ignoreHTTPSErrors: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = browser.pages()[0] ?? await browser.newPage();
  await page.goto(`${origin}/`);
  for (let run = 0; run < Number(runs); run++) {
    const [status, text, took] = await page.evaluate(async (len) => {
      try {
        const body = new Uint8Array(len).fill(117);
        const start = performance.now();
        // 30 s, as every other client here: a server that stalls the upload fails
        // the run instead of holding the browser until the test's own limit.
        const res = await fetch('/upload', { method: 'POST', body, signal: AbortSignal.timeout(30000) });
        const text = await res.text();
        return [res.status, text, (performance.now() - start) / 1000];
      } catch (e) {
        return [0, String(e), 0];
      }
    }, Number(len));
    if (status === 0) {
      console.log(run, 'ERR', text);
      continue;
    }
    // The protocol the browser used, from its resource timing.
    const proto = await page.evaluate(() => {
      const all = performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/upload'));
      return all.length ? all[all.length - 1].nextHopProtocol : '?';
    });
    writeFileSync(`${out}/${run}`, text);
    console.log(run, status, took, proto);
  }
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
