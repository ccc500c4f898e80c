// A raw RFC 7395 peer on the `ws` package, for checking weft's exact replies. Everything weft
// sends is queued in order; `next()` takes the next event or fails after a timeout, so a
// missing reply fails the test instead of hanging it.
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { DOMParser } from '@xmldom/xmldom';
import { wsUrl } from './env.js';

export const NS = {
  FRAMING: 'urn:ietf:params:xml:ns:xmpp-framing',
  STREAM: 'http://etherx.jabber.org/streams',
  STREAMS: 'urn:ietf:params:xml:ns:xmpp-streams',
  STANZAS: 'urn:ietf:params:xml:ns:xmpp-stanzas',
  SASL: 'urn:ietf:params:xml:ns:xmpp-sasl',
  TLS: 'urn:ietf:params:xml:ns:xmpp-tls',
  BIND: 'urn:ietf:params:xml:ns:xmpp-bind',
  CLIENT: 'jabber:client',
};

export const openFrame = (to = 'localhost', ns = NS.FRAMING) =>
  `<open xmlns='${ns}' to='${to}' version='1.0'/>`;
export const closeFrame = `<close xmlns='${NS.FRAMING}'/>`;

// RFC 7395 §3.3.3: every frame starts with '<' and is a standalone, namespace-complete XML
// document. xmldom throws on anything not well-formed, so parsing checks both.
export function parseFrame(text) {
  assert.equal(text[0], '<', `frame must start with '<': ${text}`);
  const parser = new DOMParser({
    onError: (level, msg) => {
      if (level !== 'warning') throw new Error(`frame is not well-formed XML (${msg}): ${text}`);
    },
  });
  return parser.parseFromString(text, 'text/xml').documentElement;
}

export const children = (el) => Array.from(el.childNodes).filter((n) => n.nodeType === 1);

export class WsProbe {
  // Opens a WebSocket; resolves once upgraded. `ws.protocol` and `response` tell what was agreed.
  static open(url = wsUrl, protocols = ['xmpp'], options = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols, options);
      const probe = new WsProbe(ws);
      ws.once('upgrade', (res) => { probe.response = res; });
      ws.once('open', () => resolve(probe));
      ws.once('unexpected-response', (_req, res) =>
        reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.events = [];
    this.waiter = null;
    this.log = []; // everything received, for failure messages
    ws.on('message', (data, isBinary) =>
      this.push({ kind: isBinary ? 'binary' : 'text', data: data.toString() }));
    ws.on('close', (code, reason) => this.push({ kind: 'close', code, reason: reason.toString() }));
    ws.on('error', (err) => this.push({ kind: 'error', error: err.message }));
  }

  push(ev) {
    this.log.push(ev);
    this.events.push(ev);
    if (this.waiter) this.waiter();
  }

  // The next event: {kind: 'text'|'binary', data} or {kind: 'close', code, reason}.
  async next(ms = 3000) {
    if (!this.events.length) {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiter = null;
          reject(new Error(`no reply within ${ms} ms; received so far: ${JSON.stringify(this.log)}`));
        }, ms);
        this.waiter = () => { clearTimeout(timer); this.waiter = null; resolve(); };
      });
    }
    return this.events.shift();
  }

  // The next event must be a text frame; returns its parsed root element.
  async frame(ms) {
    const ev = await this.next(ms);
    assert.equal(ev.kind, 'text', `expected a text frame, got ${JSON.stringify(ev)}`);
    const el = parseFrame(ev.data);
    el.raw = ev.data;
    return el;
  }

  // The next frame must be `localName` in `ns`; returns it.
  async expect(localName, ns, ms) {
    const el = await this.frame(ms);
    assert.equal(`{${el.namespaceURI}}${el.localName}`, `{${ns}}${localName}`, el.raw);
    return el;
  }

  // The next event must be the end of the WebSocket connection.
  async closed(ms) {
    const ev = await this.next(ms);
    assert.equal(ev.kind, 'close', `expected the WebSocket to close, got ${JSON.stringify(ev)}`);
    return ev;
  }

  send(text) { this.ws.send(text); }
  sendBinary(text) { this.ws.send(Buffer.from(text), { binary: true }); }
  terminate() { this.ws.terminate(); }
}

// Tries an upgrade that weft should refuse; resolves with the HTTP status, headers and body.
export function refusedUpgrade(url, protocols) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols);
    ws.once('open', () => { ws.terminate(); reject(new Error(`upgrade accepted (protocol '${ws.protocol}')`)); });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => { ws.terminate(); resolve({ status: res.statusCode, headers: res.headers, body }); });
    });
    ws.once('error', () => {}); // terminate() after unexpected-response may emit one
  });
}
