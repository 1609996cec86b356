// Node fetch (undici) client: uploads BODY to URL RUNS times, one after the other.
//
// Usage: node upload.mjs URL BODY OUTDIR RUNS
// (TLS: the test passes its CA in NODE_EXTRA_CA_CERTS.)
// Prints "<run> <status>" per upload and writes the body to OUTDIR/<run>, or prints
// "<run> ERR <what>". undici reads the response while it sends.
import { readFileSync, writeFileSync } from 'node:fs';

const [url, bodyPath, out, runs] = process.argv.slice(2);
const body = readFileSync(bodyPath);
for (let run = 0; run < Number(runs); run++) {
  try {
    const res = await fetch(url, { method: 'POST', body, signal: AbortSignal.timeout(30000) });
    const got = Buffer.from(await res.arrayBuffer());
    writeFileSync(`${out}/${run}`, got);
    console.log(run, res.status);
  } catch (e) {
    console.log(run, 'ERR', String(e.cause ?? e).replaceAll('\n', ' '));
  }
}
