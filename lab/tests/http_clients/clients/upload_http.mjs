// Node http.request client: uploads BODY to URL RUNS times, one after the other, on
// the default agent of `http` or `https`.
//
// Usage: node upload_http.mjs URL BODY OUTDIR RUNS
// (TLS: the test passes its CA in NODE_EXTRA_CA_CERTS.)
// Prints "<run> <status> <seconds> HTTP/<version>" per upload (the time to the whole
// response) and writes the body to OUTDIR/<run>, or prints "<run> ERR <what>".
// Node 20's default agent keeps connections alive: the next upload goes on the
// connection of the last one unless its answer said `Connection: close` or the server
// closed it first. A server that answers early without `Connection: close` and closes
// afterwards leaves a pooled connection that the next upload can find dead ("socket
// hang up" on a reused connection): that is a result, not something to retry.
import { writeFileSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const [url, bodyPath, out, runs] = process.argv.slice(2);
const body = readFileSync(bodyPath);
const mod = url.startsWith('https:') ? https : http;

// One upload: the status, the HTTP version and the whole body, or the error.
function upload(reused) {
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method: 'POST', signal: AbortSignal.timeout(30000) }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode, version: res.httpVersion, got: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
      res.on('close', () => {
        if (!res.complete) reject(new Error('the response ended before its last byte'));
      });
    });
    req.on('socket', () => {
      reused.value = req.reusedSocket;
    });
    req.on('error', reject);
    req.end(body);
  });
}

for (let run = 0; run < Number(runs); run++) {
  const reused = { value: false };
  try {
    const start = performance.now();
    const { status, version, got } = await upload(reused);
    const took = (performance.now() - start) / 1000;
    writeFileSync(`${out}/${run}`, got);
    console.log(run, status, took, `HTTP/${version}`);
  } catch (e) {
    const what = String(e.cause ?? e);
    const code = e.code && !what.includes(e.code) ? ` (${e.code})` : '';
    const conn = reused.value ? 'a reused connection' : 'a new connection';
    console.log(run, 'ERR', `${what}${code} on ${conn}`.replaceAll('\n', ' '));
  }
}
// The pooled connection would end with the process anyway; close it now.
mod.globalAgent.destroy();
