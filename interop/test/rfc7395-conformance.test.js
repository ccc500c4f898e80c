// RFC 7395 (XMPP over WebSocket) edge cases against weft, frame by frame, with the raw `ws`
// package: what weft must answer and in which order, including how it closes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { wsUrl, wssUrl, ca, domain, password, maxStanzaSize, jidOf } from './lib/env.js';
import { WsProbe, NS, openFrame, closeFrame, children, refusedUpgrade } from './lib/wsprobe.js';

const probes = [];
after(() => probes.forEach((p) => p.terminate()));

async function connect(url = wsUrl, options = {}) {
  const p = await WsProbe.open(url, ['xmpp'], options);
  probes.push(p);
  return p;
}

// RFC 7395 §3.4 / RFC 6120 §4.7: the response header.
async function expectOpen(p) {
  const open = await p.expect('open', NS.FRAMING);
  assert.equal(open.getAttribute('from'), domain);
  assert.equal(open.getAttribute('version'), '1.0');
  assert.ok(open.getAttribute('id'), `stream id present: ${open.raw}`);
  return open;
}

// Opens a stream and reads up to the pre-authentication features.
async function openStream(url, options) {
  const p = await connect(url, options);
  p.send(openFrame());
  p.openId = (await expectOpen(p)).getAttribute('id');
  // RFC 7395 §3.3.3: the stream prefix is declared in the frame (parsing checked that).
  p.features = await p.expect('features', NS.STREAM);
  return p;
}

// RFC 7395 §3.5 and §3.6: a stream error is one frame, then <close/>; the server is the closing
// party, so once we answer its <close/> it must start the WebSocket closing handshake, and
// promptly (not after some timeout of its own).
async function expectStreamError(p, condition, { closeCodes = [1000] } = {}) {
  const err = await p.expect('error', NS.STREAM);
  const conditions = children(err).filter((c) => c.namespaceURI === NS.STREAMS && c.localName !== 'text');
  assert.deepEqual(conditions.map((c) => c.localName), [condition], err.raw);
  await p.expect('close', NS.FRAMING);
  p.send(closeFrame);
  const t0 = Date.now();
  const closed = await p.closed(1500);
  assert.ok(closeCodes.includes(closed.code),
    `WebSocket close code ${closed.code}${closed.code === 1006 ? ' (no close frame: the closing handshake did not happen)' : ''}, expected one of ${closeCodes}`);
  assert.ok(Date.now() - t0 < 1000, `close frame came ${Date.now() - t0} ms after our <close/>`);
  return err;
}

const mechanismsOf = (features) =>
  children(features)
    .filter((c) => c.namespaceURI === NS.SASL && c.localName === 'mechanisms')
    .flatMap((m) => children(m).map((x) => x.textContent));

// --- §3.1 handshake ------------------------------------------------------------------------

test('upgrade without the xmpp subprotocol is refused with 400 and a reason', async () => {
  for (const protocols of [[], ['chat']]) {
    const r = await refusedUpgrade(wsUrl, protocols);
    assert.equal(r.status, 400, `protocols ${JSON.stringify(protocols)}`);
    assert.match(r.body, /'xmpp' subprotocol/);
    assert.match(r.body, /Sec-WebSocket-Protocol/);
  }
});

test('upgrade with the xmpp subprotocol gets 101 and Sec-WebSocket-Protocol: xmpp', async () => {
  for (const protocols of [['xmpp'], ['chat', 'xmpp']]) {
    const p = await WsProbe.open(wsUrl, protocols);
    probes.push(p);
    assert.equal(p.response.statusCode, 101);
    assert.equal(p.response.headers['sec-websocket-protocol'], 'xmpp');
    assert.equal(p.ws.protocol, 'xmpp');
  }
});

// --- §3.4 stream initiation, §3.9 no STARTTLS ------------------------------------------------

test('<open/> gets <open/> then features with SASL and without STARTTLS', async () => {
  const p = await openStream();
  const tls = children(p.features).filter((c) => c.namespaceURI === NS.TLS);
  assert.deepEqual(tls.map((c) => c.localName), [], 'RFC 7395 §3.9: no STARTTLS on WebSocket');
  // Plain ws:// with allow_plain_on_loopback = false: SCRAM only, no PLAIN, no -PLUS.
  assert.deepEqual(mechanismsOf(p.features), ['SCRAM-SHA-256', 'SCRAM-SHA-1']);
});

test('an XML declaration before <open/> is accepted (NOT RECOMMENDED, but allowed)', async () => {
  const p = await connect();
  p.send(`<?xml version='1.0'?>${openFrame()}`);
  await expectOpen(p);
  await p.expect('features', NS.STREAM);
});

// --- §3.3.2 framing namespace, RFC 6120 §4.9.1.3 host-unknown -----------------------------

test('<open/> in the wrong namespace: <open/>, <invalid-namespace/>, <close/>, close frame', async () => {
  const p = await connect();
  p.send(openFrame(domain, NS.CLIENT));
  await expectOpen(p);
  await expectStreamError(p, 'invalid-namespace');
});

test("to='unknown.example': <open/>, <host-unknown/>, <close/>, close frame", async () => {
  const p = await connect();
  p.send(openFrame('unknown.example'));
  await expectOpen(p);
  await expectStreamError(p, 'host-unknown');
});

// --- §3.2 text frames only ----------------------------------------------------------------

test('a binary frame: stream error, <close/>, close code 1003 (unsupported data)', async () => {
  const p = await openStream();
  p.sendBinary("<presence xmlns='jabber:client'/>");
  // weft's choice of condition: the frame is not UTF-8 text (RFC 6120 §4.9.3.22).
  await expectStreamError(p, 'unsupported-encoding', { closeCodes: [1003] });
});

// --- §3.3.3 one well-formed, restricted document per frame, §3.8 no whitespace keepalives ----

const badFrames = [
  // weft's choice: a whitespace-only message is no XML document at all (RFC 7395 §3.8 bans
  // whitespace keepalives), so it is <not-well-formed/>.
  ['whitespace-only message', ' ', 'not-well-formed'],
  ['whitespace-only message (newlines)', '\n\r\n\t', 'not-well-formed'],
  ["a frame not starting with '<'", " <presence xmlns='jabber:client'/>", 'not-well-formed'],
  ['malformed XML', "<message xmlns='jabber:client'><body>hi</message>", 'not-well-formed'],
  ['unclosed element', "<message xmlns='jabber:client'", 'not-well-formed'],
  ['two elements in one frame', "<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>", 'not-well-formed'],
  ['a comment', "<message xmlns='jabber:client'><!-- hi --></message>", 'restricted-xml'],
  ['a processing instruction', "<message xmlns='jabber:client'><?pi data?></message>", 'restricted-xml'],
  ['a DOCTYPE', "<!DOCTYPE message><message xmlns='jabber:client'/>", 'restricted-xml'],
];

for (const [what, frame, condition] of badFrames) {
  test(`${what} → <${condition}/>`, async () => {
    const p = await openStream();
    p.send(frame);
    await expectStreamError(p, condition);
  });
}

test('restricted XML in the very first frame still gets our <open/> first (§3.5)', async () => {
  const p = await connect();
  p.send(`<!-- hello -->${openFrame()}`);
  await expectOpen(p);
  await expectStreamError(p, 'restricted-xml');
});

// WEFT BUG (reported): weft sends <policy-violation/> and <close/>, then drops the TCP
// connection without a WebSocket close frame (the client sees 1006), where RFC 7395 §3.6 wants
// the closing handshake; 1009 (message too big, RFC 6455 §7.4.1) fits best.
test(`a message over max_stanza_size (${maxStanzaSize} B) → <policy-violation/>`, async () => {
  const p = await openStream();
  const body = 'a'.repeat(maxStanzaSize + 100);
  p.send(`<message xmlns='jabber:client' to='${jidOf('rfc-judy')}'><body>${body}</body></message>`);
  await expectStreamError(p, 'policy-violation', { closeCodes: [1000, 1008, 1009] });
});

// --- §3.6 closing ---------------------------------------------------------------------------

test('<close/> from the client: <close/> back, then our closing handshake completes', async () => {
  const p = await openStream();
  p.send(closeFrame);
  await p.expect('close', NS.FRAMING);
  // We closed the stream, so we start the WebSocket closing handshake; weft must answer it.
  p.ws.close(1000);
  const t0 = Date.now();
  const closed = await p.closed(1500);
  assert.equal(closed.code, 1000);
  assert.ok(Date.now() - t0 < 1000, `weft answered our close frame after ${Date.now() - t0} ms`);
});

// --- §3.7 restart after SASL, then an established session ------------------------------------

// PLAIN over wss:// (PLAIN is offered only over TLS), trusting weft's generated certificate.
async function loggedIn(user, resource) {
  const p = await openStream(wssUrl, { ca });
  const mechs = mechanismsOf(p.features);
  for (const m of ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']) {
    assert.ok(mechs.includes(m), `wss offers ${m}: ${mechs}`);
  }
  const firstId = p.openId;
  const creds = Buffer.from(`\0${user}\0${password}`).toString('base64');
  p.send(`<auth xmlns='${NS.SASL}' mechanism='PLAIN'>${creds}</auth>`);
  await p.expect('success', NS.SASL);
  // RFC 7395 §3.7: a new <open/>, and no <close/> before it.
  p.send(openFrame());
  const reopened = await expectOpen(p);
  assert.notEqual(reopened.getAttribute('id'), firstId, 'a restart gets a new stream id');
  const features = await p.expect('features', NS.STREAM);
  assert.ok(children(features).some((c) => c.localName === 'bind' && c.namespaceURI === NS.BIND),
    `bind offered after the restart: ${features.raw}`);
  assert.deepEqual(mechanismsOf(features), [], 'no SASL after authentication');
  p.send(`<iq xmlns='${NS.CLIENT}' type='set' id='bind1'><bind xmlns='${NS.BIND}'><resource>${resource}</resource></bind></iq>`);
  const bound = await p.expect('iq', NS.CLIENT);
  assert.equal(bound.getAttribute('type'), 'result', bound.raw);
  assert.equal(bound.getAttribute('id'), 'bind1');
  p.jid = bound.getElementsByTagNameNS(NS.BIND, 'jid')[0]?.textContent;
  assert.equal(p.jid, `${jidOf(user)}/${resource}`);
  return p;
}

test('after PLAIN over wss://, the restart is a new <open/> and yields bind', async () => {
  await loggedIn('rfc-ivan', 'restart');
});

test('a ping to the server gets a result', async () => {
  const p = await loggedIn('rfc-ivan', 'ping');
  p.send(`<iq xmlns='${NS.CLIENT}' type='get' id='ping1' to='${domain}'><ping xmlns='urn:xmpp:ping'/></iq>`);
  const r = await p.expect('iq', NS.CLIENT);
  assert.equal(r.getAttribute('type'), 'result', r.raw);
  assert.equal(r.getAttribute('id'), 'ping1');
  assert.equal(r.getAttribute('from'), domain);
  assert.equal(r.getAttribute('to'), p.jid);
});

test('an IQ with an unknown payload namespace gets <service-unavailable/>', async () => {
  const p = await loggedIn('rfc-ivan', 'unknown');
  p.send(`<iq xmlns='${NS.CLIENT}' type='get' id='u1' to='${domain}'><query xmlns='urn:example:nothing-here'/></iq>`);
  const r = await p.expect('iq', NS.CLIENT);
  assert.equal(r.getAttribute('type'), 'error', r.raw);
  assert.equal(r.getAttribute('id'), 'u1');
  const error = r.getElementsByTagName('error')[0];
  assert.ok(error, r.raw);
  assert.equal(error.getAttribute('type'), 'cancel');
  assert.deepEqual(children(error).filter((c) => c.namespaceURI === NS.STANZAS).map((c) => c.localName),
    ['service-unavailable'], r.raw);
});

test("a stanza with a spoofed 'from' gets <invalid-from/>", async () => {
  const p = await loggedIn('rfc-ivan', 'spoof');
  p.send(`<message xmlns='${NS.CLIENT}' from='${jidOf('rfc-judy')}/x' to='${jidOf('rfc-ivan')}'><body>forged</body></message>`);
  await expectStreamError(p, 'invalid-from');
});
