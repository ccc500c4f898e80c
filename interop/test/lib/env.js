// Where the weft under test listens, handed over by run.sh through the environment.
// Missing variables fail loudly: these tests are meant to run via interop/run.sh.
import fs from 'node:fs';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the suite with interop/run.sh`);
  return v;
}

export const domain = need('WEFT_DOMAIN');
export const password = need('WEFT_PASSWORD');
export const httpPort = Number(need('WEFT_HTTP_PORT'));
export const httpsPort = Number(need('WEFT_HTTPS_PORT'));
export const c2sPort = Number(need('WEFT_C2S_PORT'));
export const c2sTlsPort = Number(need('WEFT_C2S_TLS_PORT'));
export const maxStanzaSize = Number(need('WEFT_MAX_STANZA_SIZE'));
// weft's generated self-signed certificate (valid for DNS name `localhost`). run.sh also
// points NODE_EXTRA_CA_CERTS at it, so libraries that take no `ca` option trust it too.
export const caFile = need('WEFT_CA_FILE');
export const ca = fs.readFileSync(caFile);

export const wsUrl = `ws://127.0.0.1:${httpPort}/xmpp-websocket`;
// wss must name `localhost` so the certificate's DNS name matches.
export const wssUrl = `wss://localhost:${httpsPort}/xmpp-websocket`;
export const tcpService = `xmpp://127.0.0.1:${c2sPort}`;
// Direct TLS (XEP-0368). xmpp.js verifies the certificate against the domain, `localhost`.
export const directTlsService = `xmpps://localhost:${c2sTlsPort}`;

// Each test file has its own accounts (run.sh creates them), so files may run in parallel
// without one file's sessions receiving another's messages.
export const jidOf = (user) => `${user}@${domain}`;
