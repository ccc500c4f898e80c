// XEP-0045 multi-user chat across servers (issue 20), in the harness's mode: a room on weft's
// conference.weft.test that alice@prosody.test and bob@ejabberd.test enter over s2s, and a room
// on each peer's MUC service (conference.prosody.test, conference.ejabberd.test) that
// carol@weft.test enters.
//
// Each server's MUC service federates under its own domain: weft's room sends from
// conference.weft.test (its own s2s links to prosody.test and ejabberd.test, authenticated as
// that domain: SASL EXTERNAL on the certificate's second SAN, or dialback, by the mode), and the
// peers' rooms from conference.prosody.test / conference.ejabberd.test (links to weft.test). What
// is asserted is on the wire as the clients get it: XEP-0045 §7.2.3's order (the others'
// presence first, the newcomer's own with status 110 last, then the subject), affiliations,
// roles, status codes, who a stanza comes from (room@service/Nick) and whom it is addressed to.
// At the end, the logs of weft and of each peer must show the mode's method on each of the four
// links that carried rooms (conference.weft.test ↔ PEER and weft.test ↔ conference.PEER, each
// way), and never the other method.
//
// This file runs after weft-federates.test.js (the glob's order): that file's first round needs
// no link between weft and the peers, and the links this one makes would stay up for minutes.
//   interop/s2s/run.sh            # every mode, harness (with weft) up and down around each
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  loadHarness, startClient, goOnline, stopAll, xml, logOffset, waitForLogSince,
} from './lib/harness.js';

const h = loadHarness();
const weft = h.weft;
const { prosody, ejabberd } = h.peers;
const RESOURCE = 'weft-muc'; // not the other files' resources
const S2S_MS = 30000; // a first stanza waits for TCP, TLS and authentication (dialback: more)
const NS_MUC = 'http://jabber.org/protocol/muc';
const NS_USER = `${NS_MUC}#user`;
const NS_OWNER = `${NS_MUC}#owner`;
const external = h.mode === 'external';
const MECH = external ? 'EXTERNAL' : 'dialback';
const OTHER = external ? 'dialback' : 'EXTERNAL';
const skip = weft.running ? false : 'weft is not part of this run (harness.sh up --no-weft)';
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
// The MUC domains (harness.json has them; the defaults for an older run directory).
const WEFT_MUC = weft.muc ?? `conference.${weft.domain}`;
const PROSODY_MUC = prosody.muc ?? `conference.${prosody.domain}`;
const EJABBERD_MUC = ejabberd.muc ?? `conference.${ejabberd.domain}`;

// Matching log lines, for the TAP output.
const lines = (text, re) => text.split('\n').filter((l) => re.test(l)).map((l) => l.trim().slice(0, 300));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tag = () => randomUUID().slice(0, 8);

// A logged-in client that keeps every stanza it receives (`wire`), in order.
async function start(peer) {
  const c = await startClient(h, peer, RESOURCE);
  c.wire = [];
  c.on('stanza', (el) => c.wire.push(el));
  await goOnline(c, peer.domain);
  return c;
}

// The first stanza received at or after index `since` of c.wire for which `match` is true, and
// its index; fails after `ms` naming `what` and listing what did arrive.
async function expectStanza(c, match, what, since, ms = S2S_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const i = c.wire.findIndex((el, j) => j >= since && match(el));
    if (i >= 0) return { el: c.wire[i], index: i };
    if (Date.now() > deadline) {
      const got = c.wire.slice(since).map(String).join('\n  ') || 'nothing';
      throw new Error(`${c.boundJid}: no ${what} within ${ms} ms; received instead:\n  ${got}`);
    }
    await sleep(20);
  }
}

const bareOf = (jid) => (jid ?? '').split('/')[0];
const userX = (el) => el.getChild('x', NS_USER);
const codes = (el) => (userX(el)?.getChildren('status') ?? []).map((s) => Number(s.attrs.code)).sort((a, b) => a - b);
const itemOf = (el) => userX(el)?.getChild('item');
const isMucPresence = (room, type) => (el) =>
  el.is('presence') && bareOf(el.attrs.from) === room && el.attrs.type === type && !!userX(el);

// Enters `room` as `nick` (XEP-0045 §7.2.1) and reads what the room answers, as §7.2.3 orders
// it: the occupants already there, the newcomer's own presence (status 110) last, then the
// subject message. Returns them with the index where the entering began.
async function enter(c, room, nick) {
  const since = c.wire.length;
  await c.send(xml('presence', { to: `${room}/${nick}` }, xml('x', { xmlns: NS_MUC })));
  const own = await expectStanza(c, (el) =>
    (isMucPresence(room, undefined)(el) && el.attrs.from === `${room}/${nick}` && codes(el).includes(110)) ||
    (el.is('presence') && el.attrs.type === 'error' && bareOf(el.attrs.from) === room),
  `own presence from ${room}/${nick} (status 110)`, since);
  assert.equal(own.el.attrs.type, undefined, `entering ${room} failed: ${own.el}`);
  assert.equal(own.el.attrs.to, c.boundJid.toString(), String(own.el));
  const others = c.wire.slice(since, own.index).filter(isMucPresence(room, undefined));
  return { since, own: own.el, ownIndex: own.index, others };
}

// The subject message (§7.2.15: even an empty one) after the own presence.
async function subjectAfter(c, room, entered) {
  const { el, index } = await expectStanza(c, (m) => m.is('message') && bareOf(m.attrs.from) === room &&
    m.getChild('subject') !== undefined, `subject message from ${room}`, entered.since);
  assert.ok(index > entered.ownIndex, `the subject comes after the own presence: ${el}`);
  assert.equal(el.attrs.type, 'groupchat', String(el));
  assert.equal(el.attrs.to, c.boundJid.toString(), String(el));
  assert.equal(el.getChild('body'), undefined, `a subject message has no body: ${el}`);
  return el;
}

// §10.1.2: the owner accepts the default configuration (an instant room), which unlocks it.
async function acceptInstantRoom(c, room) {
  const result = await c.iqCaller.request(xml('iq', { type: 'set', to: room },
    xml('query', { xmlns: NS_OWNER }, xml('x', { xmlns: 'jabber:x:data', type: 'submit' }))), S2S_MS);
  assert.equal(result.attrs.type, 'result', String(result));
  assert.equal(result.attrs.from, room, String(result));
}

// The presence of `nick` in `room` that `c` gets after `since`.
async function occupantPresence(c, room, nick, since, type = undefined) {
  const { el } = await expectStanza(c, (p) => isMucPresence(room, type)(p) && p.attrs.from === `${room}/${nick}`,
    `${type ?? 'available'} presence of ${room}/${nick}`, since);
  assert.equal(el.attrs.to, c.boundJid.toString(), String(el));
  return el;
}

// A groupchat message from `sender` (as `nick`) reaches every client of `all` (the sender
// too: §7.4) from room/nick, addressed to each one's full JID.
async function groupchat(room, sender, nick, all) {
  const body = `groupchat ${nick} ${tag()}`;
  const marks = all.map((c) => c.wire.length);
  await sender.send(xml('message', { to: room, type: 'groupchat' }, xml('body', {}, body)));
  await Promise.all(all.map(async (c, i) => {
    const { el } = await expectStanza(c, (m) => m.is('message') && m.getChildText('body') === body,
      `groupchat "${body}"`, marks[i]);
    assert.equal(el.attrs.type, 'groupchat', String(el));
    assert.equal(el.attrs.from, `${room}/${nick}`, String(el));
    assert.equal(el.attrs.to, c.boundJid.toString(), String(el));
  }));
}

// Leaves (§7.14): the own unavailable presence with 110 comes back; the others get it without.
async function leave(c, room, nick, others) {
  const marks = others.map((o) => o.wire.length);
  const since = c.wire.length;
  await c.send(xml('presence', { to: `${room}/${nick}`, type: 'unavailable' }));
  const own = await occupantPresence(c, room, nick, since, 'unavailable');
  assert.ok(codes(own).includes(110), String(own));
  assert.equal(itemOf(own)?.attrs.role, 'none', String(own));
  await Promise.all(others.map(async (o, i) => {
    const p = await occupantPresence(o, room, nick, marks[i], 'unavailable');
    assert.ok(!codes(p).includes(110), String(p));
    assert.equal(itemOf(p)?.attrs.role, 'none', String(p));
  }));
}

describe(`${h.mode}: XEP-0045 rooms across weft, Prosody and ejabberd over s2s (${h.transport ?? 'starttls'})`, { skip }, () => {
  let carol;
  let alice;
  let bob;
  const offsets = {};
  before(async () => {
    offsets.weft = logOffset(weft.log);
    offsets.prosody = logOffset(prosody.log);
    offsets.ejabberd = logOffset(ejabberd.log);
    [carol, alice, bob] = await Promise.all([start(weft), start(prosody), start(ejabberd)]);
  });
  after(() => stopAll(carol, alice, bob));

  describe(`a room on ${WEFT_MUC}: carol creates it, alice and bob enter over s2s`, () => {
    const room = `weft-room-${tag()}@${WEFT_MUC}`;
    let carolIn = false;
    let aliceIn = false;
    let bobIn = false;

    test('carol creates the room (201, owner, moderator) and accepts it as an instant room', async () => {
      const e = await enter(carol, room, 'Carol');
      carolIn = true;
      assert.deepEqual(e.others, [], 'nobody was there');
      // 170: weft's rooms keep an archive (logged, §7.2.12).
      assert.deepEqual(codes(e.own).filter((c) => c !== 100), [110, 170, 201], String(e.own));
      assert.equal(itemOf(e.own)?.attrs.affiliation, 'owner', String(e.own));
      assert.equal(itemOf(e.own)?.attrs.role, 'moderator', String(e.own));
      await subjectAfter(carol, room, e);
      await acceptInstantRoom(carol, room);
    });

    test('alice@prosody.test enters over s2s: Carol first, her own presence (110) last, then the subject; carol sees her real JID', async () => {
      const mark = carol.wire.length;
      const e = await enter(alice, room, 'Alice');
      aliceIn = true;
      assert.deepEqual(e.others.map((p) => p.attrs.from), [`${room}/Carol`]);
      assert.equal(itemOf(e.others[0])?.attrs.affiliation, 'owner', String(e.others[0]));
      assert.equal(itemOf(e.others[0])?.attrs.role, 'moderator', String(e.others[0]));
      assert.deepEqual(codes(e.own).filter((c) => c !== 100), [110, 170], String(e.own));
      assert.equal(itemOf(e.own)?.attrs.affiliation, 'none', String(e.own));
      assert.equal(itemOf(e.own)?.attrs.role, 'participant', String(e.own));
      await subjectAfter(alice, room, e);
      const seen = await occupantPresence(carol, room, 'Alice', mark);
      assert.deepEqual(codes(seen), [], String(seen));
      // A moderator sees occupants' real JIDs (§7.2.3, semi-anonymous room).
      assert.equal(itemOf(seen)?.attrs.jid, alice.boundJid.toString(), String(seen));
    });

    test('bob@ejabberd.test enters over s2s: Carol and Alice first, his own presence last; both see him', async () => {
      const marks = [carol.wire.length, alice.wire.length];
      const e = await enter(bob, room, 'Bob');
      bobIn = true;
      assert.deepEqual(e.others.map((p) => p.attrs.from).sort(), [`${room}/Alice`, `${room}/Carol`]);
      assert.deepEqual(codes(e.own).filter((c) => c !== 100), [110, 170], String(e.own));
      assert.equal(itemOf(e.own)?.attrs.role, 'participant', String(e.own));
      await subjectAfter(bob, room, e);
      const toCarol = await occupantPresence(carol, room, 'Bob', marks[0]);
      assert.equal(itemOf(toCarol)?.attrs.jid, bob.boundJid.toString(), String(toCarol));
      const toAlice = await occupantPresence(alice, room, 'Bob', marks[1]);
      // alice is a participant: no real JIDs for her, unless the room is non-anonymous.
      if (!codes(e.own).includes(100)) assert.equal(itemOf(toAlice)?.attrs.jid, undefined, String(toAlice));
    });

    test('a groupchat message from each of the three reaches all three from room/Nick', async () => {
      await groupchat(room, carol, 'Carol', [carol, alice, bob]);
      await groupchat(room, alice, 'Alice', [carol, alice, bob]);
      await groupchat(room, bob, 'Bob', [carol, alice, bob]);
    });

    test('private messages through the room (§7.5): carol → Alice, alice → Bob, across servers', async () => {
      for (const [from, fromNick, to, toNick] of [[carol, 'Carol', alice, 'Alice'], [alice, 'Alice', bob, 'Bob']]) {
        const body = `pm ${fromNick} to ${toNick} ${tag()}`;
        const mark = to.wire.length;
        await from.send(xml('message', { to: `${room}/${toNick}`, type: 'chat' },
          xml('body', {}, body), xml('x', { xmlns: NS_USER })));
        const { el } = await expectStanza(to, (m) => m.is('message') && m.getChildText('body') === body,
          `private message "${body}"`, mark);
        assert.equal(el.attrs.from, `${room}/${fromNick}`, String(el));
        assert.equal(el.attrs.to, to.boundJid.toString(), String(el));
        assert.equal(el.attrs.type, 'chat', String(el));
      }
    });

    test('everyone leaves: 110 to the one leaving, unavailable (role none) to the others', async () => {
      await leave(bob, room, 'Bob', [carol, alice]);
      bobIn = false;
      await leave(alice, room, 'Alice', [carol]);
      aliceIn = false;
      await leave(carol, room, 'Carol', []);
      carolIn = false;
    });

    after(async () => {
      // Best effort if a test failed half-way.
      for (const [c, nick, inside] of [[bob, 'Bob', bobIn], [alice, 'Alice', aliceIn], [carol, 'Carol', carolIn]]) {
        if (inside && c) await c.send(xml('presence', { to: `${room}/${nick}`, type: 'unavailable' })).catch(() => {});
      }
    });
  });

  for (const [name, service, ownerNick] of [['prosody', PROSODY_MUC, 'Alice'], ['ejabberd', EJABBERD_MUC, 'Bob']]) {
    describe(`a room on ${service}: its local user creates it, carol enters over s2s`, () => {
      const room = `${name}-room-${tag()}@${service}`;
      const owner = () => (name === 'prosody' ? alice : bob);
      let ownerIn = false;
      let carolIn = false;

      test(`${h.peers[name].user}@${h.peers[name].domain} creates the room (201) and accepts it as an instant room`, async () => {
        const e = await enter(owner(), room, ownerNick);
        ownerIn = true;
        assert.ok(codes(e.own).includes(201), `a new room: ${e.own}`);
        assert.equal(itemOf(e.own)?.attrs.affiliation, 'owner', String(e.own));
        await acceptInstantRoom(owner(), room);
      });

      test(`carol@weft.test enters over s2s: ${ownerNick} first, her own presence (110) last, then the subject; ${ownerNick} sees her`, async () => {
        const mark = owner().wire.length;
        const e = await enter(carol, room, 'Carol');
        carolIn = true;
        assert.deepEqual(e.others.map((p) => p.attrs.from), [`${room}/${ownerNick}`]);
        assert.equal(itemOf(e.others[0])?.attrs.affiliation, 'owner', String(e.others[0]));
        assert.ok(codes(e.own).includes(110), String(e.own));
        assert.ok(!codes(e.own).includes(201), String(e.own));
        assert.equal(itemOf(e.own)?.attrs.affiliation, 'none', String(e.own));
        assert.equal(itemOf(e.own)?.attrs.role, 'participant', String(e.own));
        await subjectAfter(carol, room, e);
        const seen = await occupantPresence(owner(), room, 'Carol', mark);
        // The owner is a moderator: the real JID, as weft stamped it on carol's presence.
        assert.equal(itemOf(seen)?.attrs.jid, carol.boundJid.toString(), String(seen));
      });

      test(`groupchat both ways between carol and ${ownerNick}, from room/Nick`, async () => {
        await groupchat(room, carol, 'Carol', [carol, owner()]);
        await groupchat(room, owner(), ownerNick, [carol, owner()]);
      });

      test(`a private message through the room: ${ownerNick} → Carol`, async () => {
        const body = `pm ${ownerNick} to Carol ${tag()}`;
        const mark = carol.wire.length;
        await owner().send(xml('message', { to: `${room}/Carol`, type: 'chat' },
          xml('body', {}, body), xml('x', { xmlns: NS_USER })));
        const { el } = await expectStanza(carol, (m) => m.is('message') && m.getChildText('body') === body,
          `private message "${body}"`, mark);
        assert.equal(el.attrs.from, `${room}/${ownerNick}`, String(el));
        assert.equal(el.attrs.to, carol.boundJid.toString(), String(el));
      });

      test(`carol leaves, then ${ownerNick}`, async () => {
        await leave(carol, room, 'Carol', [owner()]);
        carolIn = false;
        await leave(owner(), room, ownerNick, []);
        ownerIn = false;
      });

      after(async () => {
        if (carolIn && carol) await carol.send(xml('presence', { to: `${room}/Carol`, type: 'unavailable' })).catch(() => {});
        if (ownerIn && owner()) await owner().send(xml('presence', { to: `${room}/${ownerNick}`, type: 'unavailable' })).catch(() => {});
      });
    });
  }

  // Four links per peer carried the rooms' stanzas: conference.weft.test ↔ PEER (weft's room
  // and the peer's user, each way) and weft.test ↔ conference.PEER (carol and the peer's room).
  // Each must have authenticated with the mode's method, as both ends report it.
  for (const [name, peerMuc] of [['prosody', PROSODY_MUC], ['ejabberd', EJABBERD_MUC]]) {
    test(`the four links between weft and ${name} that carried rooms used ${MECH}, as both logs tell`, async (t) => {
      const peer = h.peers[name];
      const P = esc(peer.domain);
      const PM = esc(peerMuc);
      const WD = esc(weft.domain);
      const WM = esc(WEFT_MUC);
      const pairs = [[WM, P], [WD, PM]]; // [weft side, peer side]
      // weft: its outgoing links log the method ("s2s link up … mechanism=…"), its incoming
      // ones "s2s authenticated (…)" with the peer's domain (the stream's 'to' is not logged).
      const mech = external ? 'SASL EXTERNAL' : 'dialback';
      const wl = await waitForLogSince(weft.log, offsets.weft, [
        ...pairs.map(([w, p]) => new RegExp(`s2s link up local=${w} remote=${p}\\b.*mechanism="?${mech}"?`)),
        external
          ? new RegExp(`s2s authenticated \\(SASL EXTERNAL\\) .*domain=${PM}\\b`)
          : new RegExp(`s2s authenticated \\(dialback\\) .*from=${PM}\\b`),
      ]);
      t.diagnostic(`weft: ${lines(wl, new RegExp(`(s2s authenticated|s2s link up).*(${WM}|${PM})\\b`)).join(' | ')}`);
      assert.doesNotMatch(wl, new RegExp(`(dialback failed|dialback could not be checked|s2s route failed|s2s link failed).*(${WM}|${PM}|${P})\\b`));
      for (const [w, p] of pairs) {
        assert.doesNotMatch(wl, new RegExp(`s2s link up local=${w} remote=${p}\\b.*mechanism="?${external ? 'dialback' : 'SASL EXTERNAL'}`));
      }
      if (name === 'prosody') {
        const pl = await waitForLogSince(peer.log, offsets.prosody, pairs.flatMap(([w, p]) => [
          new RegExp(`harness-s2s-auth direction=incoming from=${w} to=${p} mechanism=${MECH}\\b`),
          new RegExp(`harness-s2s-auth direction=outgoing from=${p} to=${w} mechanism=${MECH}\\b`),
        ]));
        t.diagnostic(`prosody: ${lines(pl, new RegExp(`harness-s2s-auth .*(${WM}|${PM})\\b`)).join(' | ')}`);
        assert.doesNotMatch(pl, new RegExp(`harness-s2s-auth .*(${WM} |${PM} ).*mechanism=${OTHER}\\b`));
      } else {
        const el = await waitForLogSince(peer.log, offsets.ejabberd, pairs.flatMap(([w, p]) => [
          new RegExp(`Accepted inbound s2s ${MECH} authentication ${w} -> ${p}\\b`),
          new RegExp(`Accepted outbound s2s ${MECH} authentication ${p} -> ${w}\\b`),
        ]));
        t.diagnostic(`ejabberd: ${lines(el, new RegExp(`(Accepted|Failed) (inbound|outbound) s2s .*(${WM}|${PM})\\b`)).join(' | ')}`);
        for (const [w, p] of pairs) {
          assert.doesNotMatch(el, new RegExp(`Accepted (inbound|outbound) s2s ${OTHER} authentication (${w} -> ${p}|${p} -> ${w})\\b`));
          if (external) assert.doesNotMatch(el, new RegExp(`Failed (inbound|outbound) s2s .*(${w} -> ${p}|${p} -> ${w})\\b`));
        }
      }
    });
  }
});
