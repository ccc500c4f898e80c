// The running federation harness (interop/s2s/harness.sh up), as tests see it: peers, users,
// logs, and xmpp.js clients logged in on the peers over c2s STARTTLS.
import fs from 'node:fs';
import path from 'node:path';
import { client, xml } from '@xmpp/client';

export { xml };

export function loadHarness() {
  const dir = process.env.S2S_RUN_DIR;
  if (!dir) throw new Error('S2S_RUN_DIR is not set: run interop/s2s/run.sh, or harness.sh up and export its dir');
  const h = JSON.parse(fs.readFileSync(path.join(dir, 'harness.json'), 'utf8'));
  // @xmpp/client has no `ca` option for STARTTLS: Node must trust the test CA from startup.
  if (process.env.NODE_EXTRA_CA_CERTS !== h.caFile) {
    throw new Error(`NODE_EXTRA_CA_CERTS must be ${h.caFile} (the harness's test CA)`);
  }
  return h;
}

// Logs in `peer.user@peer.domain` over c2s STARTTLS on the peer's own address (a peer of
// h.peers, or h.weft); resolves once bound. Test files that run one after the other but keep
// sessions open should use their own `resource`.
export async function startClient(h, peer, resource = 's2s-harness') {
  const xmpp = client({
    service: `xmpp://${peer.ip}:${peer.c2sPort}`,
    domain: peer.domain,
    username: peer.user,
    password: h.password,
    resource,
  });
  xmpp.reconnect.stop();
  xmpp.errors = [];
  xmpp.on('error', (err) => xmpp.errors.push(err));
  xmpp.boundJid = await xmpp.start();
  return xmpp;
}

// Resolves with the next stanza for which `match` is true; rejects after `ms`.
export function nextStanza(xmpp, match, ms, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      xmpp.removeListener('stanza', onStanza);
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    function onStanza(el) {
      if (!match(el)) return;
      clearTimeout(timer);
      xmpp.removeListener('stanza', onStanza);
      resolve(el);
    }
    xmpp.on('stanza', onStanza);
  });
}

// Initial presence, then a ping to the own server: stanzas are handled in order, so the
// result proves the session is available before anyone sends to its bare JID.
export async function goOnline(xmpp, domain) {
  await xmpp.send(xml('presence'));
  const pong = await xmpp.iqCaller.request(
    xml('iq', { type: 'get', to: domain }, xml('ping', { xmlns: 'urn:xmpp:ping' })),
    10000,
  );
  if (pong.attrs.type !== 'result') throw new Error(`ping to ${domain} failed`);
}

// Polls a log file until every pattern matches (resolves with the text) or `ms` passes.
export async function waitForLog(file, patterns, ms = 10000) {
  const deadline = Date.now() + ms;
  let text = '';
  for (;;) {
    text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const missing = patterns.filter((p) => !p.test(text));
    if (missing.length === 0) return text;
    if (Date.now() > deadline) {
      throw new Error(`${file} lacks, after ${ms} ms: ${missing.map(String).join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

// The size of a log file now: with textSince/waitForLogSince, what was logged after it.
export function logOffset(file) {
  return fs.existsSync(file) ? fs.statSync(file).size : 0;
}

export function textSince(file, offset) {
  if (!fs.existsSync(file)) return '';
  const buf = fs.readFileSync(file);
  return buf.subarray(Math.min(offset, buf.length)).toString('utf8');
}

// waitForLog on what `file` gained after `offset` (logOffset).
export async function waitForLogSince(file, offset, patterns, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = textSince(file, offset);
    const missing = patterns.filter((p) => !p.test(text));
    if (missing.length === 0) return text;
    if (Date.now() > deadline) {
      throw new Error(`${file} lacks, after ${ms} ms (looking past byte ${offset}): ${missing.map(String).join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function stopAll(...clients) {
  await Promise.all(clients.filter(Boolean).map((c) => c.stop().catch(() => {})));
}
