// The XMLHttpRequest a browser gives Strophe.js's BOSH transport, for Node (which has none):
// the subset Strophe uses (open, setRequestHeader, send, abort, readyState, status,
// responseText, responseXML, getAllResponseHeaders, onreadystatechange) over node:http.
// Everything BOSH (rids, bodies, retries) stays Strophe's own. A connection that fails
// ends with status 0, as in a browser, which is what makes Strophe retransmit.
import http from 'node:http';
import https from 'node:https';

export class NodeXHR {
  constructor() {
    this.readyState = 0;
    this.status = 0;
    this.responseText = '';
    this.responseXML = null;
    this.onreadystatechange = null;
    this.withCredentials = false;
    this._headers = {};
    this._responseHeaders = '';
  }

  overrideMimeType() {}

  open(method, url) {
    this._method = method;
    this._url = new URL(url);
    this._state(1);
  }

  setRequestHeader(name, value) {
    this._headers[name] = value;
  }

  getAllResponseHeaders() {
    return this._responseHeaders;
  }

  send(body) {
    const data = Buffer.from(body ?? '', 'utf8');
    const mod = this._url.protocol === 'https:' ? https : http;
    const req = mod.request(this._url, {
      method: this._method,
      headers: { ...this._headers, 'Content-Length': data.length },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', () => this._fail());
      res.on('end', () => {
        if (this._aborted) return;
        this.status = res.statusCode;
        this.responseText = Buffer.concat(chunks).toString('utf8');
        this._responseHeaders = Object.entries(res.headers).map(([k, v]) => `${k}: ${v}`).join('\r\n');
        // Strophe installs the DOMParser global (its Node DOM shim) before any request.
        this.responseXML = this.responseText
          ? new globalThis.DOMParser().parseFromString(this.responseText, 'text/xml')
          : null;
        this._state(4);
      });
    });
    req.on('error', () => this._fail());
    req.end(data);
    this._req = req;
  }

  abort() {
    this._aborted = true;
    this._req?.destroy();
  }

  _fail() {
    if (this._aborted || this.readyState === 4) return;
    this.status = 0;
    this._state(4);
  }

  _state(s) {
    this.readyState = s;
    this.onreadystatechange?.();
  }
}

globalThis.XMLHttpRequest ??= NodeXHR;
