// SCRAM-SHA-256 (RFC 7677) against a client we did not write: Strophe.js. xmpp.js 0.14 has only
// SCRAM-SHA-1. Strophe.js speaks WebSocket and BOSH but not raw TCP, so this covers ws:// and
// wss://; TCP SCRAM-SHA-256 has no third-party JavaScript client to test with. The last test
// also checks that Strophe reaches CONNECTED (bind, then the legacy session request) and chats.
//
// Strophe's Node entry point installs @xmldom/xmldom as its DOM and `ws` as WebSocket; wss://
// trusts weft's certificate through NODE_EXTRA_CA_CERTS (set by run.sh).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Strophe, $msg, $pres, $iq } from 'strophe.js';
import { wsUrl, wssUrl, jidOf, password, domain } from './lib/env.js';

const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
// Elements Strophe builds carry their namespace as an xmlns attribute only.
const nsOf = (el) => el.namespaceURI || el.getAttribute('xmlns');
// Strophe logs progress to the console; keep warnings (they name failures), drop the chatter.
Strophe.setLogLevel(Strophe.LogLevel.WARN);
const connections = [];
after(() => connections.forEach((c) => c.disconnect()));

// Connects and resolves with Strophe's first final status (CONNECTED or a failure) and its
// name; rejects only on timeout. Records every <auth mechanism=…> Strophe sent, the mechanisms
// weft offered, and whether <success/> came back.
const S = Strophe.Status;
const statusName = Object.fromEntries(Object.entries(S).map(([k, v]) => [v, k]));
const FINAL = [S.CONNECTED, S.ERROR, S.CONNFAIL, S.AUTHFAIL, S.CONNTIMEOUT, S.DISCONNECTED];

function connect(service, user) {
  const conn = new Strophe.Connection(service);
  connections.push(conn);
  Object.assign(conn, { saslMechanisms: [], offeredMechanisms: [], saslSuccess: false });
  conn.xmlOutput = (el) => {
    if (el.nodeName === 'auth' && nsOf(el) === NS_SASL) {
      conn.saslMechanisms.push(el.getAttribute('mechanism'));
    }
  };
  conn.xmlInput = (el) => {
    if (el.nodeName === 'success' && nsOf(el) === NS_SASL) conn.saslSuccess = true;
    const found = el.getElementsByTagNameNS(NS_SASL, 'mechanism');
    for (let i = 0; i < found.length; i++) conn.offeredMechanisms.push(found[i].textContent);
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${user}: no final status in 10 s`)), 10000);
    conn.connect(jidOf(user), password, (status, condition) => {
      if (!FINAL.includes(status)) return;
      clearTimeout(timer);
      resolve({ conn, status: statusName[status], condition });
    });
  });
}

// SASL done right by both sides: Strophe sent SCRAM-SHA-256, weft answered <success/>, and
// Strophe verified weft's server signature (it keeps the SCRAM keys only after that check).
function assertScramSha256(conn) {
  assert.deepEqual(conn.saslMechanisms, ['SCRAM-SHA-256']);
  assert.equal(conn.saslSuccess, true, '<success/> received');
  assert.ok(conn.scram_keys, 'Strophe accepted the server signature in <success/>');
}

// Resolves with the first stanza of `name` for which `match` is true; rejects after `ms`.
function waitFor(conn, name, match, ms = 5000) {
  return new Promise((resolve, reject) => {
    let handler = null;
    const timer = setTimeout(() => {
      conn.deleteHandler(handler);
      reject(new Error(`timed out waiting for <${name}/> at ${conn.jid}`));
    }, ms);
    handler = conn.addHandler((el) => {
      if (!match(el)) return true; // keep the handler
      clearTimeout(timer);
      resolve(el);
      return false;
    }, null, name);
  });
}

// Initial presence, then a ping: its result proves the presence was processed first.
function goOnline(conn) {
  conn.send($pres());
  return new Promise((resolve, reject) => {
    conn.sendIQ($iq({ type: 'get', to: domain }).c('ping', { xmlns: 'urn:xmpp:ping' }),
      resolve, (err) => reject(new Error(`ping failed: ${err && Strophe.serialize(err)}`)), 5000);
  });
}

async function sendAndCheck(from, to, toAddress) {
  const body = `hello ${randomUUID()}`;
  const got = waitFor(to, 'message', (m) => m.getElementsByTagName('body')[0]?.textContent === body);
  from.send($msg({ to: toAddress, type: 'chat' }).c('body').t(body));
  const msg = await got;
  assert.equal(msg.getAttribute('from'), from.jid);
  assert.equal(msg.getAttribute('to'), toAddress);
}

test('Strophe.js authenticates with SCRAM-SHA-256 over ws:// and binds', async () => {
  const { conn } = await connect(wsUrl, 'strophe-grace');
  assert.deepEqual(conn.offeredMechanisms, ['SCRAM-SHA-256', 'SCRAM-SHA-1']);
  assertScramSha256(conn);
  // Strophe replaces its jid with the one in the bind result.
  assert.match(conn.jid, new RegExp(`^${jidOf('strophe-grace')}/.+`));
});

test('Strophe.js authenticates with SCRAM-SHA-256 over wss:// and binds', async () => {
  const { conn } = await connect(wssUrl, 'strophe-heidi');
  // Over TLS weft also offers the -PLUS variants and PLAIN; Strophe implements no -PLUS
  // variant and ranks SCRAM-SHA-256 above SCRAM-SHA-1 and PLAIN, so SCRAM-SHA-256 it must be.
  assert.ok(conn.offeredMechanisms.includes('SCRAM-SHA-256-PLUS'), 'wss offers -PLUS');
  assertScramSha256(conn);
  assert.match(conn.jid, new RegExp(`^${jidOf('strophe-heidi')}/.+`));
});

// WEFT BUG (reported): weft advertises <session><optional/></session> after SASL but answers
// the RFC 3921 session request, which Strophe sends after bind as RFC 3921 §3 orders it, with
// <service-unavailable/>; Strophe then reports AUTHFAIL. A server that advertises the feature
// must answer that request with a result. This test asserts the correct behaviour.
test('Strophe.js reaches CONNECTED (bind + session) and exchanges messages', async () => {
  const a = await connect(wsUrl, 'strophe-grace');
  const b = await connect(wssUrl, 'strophe-heidi');
  for (const r of [a, b]) assert.equal(r.status, 'CONNECTED', `${r.conn.jid}: ${r.status}`);
  await goOnline(a.conn);
  await goOnline(b.conn);
  await sendAndCheck(a.conn, b.conn, jidOf('strophe-heidi'));
  await sendAndCheck(b.conn, a.conn, a.conn.jid);
});
