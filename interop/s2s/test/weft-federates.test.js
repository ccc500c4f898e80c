// weft ↔ Prosody and weft ↔ ejabberd over RFC 6120 TCP s2s (STARTTLS), both directions, in the
// harness's mode: SASL EXTERNAL on certificates from the test CA ("external"), or dialback
// when nobody can verify anybody's certificate ("dialback").
//
// carol@weft.test (xmpp.js, c2s STARTTLS on weft at 127.0.0.4) exchanges messages and directed
// presence with alice@prosody.test and bob@ejabberd.test. Three rounds, each starting with no
// link between weft and the peers (weft is restarted in between): weft opens each link (carol
// speaks first); the peers do (alice and bob speak first); both at once (bursts each way,
// queued while the links are set up, must arrive complete and in order). So weft's outgoing
// and incoming sides meet each peer as initiator and as receiver, and dialback's verification
// runs over every path. After each round the logs of weft and of the peer must show the mode's
// method on both links of the pair, and not the other. Then errors: a user the peer does not
// have, a user weft does not have, a domain weft cannot reach; and a peer that closes its
// links (weft must notice and open new ones, losing nothing).
//   interop/s2s/run.sh            # both modes, harness (with weft) up and down around each
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import {
  loadHarness, startClient, nextStanza, goOnline, stopAll, xml, logOffset, waitForLogSince,
  textSince,
} from './lib/harness.js';

const h = loadHarness();
const { prosody, ejabberd } = h.peers;
const weft = h.weft;
const RESOURCE = 'weft-s2s'; // not the smoke test's, should both files ever run at once
const S2S_MS = 30000; // a first stanza waits for TCP, TLS and authentication (dialback: more)
const external = h.mode === 'external';
const MECH = external ? 'EXTERNAL' : 'dialback';
const OTHER = external ? 'dialback' : 'EXTERNAL';
const TRANSPORT = h.transport === 'direct-tls' ? 'Direct TLS, port 5270' : 'STARTTLS, port 5269';
const skip = weft.running ? false : 'weft is not part of this run (harness.sh up --no-weft)';
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const W = esc(weft.domain);

let alice;
let bob;
const peerClient = (name) => (name === 'prosody' ? alice : bob);

async function sendMessage(from, to) {
  const body = `weft s2s ${randomUUID()}`;
  const got = nextStanza(to, (el) => el.is('message') && el.getChildText('body') === body,
    S2S_MS, `message "${body}" at ${to.boundJid}`);
  await from.send(xml('message', { to: to.boundJid.bare().toString(), type: 'chat' }, xml('body', {}, body)));
  const msg = await got;
  assert.equal(msg.attrs.from, from.boundJid.toString());
  // Sent to the bare JID; servers deliver it with 'to' as sent (RFC 6121 §8.5.2.1.1).
  assert.equal(msg.attrs.to, to.boundJid.bare().toString());
  assert.equal(msg.attrs.type, 'chat');
}

async function directedPresence(from, to) {
  const status = `here ${randomUUID()}`;
  const got = nextStanza(to, (el) => el.is('presence') && el.getChildText('status') === status,
    S2S_MS, `presence "${status}" at ${to.boundJid}`);
  await from.send(xml('presence', { to: to.boundJid.bare().toString() }, xml('status', {}, status)));
  const pres = await got;
  assert.equal(pres.attrs.from, from.boundJid.toString());
  assert.equal(pres.attrs.type, undefined); // available
}

// Matching log lines, for the TAP output.
const lines = (text, re) => text.split('\n').filter((l) => re.test(l)).map((l) => l.trim().slice(0, 300));

// The two links of the pair weft.test ↔ PEER must have authenticated with MECH, as weft and
// the peer each report it, in what the logs gained since `offsets`.
async function assertAuth(t, name, offsets) {
  const peer = h.peers[name];
  const P = esc(peer.domain);
  // weft: its incoming side logs the method; its outgoing side logs "s2s link up" and, when a
  // peer refuses EXTERNAL, "SASL EXTERNAL refused; trying dialback".
  const incoming = external
    ? new RegExp(`s2s authenticated \\(SASL EXTERNAL\\) .*domain=${P}\\b`)
    : new RegExp(`s2s authenticated \\(dialback\\) .*from=${P}\\b`);
  const incomingOther = external
    ? new RegExp(`s2s authenticated \\(dialback\\) .*from=${P}\\b`)
    : new RegExp(`s2s authenticated \\(SASL EXTERNAL\\) .*domain=${P}\\b`);
  const linkUp = new RegExp(`s2s link up local=${W} remote=${P}\\b`);
  const fallback = new RegExp(`SASL EXTERNAL refused; trying dialback remote=${P}\\b`);
  const wl = await waitForLogSince(weft.log, offsets.weft, [incoming, linkUp]);
  t.diagnostic(`weft: ${lines(wl, new RegExp(`(s2s authenticated|s2s link up|SASL EXTERNAL refused|dialback failed|s2s route failed).*${P}`)).join(' | ')}`);
  assert.doesNotMatch(wl, incomingOther);
  assert.doesNotMatch(wl, new RegExp(`(dialback failed|s2s route failed|s2s link failed).*${P}\\b`));
  if (external || name === 'prosody') {
    // Prosody offers no SASL when it cannot verify the certificate: nothing to refuse.
    assert.doesNotMatch(wl, fallback);
  } else {
    // ejabberd offers EXTERNAL whatever the certificate and refuses it at <auth/>.
    assert.match(wl, fallback);
  }

  if (name === 'prosody') {
    const pl = await waitForLogSince(peer.log, offsets.prosody, [
      new RegExp(`harness-s2s-auth direction=incoming from=${W} to=${P} mechanism=${MECH}\\b`),
      new RegExp(`harness-s2s-auth direction=outgoing from=${P} to=${W} mechanism=${MECH}\\b`),
    ]);
    t.diagnostic(`prosody: ${lines(pl, new RegExp(`harness-s2s-auth .*${W}`)).join(' | ')}`);
    assert.doesNotMatch(pl, new RegExp(`harness-s2s-auth .*(from|to)=${W} .*mechanism=${OTHER}\\b`));
  } else {
    const el = await waitForLogSince(peer.log, offsets.ejabberd, [
      new RegExp(`Accepted inbound s2s ${MECH} authentication ${W} -> ${P}`),
      new RegExp(`Accepted outbound s2s ${MECH} authentication ${P} -> ${W}`),
    ]);
    t.diagnostic(`ejabberd: ${lines(el, new RegExp(`(Accepted|Failed) (inbound|outbound) s2s .*${W}`)).join(' | ')}`);
    assert.doesNotMatch(el, new RegExp(`Accepted (inbound|outbound) s2s ${OTHER} authentication (${W} -> ${P}|${P} -> ${W})`));
    if (external) {
      assert.doesNotMatch(el, new RegExp(`Failed (inbound|outbound) s2s .*(${W} -> ${P}|${P} -> ${W})`));
    } else {
      // weft tried EXTERNAL (offered) and was refused; ejabberd found no SASL at weft.
      assert.match(el, new RegExp(`Failed inbound s2s EXTERNAL authentication ${W} -> ${P} .*: self signed certificate in certificate chain`));
      assert.match(el, new RegExp(`Failed outbound s2s EXTERNAL authentication ${P} -> ${W} .*Peer provided no SASL mechanisms`));
    }
  }
}

// Established TCP connections owned by a process, as [local, remote] "ip:port" pairs (ss -p).
function connectionsOf(pidFile) {
  const pid = fs.readFileSync(path.join(h.runDir, 'pids', pidFile), 'utf8').trim();
  return execFileSync('ss', ['-Htnp', 'state', 'established'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => new RegExp(`pid=${pid},`).test(l))
    .map((l) => l.trim().split(/\s+/).slice(2, 4));
}

// Which port the links between weft and a peer use, seen from the sockets each side holds:
// 5270 (XEP-0368 Direct TLS) with harness.sh up --direct-tls, else 5269 (STARTTLS).
function assertTransport(t, name) {
  const peer = h.peers[name];
  const [want, not] = h.transport === 'direct-tls' ? [5270, 5269] : [5269, 5270];
  const fromPeer = connectionsOf(`${name}.pid`).filter(([, r]) => r.startsWith(`${weft.ip}:`)).map(([, r]) => r);
  const fromWeft = connectionsOf('weft.pid').filter(([, r]) => r.startsWith(`${peer.ip}:`)).map(([, r]) => r);
  t.diagnostic(`${name} → weft: ${fromPeer.join(', ') || '-'}; weft → ${name}: ${fromWeft.join(', ') || '-'}`);
  assert.ok(fromPeer.includes(`${weft.ip}:${want}`), `${name} holds a connection to weft's ${want}`);
  assert.ok(!fromPeer.includes(`${weft.ip}:${not}`), `${name} holds no connection to weft's ${not}`);
  assert.ok(fromWeft.includes(`${peer.ip}:${want}`), `weft holds a connection to ${name}'s ${want}`);
  assert.ok(!fromWeft.includes(`${peer.ip}:${not}`), `weft holds no connection to ${name}'s ${not}`);
}

async function harness(...args) {
  const { stdout } = await promisify(execFile)(h.harness, [...args, '--dir', h.runDir], { timeout: 60000 });
  return stdout.trim();
}

// `n` messages from `from` to `to`, all sent at once; resolves with the numbers in the order
// `to` received them, once all arrived (or S2S_MS passed).
async function burst(from, to, n, prefix) {
  const got = [];
  const onStanza = (el) => {
    const body = el.is('message') ? el.getChildText('body') : null;
    if (body?.startsWith(prefix)) got.push(Number(body.slice(prefix.length)));
  };
  to.on('stanza', onStanza);
  try {
    await Promise.all(Array.from({ length: n }, (_, i) => from.send(
      xml('message', { to: to.boundJid.bare().toString(), type: 'chat' }, xml('body', {}, `${prefix}${i}`)))));
    const deadline = Date.now() + S2S_MS;
    while (got.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  } finally {
    to.removeListener('stanza', onStanza);
  }
  return got;
}

// The order in which a peer wrote a burst's messages to weft, from its log: Prosody's raw s2s
// SEND lines, ejabberd's "Send XML on stream" (s2s and c2s alike, hence the 'to' filter).
function peerWireOrder(name, offset, prefix, toBare) {
  const peer = h.peers[name];
  const sendLine = name === 'prosody' ? /s2s-raw SEND: / : /Send XML on stream = /;
  const re = new RegExp(`${esc(prefix)}(\\d+)<`, 'g');
  return textSince(peer.log, offset).split('\n')
    .filter((l) => sendLine.test(l) && l.includes(`to='${toBare}'`))
    .flatMap((l) => [...l.matchAll(re)].map((m) => Number(m[1])));
}

// Sends `stanza` from `client` and resolves with the error stanza that comes back for it.
async function errorFor(client, stanza, what) {
  const id = `err-${randomUUID()}`;
  stanza.attrs.id = id;
  const got = nextStanza(client, (el) => el.attrs.id === id && el.attrs.type === 'error', S2S_MS, what);
  await client.send(stanza);
  return got;
}

function errorCondition(el) {
  const err = el.getChild('error');
  assert.ok(err, `no <error/> in ${el}`);
  const cond = err.children.find((c) => typeof c !== 'string' && c.attrs.xmlns === 'urn:ietf:params:xml:ns:xmpp-stanzas' && c.name !== 'text');
  return { type: err.attrs.type, condition: cond?.name };
}

describe(`${h.mode}: ${weft.domain} federates with ${prosody.domain} and ${ejabberd.domain} over TCP s2s (${h.transport ?? 'starttls'})`, { skip }, () => {
  before(async () => {
    alice = await startClient(h, prosody, RESOURCE);
    bob = await startClient(h, ejabberd, RESOURCE);
    await goOnline(alice, prosody.domain);
    await goOnline(bob, ejabberd.domain);
  }, { timeout: 30000 });
  after(() => stopAll(alice, bob));

  const ROUNDS = {
    weft: 'weft opens the links',
    peers: 'the peers open the links (weft restarted: no link left)',
    both: 'both sides open the links at once (weft restarted)',
  };
  for (const [round, title] of Object.entries(ROUNDS)) {
    const weftFirst = round === 'weft';
    describe(title, () => {
      let carol;
      let offsets;
      before(async () => {
        if (round !== 'weft') await harness('restart-weft');
        offsets = { weft: logOffset(weft.log), prosody: logOffset(prosody.log), ejabberd: logOffset(ejabberd.log) };
        carol = await startClient(h, weft, RESOURCE);
        await goOnline(carol, weft.domain);
      }, { timeout: 90000 });
      after(() => stopAll(carol));

      test(`carol is logged in on weft over c2s STARTTLS`, () => {
        assert.equal(carol.boundJid.bare().toString(), `${weft.user}@${weft.domain}`);
        assert.equal(carol.isSecure(), true);
      });

      if (round === 'both') {
        const N = 10;
        // weft must write each burst in the order carol sent it, and deliver what a peer sends
        // in the order the peer wrote it. Prosody does not always write in send order: stanzas
        // routed between its SASL <success/> and the restarted stream's features go out before
        // the one that opened the link (see README), so its wire order comes from its log.
        test(`${N} messages each way between carol and both peers' users, all sent at once before any link exists, arrive complete and in order`, async (t) => {
          const inOrder = Array.from({ length: N }, (_, i) => i);
          const id = randomUUID().slice(0, 8);
          const results = await Promise.all(['prosody', 'ejabberd'].flatMap((name) => [
            burst(carol, peerClient(name), N, `to ${name} ${id} #`).then((got) => ({ name, out: true, got })),
            burst(peerClient(name), carol, N, `from ${name} ${id} #`).then((got) => ({ name, out: false, got })),
          ]));
          for (const { name, out, got } of results) {
            const peer = h.peers[name];
            if (out) {
              assert.deepEqual(got, inOrder, `carol → ${peer.user}@${peer.domain}: received in this order`);
              continue;
            }
            let wire = [];
            for (const deadline = Date.now() + 5000; wire.length < N && Date.now() < deadline;) {
              wire = peerWireOrder(name, offsets[name], `from ${name} ${id} #`, `${weft.user}@${weft.domain}`);
              if (wire.length < N) await new Promise((r) => setTimeout(r, 200)); // ejabberd's logger lags
            }
            if (wire.join() !== inOrder.join()) t.diagnostic(`${name} wrote alice's/bob's burst to weft in this order: ${wire.join(',')} (the peer's doing)`);
            assert.deepEqual([...wire].sort((a, b) => a - b), inOrder, `${name} wrote all ${N} to weft`);
            assert.deepEqual(got, wire, `${peer.user}@${peer.domain} → carol: received in the order ${name} wrote them`);
          }
        });
      }

      for (const name of ['prosody', 'ejabberd']) {
        const peer = h.peers[name];
        if (round !== 'both') {
          const first = weftFirst ? weft.domain : peer.domain;
          test(`messages and directed presence both ways, carol ↔ ${peer.user}@${peer.domain}, ${first} first`, async () => {
            const other = peerClient(name);
            const pairs = weftFirst ? [[carol, other], [other, carol]] : [[other, carol], [carol, other]];
            for (const [a, b] of pairs) await sendMessage(a, b);
            for (const [a, b] of pairs) await directedPresence(a, b);
          });
        }
        test(`both links ${weft.domain} ↔ ${peer.domain} authenticated with ${MECH} (weft's and ${name}'s logs)`, (t) => assertAuth(t, name, offsets));
        test(`both links ${weft.domain} ↔ ${peer.domain} run over ${TRANSPORT} (sockets of weft and ${name})`, (t) => assertTransport(t, name));
      }

      if (round === 'both') {
        // The peer closes both its links with weft.test (as an idle timeout would): weft's
        // outgoing link must notice, and the next stanza each way go over new links.
        for (const name of ['prosody', 'ejabberd']) {
          const peer = h.peers[name];
          test(`after ${name} closes its links with ${weft.domain}, messages still go both ways (weft opens a new link)`, async (t) => {
            const mark = logOffset(weft.log);
            t.diagnostic(await harness('drop-links', name));
            await new Promise((r) => setTimeout(r, 500)); // let weft read the closing tags
            const other = peerClient(name);
            await sendMessage(carol, other);
            await sendMessage(other, carol);
            const wl = await waitForLogSince(weft.log, mark, [new RegExp(`s2s link up local=${W} remote=${esc(peer.domain)}\\b`)]);
            t.diagnostic(`weft: ${lines(wl, new RegExp(`(s2s |SASL).*${esc(peer.domain)}`)).join(' | ')}`);
          });
        }
      }

      if (!weftFirst) return;

      // A user the peer does not have: the peer's error comes back to carol over s2s.
      for (const name of ['prosody', 'ejabberd']) {
        const peer = h.peers[name];
        test(`a message to nobody@${peer.domain} comes back to carol as service-unavailable from ${name}`, async (t) => {
          const to = `nobody-${randomUUID().slice(0, 8)}@${peer.domain}`;
          const err = await errorFor(carol, xml('message', { to, type: 'chat' }, xml('body', {}, 'anyone?')), `error for the message to ${to}`);
          t.diagnostic(`${name} answered: ${err}`);
          assert.equal(err.name, 'message');
          assert.equal(err.attrs.from, to);
          assert.equal(err.attrs.to, carol.boundJid.toString());
          assert.deepEqual(errorCondition(err), { type: 'cancel', condition: 'service-unavailable' });
        });
      }

      // A user weft does not have: weft's error goes back to the peer's user over s2s.
      test(`a message and an IQ to nobody@${weft.domain} from the peers come back as service-unavailable from weft`, async (t) => {
        const to = `nobody-${randomUUID().slice(0, 8)}@${weft.domain}`;
        const m = await errorFor(alice, xml('message', { to, type: 'chat' }, xml('body', {}, 'anyone?')), `error for alice's message to ${to}`);
        t.diagnostic(`weft answered alice: ${m}`);
        assert.equal(m.attrs.from, to);
        assert.equal(m.attrs.to, alice.boundJid.toString());
        assert.deepEqual(errorCondition(m), { type: 'cancel', condition: 'service-unavailable' });
        const iq = await errorFor(bob, xml('iq', { to, type: 'get' }, xml('ping', { xmlns: 'urn:xmpp:ping' })), `error for bob's IQ to ${to}`);
        t.diagnostic(`weft answered bob: ${iq}`);
        assert.equal(iq.name, 'iq');
        assert.equal(iq.attrs.from, to);
        assert.equal(iq.attrs.to, bob.boundJid.toString());
        assert.deepEqual(errorCondition(iq), { type: 'cancel', condition: 'service-unavailable' });
      });

      // A domain weft routes to a closed port: weft bounces remote-server-not-found to carol.
      test(`a message to ${weft.unreachableDomain} (route to a closed port) comes back as remote-server-not-found from weft`, async (t) => {
        const to = `someone@${weft.unreachableDomain}`;
        const err = await errorFor(carol, xml('message', { to, type: 'chat' }, xml('body', {}, 'hello?')), `error for the message to ${to}`);
        t.diagnostic(`weft answered: ${err}`);
        assert.equal(err.attrs.from, to);
        assert.deepEqual(errorCondition(err), { type: 'cancel', condition: 'remote-server-not-found' });
        assert.match(textSince(weft.log, offsets.weft), new RegExp(`s2s link failed.*remote=${esc(weft.unreachableDomain)}`));
      });
    });
  }
});
