// xmpp.js (@xmpp/client) against weft over RFC 6120 TCP: STARTTLS (trusting weft's generated
// certificate through NODE_EXTRA_CA_CERTS, set by run.sh), SCRAM-SHA-1, bind, messages; Direct
// TLS; and a TCP client talking to a WebSocket client through the same router.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { tcpService, directTlsService, wsUrl, jidOf } from './lib/env.js';
import { startClient, stopAll } from './lib/xmppjs.js';
import { exchangeBothWays } from './lib/exchange.js';

const clients = [];
after(() => stopAll(...clients));

async function start(service, username) {
  const c = await startClient({ service, username });
  clients.push(c);
  return c;
}

test('xmpp.js over TCP upgrades with STARTTLS, uses SCRAM-SHA-1 and exchanges messages', async () => {
  const carol = await start(tcpService, 'tcp-carol');
  const dave = await start(tcpService, 'tcp-dave');

  for (const c of [carol, dave]) {
    // The stream really is TLS now, and authenticated after it (STARTTLS is required first).
    assert.equal(c.isSecure(), true, 'socket upgraded to TLS');
    // Over TLS xmpp.js takes the first mechanism it implements that weft offers; it has no
    // -PLUS variants, so SCRAM-SHA-1 must win over PLAIN.
    assert.deepEqual(c.saslMechanisms, ['SCRAM-SHA-1']);
  }
  assert.equal(carol.boundJid.bare().toString(), jidOf('tcp-carol'));

  await exchangeBothWays(carol, dave);
});

test('a WebSocket client and a TCP client exchange messages', async () => {
  const erin = await start(wsUrl, 'mix-erin');
  const frank = await start(tcpService, 'mix-frank');
  assert.deepEqual(erin.saslMechanisms, ['SCRAM-SHA-1']);
  assert.deepEqual(frank.saslMechanisms, ['SCRAM-SHA-1']);
  // ws → TCP to the bare JID, TCP → ws to the full JID.
  await exchangeBothWays(erin, frank);
});

test('xmpp.js over Direct TLS (xmpps://) logs in with SCRAM-SHA-1', async () => {
  const olivia = await start(directTlsService, 'tls-olivia');
  assert.equal(olivia.isSecure(), true);
  assert.deepEqual(olivia.saslMechanisms, ['SCRAM-SHA-1']);
  assert.equal(olivia.boundJid.bare().toString(), jidOf('tls-olivia'));
});
