// xmpp.js (@xmpp/client with its @xmpp/stream-management and @xmpp/reconnect) doing XEP-0198
// stream management against weft over RFC 7395 ws://: enabling with resumption and the acks
// both ways; an abruptly dropped WebSocket that xmpp.js's reconnect module resumes with every
// message exactly once and in order; and a resumption that fails (the session timed out) after
// which xmpp.js binds a fresh session and the messages it missed come from offline storage
// with an XEP-0203 delay.
//
// Every frame each xmpp.js client writes or reads is recorded, per connection, as it crosses
// the WebSocket (`c.frames`): the assertions are on those frames and on xmpp.js's own state
// (`xmpp.streamManagement`: id, enabled, inbound/outbound counters, its 'resumed' and 'fail'
// events). A failing wait prints the frames.
//
// How a connection is dropped: `xmpp.socket` is xmpp.js's WebSocket wrapper, `.socket` under it
// the `ws` package's WebSocket and `._socket` under that the net.Socket. Destroying the
// net.Socket closes the TCP connection with no WebSocket close frame and no </close>: weft sees
// the connection end, xmpp.js sees a dirty close (code 1006) and its reconnect module takes
// over. So that the net.Socket is reachable on every Node version, this file makes xmpp.js use
// the `ws` package's WebSocket (Node 22+ would otherwise give it its built-in one).
//
// Known xmpp.js 0.14.0 behaviour the counts below model: it does not count replies to its own
// IQ requests in its 'h'. iqCaller's middleware consumes them before stream management's
// counter sees them (the counter is registered after it), so after a ping xmpp.js's <a h/>
// is one short of XEP-0198's count and weft keeps that pong as unacknowledged, sending it
// again after a resumption. `xmppjsCounted` reproduces xmpp.js's rule; the h's are asserted
// exactly against it. And xmpp.js resets its count at <enabled/> only in a later microtask,
// after bind has already made it 'online': stanzas weft sent before <enabled/> (say the
// reflection of a presence sent at 'online') are counted, and an <r/> read in the same tick
// is answered with an h above what weft sent, which weft rightly ends with
// <handled-count-too-high/> (XEP-0198 §4). So every client here (the senders too) sends
// nothing before xmpp.js has handled <enabled/> (`smClient` waits for it).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { client } from '@xmpp/client';
import { wsUrl, domain, password } from './lib/env.js';
import { stopAll, nextStanza, xml } from './lib/xmppjs.js';
import { goOnline } from './lib/exchange.js';

globalThis.WebSocket = WebSocket; // see "How a connection is dropped" above

const NS_SM = 'urn:xmpp:sm:3';
const NS_DELAY = 'urn:xmpp:delay';
const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
const NS_STREAM = 'http://etherx.jabber.org/streams';
const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

const clients = [];
after(async () => {
  for (const c of clients) c.reconnect.stop(); // no reconnection of a client being stopped
  await stopAll(...clients);
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const isStanza = (el) => ['message', 'presence', 'iq'].includes(el?.name);

// One WebSocket frame (RFC 7395: one standalone element) parsed with xmpp.js's XML parser.
function parseFrame(text) {
  const parser = new xml.Parser();
  let el = null;
  let error = null;
  parser.on('element', (e) => { el = e; });
  parser.on('error', (e) => { error = e; });
  parser.write(`<frame>${text}</frame>`);
  if (error || !el) throw new Error(`not an XML element (${error?.message}): ${text}`);
  el.parent = null;
  return el;
}

// An xmpp.js client over ws:// with stream management (xmpp.js always enables it when weft
// offers it), recording every frame. Resolves once bound and <enabled/> arrived.
// `reconnect`: keep xmpp.js's reconnect module on (lib/xmppjs.js turns it off).
// `preferredMaximum`: xmpp.js's sm.preferredMaximum, sent as <enable max=''/>.
async function smClient(username, { resource, reconnect = false, preferredMaximum } = {}) {
  const c = client({ service: wsUrl, domain, username, password, resource });
  clients.push(c);
  if (!reconnect) c.reconnect.stop();
  if (preferredMaximum !== undefined) c.streamManagement.preferredMaximum = preferredMaximum;
  c.frames = []; // { conn, dir: 'in' | 'out', text, el }
  c.conn = 0; // which WebSocket connection this is, from 1
  const record = (dir, data) => {
    const text = String(data);
    let el = null;
    try { el = parseFrame(text); } catch (err) { c.badFrames.push(err.message); }
    c.frames.push({ conn: c.conn, dir, text, el });
  };
  c.badFrames = [];
  // Incoming: xmpp.js's Connection binds _onData once, at its first socket, so this wrapper
  // sees each frame before xmpp.js parses it (and before any reply it makes).
  const onData = c._onData.bind(c);
  c._onData = (data) => { record('in', data); onData(data); };
  // Outgoing: every connection gets a new xmpp.js socket; wrap its write as it connects (the
  // 'connect' status comes before <open/> is written).
  c.on('connect', () => {
    c.conn += 1;
    const socket = c.socket;
    assert.ok(socket.socket instanceof WebSocket && socket.socket._socket,
      'xmpp.js is not on the ws package: the test cannot reach its TCP socket');
    const write = socket.write.bind(socket);
    socket.write = (data, fn) => { record('out', data); write(data, fn); };
  });
  c.errors = [];
  c.on('error', (err) => c.errors.push(err));
  c.messages = []; // what xmpp.js's 'stanza' handler saw: chat messages with a body
  c.on('stanza', (el) => {
    if (el.is('message') && el.getChild('body')) {
      c.messages.push({ body: el.getChildText('body'), from: el.attrs.from, el, conn: c.conn });
    }
  });
  c.statuses = []; // xmpp.js's status changes, for failure messages
  c.on('status', (status) => c.statuses.push(`${status}@${c.conn}`));
  c.onlines = [];
  c.on('online', (jid) => c.onlines.push(String(jid)));
  c.resumes = 0;
  c.streamManagement.on('resumed', () => { c.resumes += 1; });
  c.failed = []; // stanzas xmpp.js gave up on (its 'fail' event)
  c.streamManagement.on('fail', (el) => c.failed.push(String(el)));
  c.boundJid = await c.start();
  // start() resolves at the bind result; <enable/> goes out after it.
  await waitFor(() => c.streamManagement.enabled && c.streamManagement.id, c, 'xmpp.js enabling SM');
  return c;
}

// The last `last` frames (SM_DUMP_LAST=n in the environment for more), xmpp.js statuses, errors.
function dump(c, last = Number(process.env.SM_DUMP_LAST ?? 80)) {
  const lines = c.frames.slice(-last)
    .map((f) => `#${f.conn} ${f.dir === 'in' ? '<-' : '->'} ${f.text.length > 400 ? `${f.text.slice(0, 400)}…` : f.text}`);
  return `${c.jid ?? c.options.username}: statuses ${c.statuses.join(' ')}; errors ${c.errors.join('; ') || 'none'}; `
    + `last ${lines.length} of ${c.frames.length} frames:\n  ${lines.join('\n  ')}`;
}

// Polls `check` until truthy; fails after `ms` naming `what`, with c's frames.
async function waitFor(check, c, what, ms = 8000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms; ${dump(c)}`);
    await sleep(20);
  }
}

// Index of the first frame at or after `from` that matches; -1 if none.
const findFrame = (c, match, from = 0) => c.frames.findIndex((f, i) => i >= from && match(f));
const frameIs = (conn, dir, name, ns) => (f) => f.conn === conn && f.dir === dir && f.el?.is(name, ns);

async function waitFrame(c, match, what, from = 0, ms) {
  const i = await waitFor(() => { const j = findFrame(c, match, from); return j >= 0 ? j + 1 : 0; }, c, what, ms);
  return i - 1;
}

// For each incoming frame index: does xmpp.js count it in its 'h'? A stanza, except a reply
// to an IQ request of its own that is still pending (iqCaller swallows those; see the top).
function xmppjsCounted(c) {
  const pending = new Set();
  const counted = new Map();
  c.frames.forEach((f, i) => {
    if (!isStanza(f.el)) return;
    const { name, attrs } = f.el;
    if (f.dir === 'out') {
      if (name === 'iq' && ['get', 'set'].includes(attrs.type)) pending.add(attrs.id);
      return;
    }
    const reply = name === 'iq' && ['result', 'error'].includes(attrs.type);
    counted.set(i, !(reply && pending.delete(attrs.id)));
  });
  return counted;
}

// Stanzas in `dir` on `conn` strictly between frame indices `from` and `to`; incoming ones as
// xmpp.js counts them when `asXmppjs`.
function countStanzas(c, conn, dir, from, to, asXmppjs = false) {
  const counted = asXmppjs ? xmppjsCounted(c) : null;
  let n = 0;
  for (let i = from + 1; i < to; i++) {
    const f = c.frames[i];
    if (f.conn !== conn || f.dir !== dir || !isStanza(f.el)) continue;
    if (!counted || counted.get(i)) n += 1;
  }
  return n;
}

// Every <r/> on connection `conn` after its SM start and the <a/> that answers it: xmpp.js's
// h for weft's <r/> is what xmpp.js counted since the start (plus `inBase`), weft's h for
// xmpp.js's <r/> every stanza xmpp.js sent since the start (plus `outBase`). The start is
// <enabled/> (in) and <enable/> (out) on a fresh session, <resumed/> on a resumed one. An
// <r/> the connection lost before its answer is skipped. Returns how many of each it checked.
function checkAcks(c, conn, { inStart, inBase = 0, outStart, outBase = 0 }) {
  const checked = { weftAsked: 0, clientAsked: 0 };
  c.frames.forEach((f, i) => {
    if (f.conn !== conn || !f.el?.is('r', NS_SM)) return;
    const fromWeft = f.dir === 'in';
    if (i < (fromWeft ? inStart : outStart)) return;
    const j = findFrame(c, frameIs(conn, fromWeft ? 'out' : 'in', 'a', NS_SM), i + 1);
    if (j < 0) return;
    const h = c.frames[j].el.attrs.h;
    const expected = fromWeft
      ? inBase + countStanzas(c, conn, 'in', inStart, i, true)
      : outBase + countStanzas(c, conn, 'out', outStart, i);
    assert.equal(h, String(expected),
      `${fromWeft ? "xmpp.js's answer to weft's" : "weft's answer to xmpp.js's"} <r/> (frame ${i}): ${c.frames[j].text}\n${dump(c)}`);
    checked[fromWeft ? 'weftAsked' : 'clientAsked'] += 1;
  });
  return checked;
}

// Drops c's connection abruptly: the TCP socket under the WebSocket is destroyed (see the top).
function dropConnection(c) {
  const dropped = { conn: c.conn, at: Date.now() };
  c.socket.socket._socket.destroy();
  return dropped;
}

const ping = (c) => c.iqCaller.request(
  xml('iq', { type: 'get', to: domain }, xml('ping', { xmlns: 'urn:xmpp:ping' })), 5000);

const chat = (to, run, n) =>
  xml('message', { to, type: 'chat', id: `${run}-${n}` }, xml('body', {}, `${run} ${n}`));

// The numbers of this run's messages, in the order given.
const numbersOf = (list, run) => list.filter((b) => b.startsWith(`${run} `)).map((b) => Number(b.slice(run.length + 1)));
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

// Waits until xmpp.js has had every stanza it sent acknowledged by weft (its own <r/> goes out
// 250 ms after its last stanza), so nothing is left for xmpp.js to resend or give up on.
const allAcked = (c) => waitFor(() => c.streamManagement.outbound_q.length === 0, c,
  "weft's acknowledgement of everything xmpp.js sent");

// Available presence, done once weft reflects it back (RFC 6121 §4.2.2). No IQ: xmpp.js counts
// what it receives here the XEP-0198 way (see the top).
async function available(c) {
  const from = c.frames.length;
  await c.send(xml('presence'));
  await waitFrame(c, (f) => f.dir === 'in' && f.el?.is('presence') && !f.el.attrs.type
    && f.el.attrs.from === c.jid.toString(), 'own presence back', from);
}

// Returns once weft has processed an <a/> of xmpp.js's covering everything xmpp.js had
// received when called: an <a/> with that h went out before a presence weft then reflected.
async function settle(c) {
  const target = c.streamManagement.inbound;
  for (let i = 0; i < 20; i++) {
    const before = c.frames.length;
    const acked = c.frames.slice(0, before).some((f) => f.conn === c.conn && f.dir === 'out'
      && f.el?.is('a', NS_SM) && Number(f.el.attrs.h) >= target);
    await available(c); // a new stanza: weft asks for an ack again if none is outstanding
    if (acked) return;
    await sleep(50);
  }
  throw new Error(`no <a h='${target}'/> reached weft; ${dump(c)}`);
}

test('xmpp.js enables stream management with resumption; acks flow both ways', async () => {
  const ana = await smClient('jssm-ana', { resource: 'acks' });
  const sm = ana.streamManagement;

  // weft offers SM after authentication, with bind; xmpp.js binds first, then enables.
  const features = ana.frames.filter((f) => f.dir === 'in' && f.el?.is('features', NS_STREAM)
    && f.el.getChild('bind', NS_BIND));
  assert.equal(features.length, 1, dump(ana));
  assert.ok(features[0].el.getChild('sm', NS_SM), `no <sm/> feature: ${features[0].text}`);
  const bindResult = findFrame(ana, (f) => f.dir === 'in' && f.el?.is('iq') && f.el.attrs.type === 'result'
    && f.el.getChild('bind', NS_BIND));
  const enable = findFrame(ana, frameIs(1, 'out', 'enable', NS_SM));
  const enabled = findFrame(ana, frameIs(1, 'in', 'enabled', NS_SM));
  assert.ok(bindResult >= 0 && enable > bindResult && enabled > enable, dump(ana));
  assert.equal(ana.frames[enable].el.attrs.resume, 'true', ana.frames[enable].text);
  assert.equal(ana.frames[enable].el.attrs.max, undefined, ana.frames[enable].text);
  const { attrs } = ana.frames[enabled].el;
  assert.ok(['true', '1'].includes(attrs.resume), `not resumable: ${ana.frames[enabled].text}`);
  assert.ok(attrs.id, `no SM-ID: ${ana.frames[enabled].text}`);
  assert.match(attrs.max ?? '', /^[1-9][0-9]*$/, `max: the resume timeout in seconds: ${ana.frames[enabled].text}`);
  // xmpp.js's view.
  assert.equal(sm.enabled, true);
  assert.equal(sm.id, attrs.id);
  assert.equal(sm.max, attrs.max);

  // Traffic both ways: presence and a ping, then three messages ana sends herself.
  await goOnline(ana);
  const run = randomUUID().slice(0, 8);
  for (let n = 1; n <= 3; n++) await ana.send(chat(ana.jid.toString(), run, n));
  await waitFor(() => numbersOf(ana.messages.map((m) => m.body), run).length === 3, ana, 'the 3 messages to self');
  await ping(ana);
  await allAcked(ana);
  // One more round so weft's last <r/> (after the pong) has its answer too.
  const before = ana.frames.length;
  await ping(ana);
  await allAcked(ana);
  await waitFrame(ana, frameIs(1, 'out', 'a', NS_SM), "xmpp.js's <a/> after the last ping", before);

  const checked = checkAcks(ana, 1, { inStart: enabled, outStart: enable });
  assert.ok(checked.weftAsked >= 2, `weft's <r/> answered fewer than twice: ${JSON.stringify(checked)}\n${dump(ana)}`);
  assert.ok(checked.clientAsked >= 2, `xmpp.js's <r/> answered fewer than twice: ${JSON.stringify(checked)}\n${dump(ana)}`);
  // xmpp.js's counters agree with the wire: everything it sent is acked by weft's last <a/>,
  // and it counted what it received as xmpp.js counts (see the top).
  const lastA = ana.frames.findLast((f) => f.dir === 'in' && f.el?.is('a', NS_SM));
  assert.equal(sm.outbound, Number(lastA.el.attrs.h));
  assert.equal(sm.outbound, countStanzas(ana, 1, 'out', enable, ana.frames.length));
  assert.equal(sm.inbound, countStanzas(ana, 1, 'in', enabled, ana.frames.length, true));
  assert.deepEqual(ana.failed, []);
  assert.deepEqual(ana.errors, []);
  assert.deepEqual(ana.badFrames, []);
});

test('a dropped WebSocket: xmpp.js reconnects and resumes; every message once, in order', async () => {
  const ana = await smClient('jssm-ana', { resource: 'roaming', reconnect: true });
  const ben = await smClient('jssm-ben', { resource: 'sender' });
  // No IQ request of ana's before the drop: xmpp.js would not count the reply in its h (see
  // the top), and weft, going by that h, would rightly send a message again after resuming.
  await available(ana);
  await goOnline(ben);
  await allAcked(ana);
  const sm = ana.streamManagement;
  const smId = sm.id;
  const anaJid = ana.jid.toString();
  const enable = findFrame(ana, frameIs(1, 'out', 'enable', NS_SM));
  const enabled = findFrame(ana, frameIs(1, 'in', 'enabled', NS_SM));

  // ben sends numbered messages to ana's full JID every 20 ms. When ana's handler sees number
  // DROP_AT her connection is dropped on the spot (more are already on their way); ben goes
  // on until ana has resumed and ten more went out after that.
  const run = randomUUID().slice(0, 8);
  const DROP_AT = 15;
  let dropped = null;
  ana.on('stanza', (el) => {
    if (!dropped && el.is('message') && el.getChildText('body') === `${run} ${DROP_AT}`) {
      dropped = dropConnection(ana);
    }
  });
  const phase = { beforeDrop: 0, whileDown: 0, afterResume: 0 };
  let n = 0;
  let afterResume = 0;
  const deadline = Date.now() + 20000;
  while (afterResume < 10) {
    assert.ok(Date.now() < deadline,
      `ana did not resume within 20 s (dropped: ${JSON.stringify(dropped)}, ${n} sent)\n${dump(ana)}`);
    n += 1;
    await ben.send(chat(anaJid, run, n));
    if (!dropped) phase.beforeDrop += 1;
    else if (!ana.resumes) phase.whileDown += 1;
    else { phase.afterResume += 1; afterResume += 1; }
    await sleep(20);
  }
  const N = n;
  await waitFor(() => numbersOf(ana.messages.map((m) => m.body), run).length >= N, ana,
    `all ${N} messages at ana (got ${numbersOf(ana.messages.map((m) => m.body), run).join(' ')})`, 10000);
  await ping(ana); // anything weft still had for ana came before the pong

  // ana's message handler saw every message exactly once, in order, all from ben.
  const mine = ana.messages.filter((m) => m.body.startsWith(`${run} `));
  assert.deepEqual(numbersOf(mine.map((m) => m.body), run), range(1, N),
    `phases ${JSON.stringify(phase)}\n${dump(ana)}`);
  for (const m of mine) assert.equal(m.from, ben.jid.toString(), String(m.el));
  assert.ok(phase.whileDown > 0, `ben sent nothing while ana was down: ${JSON.stringify(phase)}`);
  assert.ok(mine.some((m) => m.conn === 2 && Number(m.body.split(' ')[1]) < N - afterResume),
    'no message sent before the resumption arrived on the new connection');

  // The drop was abrupt: no </close> on the first connection, from either side.
  assert.equal(ana.conn, 2, `connections: ${ana.conn}\n${dump(ana)}`);
  assert.equal(findFrame(ana, (f) => f.conn === 1 && f.el?.is('close')), -1, dump(ana));

  // On the new connection: xmpp.js authenticated again, then <resume/> instead of binding.
  const resume = findFrame(ana, frameIs(2, 'out', 'resume', NS_SM));
  const resumed = findFrame(ana, frameIs(2, 'in', 'resumed', NS_SM));
  assert.ok(resume >= 0 && resumed > resume, `no <resume/> answered by <resumed/>\n${dump(ana)}`);
  const lastOnConn1 = ana.frames.findLastIndex((f) => f.conn === 1);
  const r = ana.frames[resume].el.attrs;
  const rd = ana.frames[resumed].el.attrs;
  assert.equal(r.previd, smId);
  assert.equal(rd.previd, smId);
  // xmpp.js's h: what it counted on the first connection; weft's: everything ana sent there.
  assert.equal(r.h, String(countStanzas(ana, 1, 'in', enabled, lastOnConn1 + 1, true)), dump(ana));
  assert.equal(rd.h, String(countStanzas(ana, 1, 'out', enable, lastOnConn1 + 1)), dump(ana));
  assert.equal(findFrame(ana, (f) => f.conn === 2 && f.dir === 'out' && f.el?.is('iq')
    && f.el.getChild('bind', NS_BIND)), -1, `a new bind after the drop\n${dump(ana)}`);
  assert.equal(findFrame(ana, frameIs(2, 'out', 'enable', NS_SM)), -1, `a new <enable/>\n${dump(ana)}`);
  // On the wire too, each message exactly once over both connections.
  const onWire = ana.frames.filter((f) => f.dir === 'in' && f.el?.is('message')).map((f) => f.el.getChildText('body'));
  assert.deepEqual(numbersOf(onWire, run), range(1, N));

  // xmpp.js's view: resumed once, never 'online' again, same SM-ID and JID, nothing failed.
  assert.equal(ana.resumes, 1);
  assert.deepEqual(ana.onlines, [anaJid]);
  assert.equal(sm.enabled, true);
  assert.equal(sm.id, smId);
  assert.equal(ana.jid.toString(), anaJid);
  assert.equal(ana.status, 'online');
  assert.deepEqual(ana.failed, []);

  // Acks on both connections, counted on from <resumed/> on the second.
  checkAcks(ana, 1, { inStart: enabled, outStart: enable });
  const acks2 = checkAcks(ana, 2, { inStart: resumed, inBase: Number(r.h), outStart: resumed, outBase: Number(rd.h) });
  assert.ok(acks2.weftAsked >= 1, `no <r/> of weft's answered after the resumption\n${dump(ana)}`);

  // The resumed session works both ways.
  const back = `${run} back`;
  const atBen = nextStanza(ben, (el) => el.is('message') && el.getChildText('body') === back, 5000,
    "ana's message after the resumption at ben");
  await ana.send(xml('message', { to: ben.jid.toString(), type: 'chat' }, xml('body', {}, back)));
  assert.equal((await atBen).attrs.from, anaJid);
  assert.deepEqual(ana.errors, []);
  assert.deepEqual(ana.badFrames, []);
});

test('resumption after the session timed out: <failed/>, xmpp.js binds afresh, missed messages come from offline storage', async () => {
  // xmpp.js's sm.preferredMaximum goes out as <enable max='1'/>: the resume timeout it asks for
  // (XEP-0198 §5), which weft grants: cas's session waits only 1 s for a resumption. xmpp.js's
  // reconnect module waits 3 s before reconnecting.
  const cas = await smClient('jssm-cas', { resource: 'brief', reconnect: true, preferredMaximum: 1 });
  cas.reconnect.delay = 3000;
  const ben = await smClient('jssm-ben', { resource: 'sender-3' });
  await goOnline(ben);
  await available(cas);
  const sm = cas.streamManagement;
  const oldId = sm.id;
  const casJid = cas.jid.toString();
  const enable = findFrame(cas, frameIs(1, 'out', 'enable', NS_SM));
  const enabled = findFrame(cas, frameIs(1, 'in', 'enabled', NS_SM));
  assert.equal(cas.frames[enable].el.attrs.max, '1', cas.frames[enable].text);
  assert.equal(cas.frames[enabled].el.attrs.max, '1', `weft's resume timeout: ${cas.frames[enabled].text}`);

  // Three messages cas gets and acknowledges (weft has the <a/>), before the drop.
  const run = randomUUID().slice(0, 8);
  for (let n = 1; n <= 3; n++) await ben.send(chat(casJid, run, n));
  await waitFor(() => numbersOf(cas.messages.map((m) => m.body), run).length === 3, cas, 'messages 1-3');
  await settle(cas);
  await allAcked(cas); // and nothing of cas's own left for xmpp.js to give up on
  // Everything cas sent weft on this connection was handled: the <failed h=''/> to expect.
  const handled = countStanzas(cas, 1, 'out', enable, cas.frames.length);

  // Drop; three more messages go to the session that waits for cas.
  const dropped = dropConnection(cas);
  for (let n = 4; n <= 6; n++) await ben.send(chat(casJid, run, n));
  await ping(ben); // weft routed them

  // 3 s later xmpp.js reconnects; its <resume/> fails, and it binds a new session.
  await waitFor(() => cas.onlines.length === 2, cas, "xmpp.js's second 'online'", 15000);
  await waitFor(() => sm.enabled && sm.id && sm.id !== oldId, cas, 'stream management on the new session');
  assert.equal(cas.conn, 2, dump(cas));
  const resume = findFrame(cas, frameIs(2, 'out', 'resume', NS_SM));
  const failed = findFrame(cas, frameIs(2, 'in', 'failed', NS_SM));
  assert.ok(resume >= 0 && failed > resume, `no <resume/> answered by <failed/>\n${dump(cas)}`);
  assert.equal(cas.frames[resume].el.attrs.previd, oldId);
  const f = cas.frames[failed].el;
  assert.equal(f.attrs.h, String(handled), `<failed h=''/>: what weft handled of cas's\n${dump(cas)}`);
  assert.ok(f.getChild('item-not-found', NS_STANZAS), cas.frames[failed].text);
  assert.equal(findFrame(cas, frameIs(2, 'in', 'resumed', NS_SM)), -1, dump(cas));
  // Then the fallback: a bind and a new <enable/> on the same connection.
  const bind = findFrame(cas, (x) => x.conn === 2 && x.dir === 'out' && x.el?.is('iq')
    && x.el.getChild('bind', NS_BIND), failed);
  const enable2 = findFrame(cas, frameIs(2, 'out', 'enable', NS_SM), failed);
  const enabled2 = findFrame(cas, frameIs(2, 'in', 'enabled', NS_SM), failed);
  assert.ok(bind > failed && enable2 > bind && enabled2 > enable2, dump(cas));
  assert.equal(cas.frames[enabled2].el.attrs.id, sm.id);
  // xmpp.js's view: not resumed, online again as a new session (same resource, it asked for
  // it and the old session is gone), nothing it sent given up on.
  assert.equal(cas.resumes, 0);
  assert.deepEqual(cas.onlines, [casJid, casJid]);
  assert.deepEqual(cas.failed, []);

  // Available again: 4-6 come from offline storage with an XEP-0203 delay from the server,
  // stamped when weft took them (after the drop). 1-3 do not come again.
  await available(cas);
  await waitFor(() => numbersOf(cas.messages.map((m) => m.body), run).length >= 6, cas, 'messages 4-6 from offline storage');
  const now = Date.now();
  // Then two more, live.
  for (let n = 7; n <= 8; n++) await ben.send(chat(casJid, run, n));
  await waitFor(() => numbersOf(cas.messages.map((m) => m.body), run).length >= 8, cas, 'messages 7-8');
  await ping(cas);

  const mine = cas.messages.filter((m) => m.body.startsWith(`${run} `));
  assert.deepEqual(numbersOf(mine.map((m) => m.body), run), range(1, 8), dump(cas));
  for (const m of mine) {
    const n = Number(m.body.split(' ')[1]);
    assert.equal(m.from, ben.jid.toString(), String(m.el));
    assert.equal(m.conn, n <= 3 ? 1 : 2, String(m.el));
    const delays = m.el.getChildren('delay', NS_DELAY);
    if (n < 4 || n > 6) {
      assert.equal(delays.length, 0, `a live message with a delay: ${m.el}`);
      continue;
    }
    assert.equal(delays.length, 1, `one <delay/>: ${m.el}`);
    assert.equal(delays[0].attrs.from, domain, String(m.el));
    const stamp = delays[0].attrs.stamp;
    assert.match(stamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    const t = Date.parse(stamp);
    assert.ok(t >= Math.floor(dropped.at / 1000) * 1000 && t <= now, `stamp ${stamp} not between the drop and the delivery`);
  }

  // Acks on the new session, counted from its <enable/>/<enabled/>.
  checkAcks(cas, 1, { inStart: enabled, outStart: enable });
  const acks2 = checkAcks(cas, 2, { inStart: enabled2, outStart: enable2 });
  assert.ok(acks2.weftAsked >= 1, dump(cas));
  assert.deepEqual(cas.errors, []);
  assert.deepEqual(cas.badFrames, []);
});
