// XEP-0288 with Prosody (its mod_s2s_bidi, loaded in the external+bidi mode of run.sh): one
// link carries both directions, whichever side opens it. Checked from weft's log: the link
// weft opens is bidirectional and Prosody never connects back; after a restart of weft,
// Prosody opens the link, asks for bidi, and weft answers over it without a link of its own.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadHarness, startClient, nextStanza, goOnline, waitForLog, xml } from '../test/lib/harness.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const h = loadHarness();
const weft = h.weft;
const prosody = h.peers.prosody;
const W = weft.domain.replace(/\./g, '\\.');
const P = prosody.domain.replace(/\./g, '\\.');
const size = (f) => (fs.existsSync(f) ? fs.statSync(f).size : 0);
const since = (f, offset) => fs.readFileSync(f, 'utf8').slice(offset);

// A message from `a` to `b`'s bare JID, received by `b`.
async function message(a, b, text) {
  const to = b.boundJid.bare().toString();
  const got = nextStanza(b, (el) => el.is('message') && el.getChildText('body') === text, 30000, `"${text}" at ${to}`);
  await a.send(xml('message', { to, type: 'chat' }, xml('body', {}, text)));
  await got;
}

let alice;
before(async () => {
  alice = await startClient(h, prosody, 'bidi');
  await goOnline(alice, prosody.domain);
}, { timeout: 60000 });
after(async () => { await alice?.stop().catch(() => {}); });

test('the link weft opens to Prosody is bidirectional: Prosody answers over it and never connects to weft', { timeout: 90000 }, async (t) => {
  const mark = size(weft.log);
  const carol = await startClient(h, weft, 'bidi-1');
  try {
    await goOnline(carol, weft.domain);
    await message(carol, alice, 'carol to alice over a new link');
    await message(alice, carol, 'alice back to carol on the same link');
    const log = await waitForLog(weft.log, [new RegExp(`s2s link up local=${W} remote=${P}\\b.*bidi=true`)]);
    const lines = since(weft.log, mark).split('\n').filter((l) => l.includes(prosody.domain) && /s2s (link up|authenticated)/.test(l));
    t.diagnostic(lines.map((l) => l.slice(0, 240)).join(' | '));
    assert.doesNotMatch(log.slice(mark), new RegExp(`s2s authenticated .*(domain|from)=${P}\\b`), 'Prosody opened no link of its own');
  } finally {
    await carol.stop().catch(() => {});
  }
});

test('after a restart of weft, the link Prosody opens is bidirectional: weft answers over it', { timeout: 120000 }, async (t) => {
  execFileSync(path.join(HERE, '..', 'harness.sh'), ['restart-weft', '--dir', process.env.S2S_RUN_DIR], { stdio: 'pipe' });
  const mark = size(weft.log);
  const carol = await startClient(h, weft, 'bidi-2');
  try {
    await goOnline(carol, weft.domain);
    await message(alice, carol, 'alice to carol over a link Prosody opens');
    await message(carol, alice, 'carol back to alice on the same link');
    await waitForLog(weft.log, [new RegExp(`s2s incoming link is bidirectional.*remote=${P}\\b`)]);
    const log = since(weft.log, mark);
    const lines = log.split('\n').filter((l) => l.includes(prosody.domain) && /s2s (link up|authenticated|incoming link)/.test(l));
    t.diagnostic(lines.map((l) => l.slice(0, 240)).join(' | '));
    assert.match(log, new RegExp(`s2s authenticated \\(SASL EXTERNAL\\) .*domain=${P}\\b`));
    assert.doesNotMatch(log, new RegExp(`s2s link up local=${W} remote=${P}\\b`), 'weft opened no link of its own');
  } finally {
    await carol.stop().catch(() => {});
  }
});
