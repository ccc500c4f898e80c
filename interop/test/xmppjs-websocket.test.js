// xmpp.js (@xmpp/client) against weft over RFC 7395 ws://: SCRAM-SHA-1 login, bind, and a
// message exchange both ways.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { wsUrl, jidOf } from './lib/env.js';
import { startClient, stopAll } from './lib/xmppjs.js';
import { exchangeBothWays } from './lib/exchange.js';

const clients = [];
after(() => stopAll(...clients));

test('xmpp.js over ws:// logs in with SCRAM-SHA-1, binds and exchanges messages', async () => {
  const alice = await startClient({ service: wsUrl, username: 'ws-alice', resource: 'laptop' });
  clients.push(alice);
  const bob = await startClient({ service: wsUrl, username: 'ws-bob' });
  clients.push(bob);

  // xmpp.js 0.14 implements SCRAM-SHA-1 and PLAIN only; weft offers no PLAIN on plain ws://.
  assert.deepEqual(alice.saslMechanisms, ['SCRAM-SHA-1']);
  assert.deepEqual(bob.saslMechanisms, ['SCRAM-SHA-1']);
  assert.equal(alice.boundJid.toString(), `${jidOf('ws-alice')}/laptop`);
  // No resource asked for: the server generates one (RFC 6120 §7.6.2.1).
  assert.equal(bob.boundJid.bare().toString(), jidOf('ws-bob'));
  assert.ok(bob.boundJid.resource, 'server-generated resource');

  await exchangeBothWays(alice, bob);
});
