// Node fetch (undici) client: uploads BODY to URL RUNS times, one after the other.
//
// Usage: node upload.mjs URL BODY OUTDIR RUNS
// (TLS: the test passes its CA in NODE_EXTRA_CA_CERTS.)
// Prints "<run> <status> <seconds>" per upload (the time to the whole response) and
// writes the body to OUTDIR/<run>, or prints
// "<run> ERR <what>". undici reads the response while it sends.
import { readFileSync, writeFileSync } from 'node:fs';

const [url, bodyPath, out, runs] = process.argv.slice(2);
const body = readFileSync(bodyPath);
for (let run = 0; run < Number(runs); run++) {
  try {
    const start = performance.now();
    const res = await fetch(url, { method: 'POST', body, signal: AbortSignal.timeout(30000) });
    const got = Buffer.from(await res.arrayBuffer());
    const took = (performance.now() - start) / 1000;
    writeFileSync(`${out}/${run}`, got);
    console.log(run, res.status, took);
  } catch (e) {
    console.log(run, 'ERR', String(e.cause ?? e).replaceAll('\n', ' '));
  }
}
