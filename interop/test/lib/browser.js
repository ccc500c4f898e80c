// Debian's Chromium driven by playwright-core (which downloads no browser of its own), a
// record of what a page did on the wire, and debugging artifacts when a browser test fails.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate, createHash } from 'node:crypto';
import { chromium } from 'playwright-core';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // Nothing but loopback, not even a DNS query (Converse's welcome panel links logos on its
  // website): every other name fails at once with ERR_NAME_NOT_RESOLVED.
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1'];

// base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: the form Chromium's
// --ignore-certificate-errors-spki-list takes.
export function spkiHash(pem) {
  const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

// Launches Chromium on a fresh profile (deleted by close()). `trustSpki`: accept certificates
// with that public key, i.e. trust exactly weft's generated self-signed certificate (a browser
// has no `ca` option; Chromium reads this flag only with a --user-data-dir, which a persistent
// context passes). Other certificates are still checked as usual.
export async function launchChromium({ trustSpki } = {}) {
  const executablePath = process.env.WEFT_CHROMIUM;
  if (!executablePath) throw new Error('WEFT_CHROMIUM is not set: run the suite with interop/run.sh');
  const userDataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-chromium-'));
  const args = trustSpki ? [...ARGS, `--ignore-certificate-errors-spki-list=${trustSpki}`] : ARGS;
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath, args, headless: true, viewport: { width: 1280, height: 800 },
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      await fs.rm(userDataDir, { recursive: true, force: true });
    },
  };
}

// Records the page's console, uncaught errors, WebSocket URLs and every frame each way.
export function watchPage(page) {
  const rec = { console: [], sockets: [], sent: [], received: [], hostMeta: [] };
  page.on('console', (m) => rec.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => rec.console.push(`pageerror: ${e.stack ?? e}`));
  page.on('requestfailed', (r) => rec.console.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) rec.console.push(`HTTP ${r.status()}: ${r.url()}`);
    if (r.url().endsWith('/.well-known/host-meta')) {
      rec.hostMeta.push({ status: r.status(), cors: r.headers()['access-control-allow-origin'] });
    }
  });
  page.on('websocket', (ws) => {
    rec.sockets.push(ws.url());
    ws.on('framesent', (f) => rec.sent.push(String(f.payload)));
    ws.on('framereceived', (f) => rec.received.push(String(f.payload)));
    ws.on('close', () => rec.console.push(`websocket closed: ${ws.url()}`));
  });
  return rec;
}

// Where screenshots and logs go: WEFT_ARTIFACTS_DIR (run.sh: interop/artifacts/, gitignored).
const artifactsDir = () => process.env.WEFT_ARTIFACTS_DIR ?? path.join(os.tmpdir(), 'weft-artifacts');
const fileName = (name) => name.replace(/[^\w.-]+/g, '_').slice(0, 80);

// Saves a screenshot of the page as it is now, kept whether the test passes or not, under
// <artifacts>/screenshots/<name>.png; resolves with its path.
export async function keepScreenshot(name, page) {
  const dir = path.join(artifactsDir(), 'screenshots');
  await fs.mkdir(dir, { recursive: true });
  const file = path.join(dir, `${fileName(name)}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// Runs `fn`; if it throws, saves a screenshot and the page's record under WEFT_ARTIFACTS_DIR
// (interop/artifacts/, gitignored) before rethrowing.
export async function withArtifacts(name, page, rec, fn) {
  try {
    return await fn();
  } catch (err) {
    const dir = artifactsDir();
    const base = path.join(dir, fileName(name));
    await fs.mkdir(dir, { recursive: true });
    await page.screenshot({ path: `${base}.png`, fullPage: true }).catch(() => {});
    const text = [
      `error: ${err.stack ?? err}`, `websockets: ${rec.sockets.join(' ')}`,
      '--- console', ...rec.console, '--- frames sent', ...rec.sent,
      '--- frames received', ...rec.received,
    ].join('\n');
    await fs.writeFile(`${base}.log`, `${text}\n`);
    err.message += ` (screenshot and log: ${base}.png, ${base}.log)`;
    throw err;
  }
}

// Polls `check` (sync) until it returns something truthy; fails after `ms` naming `what`.
export async function until(check, what, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
