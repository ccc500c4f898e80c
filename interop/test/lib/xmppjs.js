// Thin glue around @xmpp/client (xmpp.js): start a logged-in client and remember which SASL
// mechanism it chose, so tests can assert the mechanism instead of assuming it.
import WebSocket from 'ws';
import { client, xml } from '@xmpp/client';
import { domain, password } from './env.js';

// @xmpp/websocket uses the global WebSocket, which Node only has built in from version 22;
// on Node 20 the `ws` package stands in for it.
globalThis.WebSocket ??= WebSocket;

const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';

export { xml };

// Starts a client on `service` (ws://… or xmpp://…) as `username`, resolves once bound.
// `client.saslMechanisms` lists the mechanism of every <auth/> the library sent.
export async function startClient({ service, username, resource }) {
  const xmpp = client({ service, domain, username, password, resource });
  // A silent reconnect would hide a stream the server dropped: let the test see it.
  xmpp.reconnect.stop();
  xmpp.saslMechanisms = [];
  xmpp.on('send', (el) => {
    if (el.is('auth', NS_SASL)) xmpp.saslMechanisms.push(el.attrs.mechanism);
  });
  xmpp.errors = [];
  xmpp.on('error', (err) => xmpp.errors.push(err));
  xmpp.boundJid = await xmpp.start();
  return xmpp;
}

// Resolves with the next stanza for which `match` is true; rejects after `ms`.
export function nextStanza(xmpp, match, ms = 5000, what = 'stanza') {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      xmpp.removeListener('stanza', onStanza);
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    function onStanza(el) {
      if (!match(el)) return;
      clearTimeout(timer);
      xmpp.removeListener('stanza', onStanza);
      resolve(el);
    }
    xmpp.on('stanza', onStanza);
  });
}

// Stops clients, ignoring ones that already went away (cleanup must not mask a test failure).
export async function stopAll(...clients) {
  await Promise.all(clients.filter(Boolean).map((c) => c.stop().catch(() => {})));
}
