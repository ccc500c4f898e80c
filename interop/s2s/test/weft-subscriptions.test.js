// RFC 6121 presence subscriptions between weft and a contact on Prosody and on ejabberd, over
// s2s, in the harness's mode (issue 18): carol@weft.test and alice@prosody.test, then
// carol@weft.test and bob@ejabberd.test, all with xmpp.js clients over c2s STARTTLS.
//
// Per peer, in order (each step builds on the previous one):
//   1. carol subscribes to the peer's user, who approves: carol gets 'subscribed', a push with
//      'to' and the contact's presence; the contact's own server reports 'from'.
//   2. the other way: the contact subscribes to carol, carol approves: 'both' on both servers.
//   3. presence: the contact's new status reaches carol and carol's reaches the contact; carol
//      logs out (the contact gets her unavailable presence) and in again with a new client,
//      and gets the contact's current presence through weft's probe, the contact sending nothing.
//   4. cancellation: carol sends 'unsubscribed' (the contact loses carol's presence: 'from' on
//      the contact's server, 'to' on weft), then 'unsubscribe' ('none' on both).
//   Then both sides remove the items (roster set subscription='remove'), which must leave
//   neither roster with an item, so that other files and reruns start clean.
// Roster states are read with roster gets on both servers, polled (s2s takes its time) up to
// ROSTER_MS. A failing step prints, as TAP diagnostics, the stanzas each client received and
// the lines of the peer's log (its raw s2s and c2s XML) that name carol.
//   interop/s2s/run.sh            # every mode, harness (with weft) up and down around each
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  loadHarness, startClient, goOnline, stopAll, xml, logOffset, textSince, waitForLogSince,
} from './lib/harness.js';

const h = loadHarness();
const weft = h.weft;
const RESOURCE = 'weft-sub'; // not the other files' resources
const S2S_MS = 30000; // a first stanza waits for TCP, TLS and authentication (dialback: more)
const ROSTER_MS = 20000; // how long a roster state may take to settle on a server
const NS_ROSTER = 'jabber:iq:roster';
const skip = weft.running ? false : 'weft is not part of this run (harness.sh up --no-weft)';
const CAROL = `${weft.user}@${weft.domain}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A logged-in client that keeps every stanza it receives (`wire`) and sends (`sent`), and
// answers roster pushes with a result (RFC 6121 §2.1.6).
async function start(peer, resource) {
  const c = await startClient(h, peer, resource);
  c.wire = [];
  c.on('stanza', (el) => c.wire.push(el));
  c.sent = [];
  c.on('send', (el) => c.sent.push(el));
  c.iqCallee.set(NS_ROSTER, 'query', () => true);
  return c;
}

// The first stanza received after index `since` of c.wire for which `match` is true; fails
// after `ms` naming `what` and listing what did arrive.
async function expectStanza(c, match, what, since, ms = S2S_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = c.wire.slice(since).find(match);
    if (found) return found;
    if (Date.now() > deadline) {
      const got = c.wire.slice(since).map(String).join('\n  ') || 'nothing';
      throw new Error(`${c.boundJid}: no ${what} within ${ms} ms; received instead:\n  ${got}`);
    }
    await sleep(20);
  }
}

const rosterQuery = (el) => el.getChild('query', NS_ROSTER);
const itemOf = (query, jid) => query?.getChildren('item').find((i) => i.attrs.jid === jid);
// RFC 6121's schema: 'subscription' defaults to "none" when absent.
const subOf = (item) => (item ? item.attrs.subscription ?? 'none' : 'absent');

const presenceOf = (from, type) => (el) =>
  el.is('presence') && el.attrs.from === from && el.attrs.type === type;

// A roster push for `jid` whose item has these attributes (undefined: absent).
const pushOf = (jid, attrs) => (el) => {
  if (!el.is('iq') || el.attrs.type !== 'set') return false;
  const item = itemOf(rosterQuery(el), jid);
  if (!item) return false;
  const got = { ...item.attrs, subscription: item.attrs.subscription ?? 'none' };
  return Object.entries(attrs).every(([k, v]) => got[k] === v);
};

async function expectPush(c, jid, attrs, since) {
  const push = await expectStanza(c, pushOf(jid, attrs), `roster push of ${jid} with ${JSON.stringify(attrs)}`, since);
  // §2.1.6: from the user's bare JID or without 'from'; one item per push.
  assert.ok([undefined, c.boundJid.bare().toString()].includes(push.attrs.from), String(push));
  assert.equal(rosterQuery(push).getChildren('item').length, 1, String(push));
  return push;
}

async function rosterGet(c) {
  const result = await c.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: NS_ROSTER })), 10000);
  assert.equal(result.attrs.type, 'result');
  const query = rosterQuery(result);
  assert.ok(query, `a roster get without a version answers with the roster: ${result}`);
  return query;
}

// Polls roster gets on `c`'s server until the item for `jid` satisfies `ok` (a subscription
// value, or a predicate on the item); returns the item. Fails after ROSTER_MS with the last one.
async function waitRoster(c, jid, ok, what = `${jid} in the roster of ${c.boundJid.bare()}`) {
  const pred = typeof ok === 'function' ? ok : (item) => subOf(item) === ok && !item?.attrs.ask;
  const deadline = Date.now() + ROSTER_MS;
  for (;;) {
    const item = itemOf(await rosterGet(c), jid);
    if (pred(item)) return item;
    if (Date.now() > deadline) {
      assert.fail(`${what}: after ${ROSTER_MS} ms still ${item ? String(item) : 'no item'}` +
        (typeof ok === 'string' ? ` (want subscription='${ok}', no 'ask')` : ''));
    }
    await sleep(300);
  }
}

async function rosterRemove(c, jid) {
  const result = await c.iqCaller.request(xml('iq', { type: 'set' },
    xml('query', { xmlns: NS_ROSTER }, xml('item', { jid, subscription: 'remove' }))), 10000);
  assert.equal(result.attrs.type, 'result', String(result));
}

const presence = (attrs, show, status) => xml('presence', attrs,
  ...(show ? [xml('show', {}, show)] : []), ...(status ? [xml('status', {}, status)] : []));

// The lines of a peer's log since `offset` that carry XML naming carol: Prosody's raw s2s
// bytes (mod_harness_s2s_log), ejabberd's "Send/Received XML on stream" (s2s and c2s).
function peerWire(peer, offset) {
  return textSince(peer.log, offset).split('\n')
    .filter((l) => l.includes(CAROL) && /s2s-raw (SEND|RECV)|XML on stream/.test(l))
    .map((l) => l.trim().slice(0, 500));
}

describe(`${h.mode}: RFC 6121 subscriptions and presence between ${CAROL} and the peers' users over s2s (${h.transport ?? 'starttls'})`, { skip }, () => {
  for (const name of ['prosody', 'ejabberd']) {
    const peer = h.peers[name];
    const CONTACT = `${peer.user}@${peer.domain}`;
    describe(`${CAROL} and ${CONTACT}`, () => {
      let carol;
      let contact;
      const clients = [];
      let awayStatus; // the contact's last broadcast status (step 3)

      // A step: on failure, prints what both clients received and the peer's wire with carol.
      const step = (title, fn) => test(title, { timeout: 120000 }, async (t) => {
        const offsets = { peer: logOffset(peer.log), weft: logOffset(weft.log) };
        const marks = new Map(clients.map((x) => [x, x.wire.length]));
        try {
          await fn(t);
        } catch (err) {
          await sleep(500); // ejabberd's logger lags
          for (const x of clients) {
            const got = x.wire.slice(marks.get(x) ?? 0).map(String).join(' ') || '-';
            t.diagnostic(`${x.boundJid} received: ${got}`);
          }
          for (const l of peerWire(peer, offsets.peer).slice(-40)) t.diagnostic(`${name} log: ${l}`);
          const wl = textSince(weft.log, offsets.weft).split('\n').filter((l) => /WARN|ERROR|roster|presence|subscri/i.test(l));
          for (const l of wl.slice(-20)) t.diagnostic(`weft log: ${l.trim().slice(0, 400)}`);
          throw err;
        }
      });

      before(async () => {
        carol = await start(weft, RESOURCE);
        contact = await start(peer, RESOURCE);
        clients.push(carol, contact);
        // Leftovers of an earlier run on the same harness would change every state below.
        for (const [c, jid] of [[carol, CONTACT], [contact, CAROL]]) {
          if (itemOf(await rosterGet(c), jid)) await rosterRemove(c, jid);
        }
        for (const [c, jid] of [[carol, CONTACT], [contact, CAROL]]) await waitRoster(c, jid, 'absent');
        // A roster get (above) makes both sessions interested in pushes (§2.1.6).
        await goOnline(carol, weft.domain);
        await goOnline(contact, peer.domain);
      }, { timeout: 90000 });
      after(() => stopAll(...clients));

      step(`1. carol subscribes to ${CONTACT}, who approves: 'to' on weft, 'from' on ${name}, and carol gets the contact's presence`, async () => {
        let [c, p] = [carol.wire.length, contact.wire.length];
        await carol.send(xml('presence', { to: CONTACT, type: 'subscribe' }));
        // §3.1.2: weft pushes the item with ask='subscribe' and sends the request from carol's bare JID.
        await expectPush(carol, CONTACT, { subscription: 'none', ask: 'subscribe' }, c);
        await expectStanza(contact, presenceOf(CAROL, 'subscribe'), `subscribe from ${CAROL}`, p);

        [c, p] = [carol.wire.length, contact.wire.length];
        await contact.send(xml('presence', { to: CAROL, type: 'subscribed' }));
        // §3.1.5/§3.1.6: 'subscribed' from the contact's bare JID, a push with 'to' (no ask), and
        // the contact's current presence (sent by its server on approval, or answering a probe).
        await expectStanza(carol, presenceOf(CONTACT, 'subscribed'), `subscribed from ${CONTACT}`, c);
        await expectPush(carol, CONTACT, { subscription: 'to', ask: undefined }, c);
        await expectStanza(carol, presenceOf(contact.boundJid.toString(), undefined), `available presence of ${contact.boundJid}`, c);

        await waitRoster(carol, CONTACT, 'to');
        await waitRoster(contact, CAROL, 'from');
      });

      step(`2. ${CONTACT} subscribes to carol, who approves: 'both' on weft and on ${name}, and the contact gets carol's presence`, async () => {
        let [c, p] = [carol.wire.length, contact.wire.length];
        await contact.send(xml('presence', { to: CAROL, type: 'subscribe' }));
        // §3.1.3: weft delivers the request (from the contact's bare JID) to carol.
        await expectStanza(carol, presenceOf(CONTACT, 'subscribe'), `subscribe from ${CONTACT}`, c);

        [c, p] = [carol.wire.length, contact.wire.length];
        await carol.send(xml('presence', { to: CONTACT, type: 'subscribed' }));
        // §3.1.5: a push with 'both' to carol; 'subscribed' from carol's bare JID to the
        // contact; then carol's current presence (from her full JID) to the contact.
        await expectPush(carol, CONTACT, { subscription: 'both', ask: undefined }, c);
        await expectStanza(contact, presenceOf(CAROL, 'subscribed'), `subscribed from ${CAROL}`, p);
        await expectStanza(contact, presenceOf(carol.boundJid.toString(), undefined), `available presence of ${carol.boundJid}`, p);

        await waitRoster(carol, CONTACT, 'both');
        await waitRoster(contact, CAROL, 'both');
      });

      step(`3. presence both ways; carol logs out (${CONTACT} gets unavailable) and in again: weft's probe brings the contact's current presence`, async (t) => {
        // The contact's broadcast reaches carol (§4.4), with its show and status.
        awayStatus = `away ${randomUUID()}`;
        let [c, p] = [carol.wire.length, contact.wire.length];
        await contact.send(presence({}, 'away', awayStatus));
        let got = await expectStanza(carol, (el) => presenceOf(contact.boundJid.toString(), undefined)(el) &&
          el.getChildText('status') === awayStatus, `${contact.boundJid}'s away presence`, c);
        assert.equal(got.getChildText('show'), 'away', String(got));

        // carol's broadcast reaches the contact.
        const dndStatus = `busy ${randomUUID()}`;
        await carol.send(presence({}, 'dnd', dndStatus));
        got = await expectStanza(contact, (el) => presenceOf(carol.boundJid.toString(), undefined)(el) &&
          el.getChildText('status') === dndStatus, `${carol.boundJid}'s dnd presence`, p);
        assert.equal(got.getChildText('show'), 'dnd', String(got));

        // Logout: weft sends carol's unavailable presence to her subscribers (§4.5.2).
        p = contact.wire.length;
        const oldJid = carol.boundJid.toString();
        await stopAll(carol);
        await expectStanza(contact, presenceOf(oldJid, 'unavailable'), `unavailable from ${oldJid}`, p);

        // Login with a new client: its initial presence makes weft probe the contact (§4.3.1);
        // the contact's server answers with the contact's last presence (§4.3.2) while the
        // contact's client sends nothing.
        const peerOffset = logOffset(peer.log);
        const sentMark = contact.sent.length;
        p = contact.wire.length;
        carol = await start(weft, `${RESOURCE}-again`);
        clients.push(carol);
        c = 0;
        // As clients do at login: the roster first (which makes the session interested in
        // pushes, §2.1.6; step 4 needs them), then initial presence.
        assert.equal(subOf(itemOf(await rosterGet(carol), CONTACT)), 'both');
        await goOnline(carol, weft.domain);
        got = await expectStanza(carol, (el) => presenceOf(contact.boundJid.toString(), undefined)(el) &&
          el.getChildText('status') === awayStatus, `${contact.boundJid}'s last presence (probe answer)`, c);
        assert.equal(got.getChildText('show'), 'away', String(got));
        // The new session's initial presence is broadcast to the contact too (§4.2.2).
        await expectStanza(contact, presenceOf(carol.boundJid.toString(), undefined), `available presence of ${carol.boundJid}`, p);
        const sentPresence = contact.sent.slice(sentMark).filter((el) => el.is('presence'));
        assert.deepEqual(sentPresence.map(String), [], 'the contact sent no presence meanwhile');
        // The probe itself, as the peer received it from weft (its log of the s2s XML).
        const probe = new RegExp(`<presence\\b[^>]*\\btype=(\\\\?["'])probe\\1`);
        await waitForLogSince(peer.log, peerOffset, [probe], 10000);
        const probes = peerWire(peer, peerOffset).filter((l) => probe.test(l));
        t.diagnostic(`${name} received: ${probes.join(' | ')}`);
        assert.ok(probes.some((l) => l.includes(CONTACT)), `a probe from ${CAROL} to ${CONTACT} in the ${name} log`);
      });

      step(`4. carol cancels ${CONTACT}'s subscription ('unsubscribed': 'from' on ${name}, 'to' on weft), then her own ('unsubscribe': 'none' on both)`, async (t) => {
        // RFC 6121 §3.2: carol, as the contact whose presence the peer's user receives, cancels
        // that subscription. The peer's user keeps its subscription *from* carol (carol still
        // gets its presence) and loses 'to': both → from there; carol's item both → to.
        let [c, p] = [carol.wire.length, contact.wire.length];
        await carol.send(xml('presence', { to: CONTACT, type: 'unsubscribed' }));
        // §3.2.2: carol's unavailable presence (from each of her resources), the 'unsubscribed'
        // from her bare JID, and a push with 'to' to her.
        await expectStanza(contact, presenceOf(carol.boundJid.toString(), 'unavailable'), `unavailable from ${carol.boundJid}`, p);
        await expectStanza(contact, presenceOf(CAROL, 'unsubscribed'), `unsubscribed from ${CAROL}`, p);
        await expectPush(carol, CONTACT, { subscription: 'to', ask: undefined }, c);
        await waitRoster(contact, CAROL, 'from');
        await waitRoster(carol, CONTACT, 'to');

        // The contact no longer gets carol's broadcasts: a status change, then a message over the
        // same s2s link; once the message is there, the presence would have been too.
        const hidden = `unseen ${randomUUID()}`;
        const marker = `after the presence ${randomUUID()}`;
        p = contact.wire.length;
        await carol.send(presence({}, 'xa', hidden));
        await carol.send(xml('message', { to: CONTACT, type: 'chat' }, xml('body', {}, marker)));
        await expectStanza(contact, (el) => el.is('message') && el.getChildText('body') === marker, 'the marker message', p);
        assert.deepEqual(contact.wire.slice(p).filter((el) => el.is('presence') && el.getChildText('status') === hidden).map(String), [],
          `${CONTACT} received carol's broadcast after she cancelled its subscription`);
        // …while carol still gets the contact's.
        c = carol.wire.length;
        const still = `still here ${randomUUID()}`;
        await contact.send(presence({}, 'chat', still));
        await expectStanza(carol, (el) => presenceOf(contact.boundJid.toString(), undefined)(el) &&
          el.getChildText('status') === still, `${contact.boundJid}'s presence (carol is still subscribed)`, c);

        // §3.3: carol unsubscribes from the contact's presence: 'none' on both servers.
        [c, p] = [carol.wire.length, contact.wire.length];
        await carol.send(xml('presence', { to: CONTACT, type: 'unsubscribe' }));
        await expectPush(carol, CONTACT, { subscription: 'none', ask: undefined }, c);
        await expectStanza(contact, presenceOf(CAROL, 'unsubscribe'), `unsubscribe from ${CAROL}`, p);
        // §3.3.3: the contact's server then sends the contact's unavailable presence to carol.
        // ejabberd does. Prosody 0.12 does not (mod_presence.lua, handle_inbound_presence_
        // subscriptions_and_probes, type "unsubscribe": delivery and roster push only): a peer's
        // deviation, not weft's, so accepted for Prosody alone, and reported.
        const gone = presenceOf(contact.boundJid.toString(), 'unavailable');
        if (name === 'ejabberd') {
          await expectStanza(carol, gone, `unavailable from ${contact.boundJid}`, c);
        } else {
          await waitRoster(contact, CAROL, 'none'); // the peer has handled the unsubscribe
          await sleep(500);
          t.diagnostic(`prosody sent carol ${contact.boundJid}'s unavailable presence after her unsubscribe: ${carol.wire.slice(c).some(gone) ? 'yes' : 'no (Prosody 0.12 does not, RFC 6121 §3.3.3)'}`);
        }
        await waitRoster(carol, CONTACT, 'none');
        await waitRoster(contact, CAROL, 'none');
      });

      step(`cleanup: both remove the item (subscription='remove'); neither roster keeps one`, async () => {
        for (const [c, jid] of [[carol, CONTACT], [contact, CAROL]]) {
          if (itemOf(await rosterGet(c), jid)) await rosterRemove(c, jid);
        }
        await waitRoster(carol, CONTACT, 'absent');
        await waitRoster(contact, CAROL, 'absent');
        assert.deepEqual(carol.errors, []);
        assert.deepEqual(contact.errors, []);
      });
    });
  }
});
