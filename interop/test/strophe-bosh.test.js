// BOSH (XEP-0124, XEP-0206) against a client we did not write: Strophe.js's BOSH transport
// logs in over /http-bind, chats with an @xmpp/client user on WebSocket, and survives lost
// responses (it retransmits the same rid; weft answers with the response it kept, and
// nothing is routed twice). Then a Strophe session with stream management over BOSH is
// resumed by Strophe over WebSocket (XEP-0198 across transports).
//
// Node has no XMLHttpRequest: lib/node-xhr.js gives Strophe one over node:http. A small proxy
// (lib/bosh-proxy.js) sits between Strophe and weft to lose what a network loses.
import './lib/node-xhr.js';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Strophe, $msg, $pres, $iq } from 'strophe.js';
import { httpPort, wsUrl, jidOf, password, domain } from './lib/env.js';
import { startClient, nextStanza, stopAll, xml } from './lib/xmppjs.js';
import { goOnline as goOnlineXmppjs } from './lib/exchange.js';
import { startBoshProxy } from './lib/bosh-proxy.js';

const boshUrl = `http://127.0.0.1:${httpPort}/http-bind`;
Strophe.setLogLevel(Strophe.LogLevel.FATAL);
const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

const S = Strophe.Status;
const FINAL = [S.CONNECTED, S.ERROR, S.CONNFAIL, S.AUTHFAIL, S.CONNTIMEOUT, S.DISCONNECTED];
const statusName = Object.fromEntries(Object.entries(S).map(([k, v]) => [v, k]));

function connect(service, user, options = {}) {
  const conn = new Strophe.Connection(service, options);
  conn.received = [];
  // Before connecting: what a resumed stream re-sends comes right after <resumed/>.
  recordMessages(conn);
  cleanups.push(async () => {
    // A clean end where the server is still reachable; else Strophe's own teardown, which
    // also stops its timers (the test process ends only without them).
    if (conn.connected) {
      conn.disconnect();
      await until(() => !conn.connected, 'the end', 5000).catch(() => {});
    }
    if (conn.connected) conn._doDisconnect();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${user}: no final status in 15 s`)), 15000);
    conn.connect(jidOf(user), password, (status, condition) => {
      if (!FINAL.includes(status)) return;
      clearTimeout(timer);
      if (status !== S.CONNECTED) reject(new Error(`${user}: ${statusName[status]} ${condition}`));
      else resolve(conn);
    });
  });
}

// Every chat body Strophe's handlers see, in order.
function recordMessages(conn) {
  conn.addHandler((m) => {
    const body = m.getElementsByTagName('body')[0]?.textContent;
    if (body) conn.received.push(body);
    return true;
  }, null, 'message');
}

function ping(conn) {
  return new Promise((resolve, reject) => {
    conn.sendIQ($iq({ type: 'get', to: domain }).c('ping', { xmlns: 'urn:xmpp:ping' }),
      resolve, (err) => reject(new Error(`ping failed: ${err && Strophe.serialize(err)}`)), 10000);
  });
}

async function until(check, what, ms = 10000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('Strophe.js over BOSH: login, chat with a WebSocket user, lost responses retransmitted by rid', async () => {
  const proxy = await startBoshProxy(boshUrl);
  cleanups.push(proxy.close);
  const anna = await connect(proxy.url, 'bosh-anna');
  assert.match(anna.jid, new RegExp(`^${jidOf('bosh-anna')}/.+`));
  assert.equal(anna._proto.constructor.name, 'Bosh', 'Strophe chose its BOSH transport');
  anna.send($pres());
  await ping(anna);
  const bert = await startClient({ service: wsUrl, username: 'bosh-bert' });
  cleanups.push(() => stopAll(bert));
  await goOnlineXmppjs(bert);

  // WebSocket → BOSH, to the full JID, then BOSH → WebSocket.
  const hello = `hello BOSH ${randomUUID()}`;
  await bert.send(xml('message', { to: anna.jid, type: 'chat' }, xml('body', {}, hello)));
  await until(() => anna.received.includes(hello), 'the message at Strophe');
  const back = `hello WebSocket ${randomUUID()}`;
  const got = nextStanza(bert, (el) => el.is('message') && el.getChildText('body') === back);
  anna.send($msg({ to: jidOf('bosh-bert'), type: 'chat' }).c('body').t(back));
  assert.equal((await got).attrs.from, anna.jid);

  // The response carrying a message for Strophe is lost: Strophe sends the same rid again and
  // gets the response weft kept, with the message in it — once.
  const lost = `lost on the way ${randomUUID()}`;
  proxy.dropResponse = (_req, res) => res.includes(lost);
  await bert.send(xml('message', { to: anna.jid, type: 'chat' }, xml('body', {}, lost)));
  await until(() => anna.received.includes(lost), 'the message of the lost response');
  assert.equal(proxy.dropped.length, 1, 'the proxy dropped that response');
  const droppedRid = proxy.dropped[0].rid;
  assert.equal(proxy.rids.filter((r) => r === droppedRid).length, 2, `rid ${droppedRid} sent twice`);

  // The response to Strophe's own message is lost: weft routed it once, and answers the
  // retransmission from what it kept instead of routing it again.
  const once = `exactly once ${randomUUID()}`;
  const copies = [];
  bert.on('stanza', (el) => { if (el.is('message') && el.getChildText('body') === once) copies.push(el); });
  proxy.dropResponse = (req) => req.includes(once);
  anna.send($msg({ to: jidOf('bosh-bert'), type: 'chat' }).c('body').t(once));
  await ping(anna); // answered on a request after the lost one: Strophe went on
  assert.equal(proxy.dropped.length, 2);
  await sleep(500);
  assert.equal(copies.length, 1, 'the retransmitted request was not routed again');
  assert.deepEqual(anna.received.filter((b) => b === lost), [lost], 'and nothing came twice');
  assert.ok(anna.connected, 'Strophe stayed connected');
});

test('Strophe.js: a session with stream management over BOSH is resumed over WebSocket', async () => {
  const proxy = await startBoshProxy(boshUrl);
  cleanups.push(proxy.close);
  // One store for both connections, as a page's sessionStorage would be across a reload.
  const storage = new Strophe.MemoryStorageBackend();
  const options = { enableStreamManagement: true, streamManagement: { storage } };
  const cara = await connect(proxy.url, 'bosh-cara', options);
  cara.send($pres());
  await ping(cara);
  // Strophe negotiates XEP-0198 itself on WebSocket only; its engine is transport-neutral, so
  // the test starts it on the BOSH stream the way Strophe does after bind on WebSocket.
  cara._registerSMHandlers();
  cara.sm.initialize(cara.jid);
  cara.sm.sendEnable(cara.jid);
  await until(() => cara.sm.enabled && cara.sm.state.id, '<enabled/> over BOSH');
  assert.ok(cara.sm.state.resumeSupported, 'weft offered resumption');
  const boundJid = cara.jid;

  const dan = await startClient({ service: wsUrl, username: 'bosh-dan' });
  cleanups.push(() => stopAll(dan));
  await goOnlineXmppjs(dan);
  const first = `before the drop ${randomUUID()}`;
  await dan.send(xml('message', { to: boundJid, type: 'chat' }, xml('body', {}, first)));
  await until(() => cara.received.includes(first), 'the first message over BOSH');
  await until(() => cara.sm.state.hIn >= 1, 'Strophe counted it');

  // Cara's network goes away: nothing reaches weft any more, no answer comes back.
  proxy.blackhole = true;
  const second = `after the drop ${randomUUID()}`;
  await dan.send(xml('message', { to: boundJid, type: 'chat' }, xml('body', {}, second)));
  await sleep(300);

  // Strophe comes back over WebSocket with the same stored SM state and resumes.
  const again = await connect(wsUrl, 'bosh-cara', options);
  assert.ok(again.hasResumed(), 'Strophe resumed instead of binding');
  assert.equal(again.jid, boundJid, 'the same resource');
  await until(() => again.received.includes(second), 'the message sent while BOSH was gone');
  assert.ok(!again.received.includes(first), 'what Strophe had acknowledged is not sent again');
  // And the resumed session goes on over WebSocket.
  const third = `after the resume ${randomUUID()}`;
  await dan.send(xml('message', { to: boundJid, type: 'chat' }, xml('body', {}, third)));
  await until(() => again.received.includes(third), 'a new message on WebSocket');
  // The old BOSH connection learns nothing more (its network is gone): stop it.
  cara._proto._abortAllRequests();
  cara._doDisconnect();
});
