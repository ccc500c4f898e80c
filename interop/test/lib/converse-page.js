// A throwaway web server for the Converse.js test: one HTML page that loads Converse.js's
// prebuilt dist files (as a site embedding Converse would) and initialises it with the given
// settings, plus those dist files. Loopback only, on a port the kernel picks.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DIST = path.dirname(fileURLToPath(import.meta.resolve('converse.js/dist/converse.min.js')));

const TYPES = {
  '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json',
  '.wasm': 'application/wasm', '.svg': 'image/svg+xml', '.png': 'image/png',
  '.woff': 'font/woff', '.woff2': 'font/woff2', '.ttf': 'font/ttf', '.mp3': 'audio/mpeg',
  '.ogg': 'audio/ogg', '.map': 'application/json',
};

// The page. A tiny Converse plugin ("weft-probe") records what the test asserts on: whether
// Converse reached its `connected` state and the chat messages its API saw.
//
// It also stands in for a missing blocklist. Converse 14 opens a chat with someone not in the
// roster only after `blocklistInitialized`, which it fires only for servers that advertise
// XEP-0191 blocking (urn:xmpp:blocking); weft has neither rosters nor XEP-0191 yet, so without
// this no 1:1 chat with anyone would ever open (Converse waits forever). Only when weft does not
// advertise XEP-0191, the probe resolves that promise with an empty blocklist and notes it
// (weftProbe.blocklistStandIn), so the test can say so.
function page(settings) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>weft × Converse.js</title>
<link rel="stylesheet" href="/dist/converse.min.css">
</head><body class="converse-fullscreen">
<script type="module">
  // Converse.js 12+ ships its dist as an ES module (with lazily imported chunks).
  import converse from '/dist/converse.min.js';
  window.weftProbe = { connected: false, bookmarksInitialized: false, blocklistStandIn: false, messages: [], errors: [] };
  converse.plugins.add('weft-probe', {
    initialize() {
      const { _converse } = this;
      const { api } = _converse;
      // For tests that drive Converse through its own API (open a chat).
      window.weftProbe.api = api;
      api.listen.on('connected', () => { window.weftProbe.connected = true; });
      // Converse's bookmarks collection exists (it makes one only with PEP bookmarks support).
      api.listen.on('bookmarksInitialized', () => { window.weftProbe.bookmarksInitialized = true; });
      // The SHA-1 (hex) of the avatar in Converse's vCard model of a JID, if any.
      window.weftProbe.vcardHash = (jid) => _converse.state.vcards?.get(jid)?.get('image_hash') ?? null;
      api.listen.on('discoInitialized', async () => {
        if (await api.disco.supports('urn:xmpp:blocking', _converse.session.get('domain'))) return;
        window.weftProbe.blocklistStandIn = true;
        api.trigger('blocklistInitialized', new Map()); // .get(jid) → undefined: none blocked
      });
      api.listen.on('message', (data) => {
        const body = data.stanza?.querySelector(':scope > body')?.textContent;
        if (body) window.weftProbe.messages.push({ from: data.stanza.getAttribute('from'), body });
      });
    },
  });
  converse.initialize(Object.assign(${JSON.stringify(settings)}, { whitelisted_plugins: ['weft-probe'] }))
    .catch((e) => window.weftProbe.errors.push(String(e)));
</script>
</body></html>`;
}

// Starts the server; resolves with { url, close() }.
export async function serveConverse(settings) {
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://x');
    if (pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page(settings));
      return;
    }
    // Converse's dist files, under /dist/ and at the root too (libomemo loads its WebAssembly
    // relative to the page); never anything outside the dist directory.
    const rel = path.posix.normalize(decodeURIComponent(pathname)).replace(/^\/dist\//, '/');
    const file = path.join(DIST, rel);
    if (!file.startsWith(DIST + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    // The browser keeps its connections to the site open in a pool that outlives the page;
    // without dropping them, close() waited for them and could outlast the test's timeout.
    close: () => new Promise((resolve) => { server.close(resolve); server.closeAllConnections(); }),
  };
}
