// The two-way message exchange used by the xmpp.js tests, whatever the transports.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { xml, nextStanza } from './xmppjs.js';
import { domain } from './env.js';

// Initial presence, then a ping round trip: the session handles stanzas in order, so the
// ping result proves the presence was processed before anyone sends to the bare JID.
export async function goOnline(xmpp) {
  await xmpp.send(xml('presence'));
  const pong = await xmpp.iqCaller.request(
    xml('iq', { type: 'get', to: domain }, xml('ping', { xmlns: 'urn:xmpp:ping' })),
    5000,
  );
  assert.equal(pong.attrs.type, 'result');
}

// Sends one chat message and checks what the recipient gets: the body, the 'to' as sent,
// and a 'from' stamped by the server with the sender's full JID (RFC 6120 §8.1.2.1).
async function sendAndCheck(from, to, toAddress) {
  const body = `hello ${randomUUID()}`;
  const received = nextStanza(
    to,
    (el) => el.is('message') && el.getChildText('body') === body,
    5000,
    `message "${body}" at ${to.boundJid}`,
  );
  await from.send(xml('message', { to: toAddress, type: 'chat' }, xml('body', {}, body)));
  const msg = await received;
  assert.equal(msg.attrs.from, from.boundJid.toString());
  assert.equal(msg.attrs.to, toAddress);
  assert.equal(msg.attrs.type, 'chat');
}

// a → b's bare JID, then b → a's full JID: both addressing forms, both directions.
export async function exchangeBothWays(a, b) {
  await goOnline(a);
  await goOnline(b);
  await sendAndCheck(a, b, b.boundJid.bare().toString());
  await sendAndCheck(b, a, a.boundJid.toString());
}
