// A minimal RFC 6120 s2s initiator, enough to see what a peer offers a server that calls
// itself `from`: the stream header and features before TLS, STARTTLS (presenting `cert` as
// client certificate and verifying the peer against `ca` for `to`), and the features after
// TLS; then, if asked (`authzid`) and offered, one SASL EXTERNAL attempt. It closes the stream
// without sending a stanza. Raw strings, not a parser: it records exactly what the peer sent.
import net from 'node:net';
import tls from 'node:tls';

function header(from, to) {
  return "<?xml version='1.0'?><stream:stream xmlns='jabber:server' " +
    "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' " +
    `from='${from}' to='${to}' version='1.0'>`;
}

// Reads from `sock` until `re` matches the text received since `start`; returns the match.
function readUntil(sock, state, re, ms, what) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = state.buf.match(re);
      if (!m) return false;
      cleanup();
      const upto = m.index + m[0].length;
      const got = state.buf.slice(0, upto);
      state.buf = state.buf.slice(upto);
      resolve(got);
      return true;
    };
    const onData = (d) => { state.buf += d.toString('utf8'); check(); };
    const onEnd = () => { cleanup(); reject(new Error(`stream ended waiting for ${what}; got: ${state.buf}`)); };
    const onError = (e) => { cleanup(); reject(e); };
    const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for ${what}; got: ${state.buf}`)); }, ms);
    function cleanup() {
      clearTimeout(timer);
      sock.off('data', onData); sock.off('end', onEnd); sock.off('error', onError);
    }
    sock.on('data', onData); sock.on('end', onEnd); sock.on('error', onError);
    check();
  });
}

const firstFeatures = (text) => {
  const i = text.search(/<([\w-]+:)?features[\s>\/]/);
  return i < 0 ? '' : text.slice(i);
};

export async function probeS2s({ ip, port, from, to, ca, cert, key, authzid, ms = 10000 }) {
  const out = {};
  const raw = net.connect({ host: ip, port });
  await new Promise((res, rej) => raw.once('connect', res).once('error', rej));
  try {
    const state = { buf: '' };
    raw.write(header(from, to));
    const pre = await readUntil(raw, state, /<\/([\w-]+:)?features>|<([\w-]+:)?features\/>/, ms, 'features before TLS');
    out.headerBeforeTls = pre.match(/<([\w-]+:)?stream[^>]*>/)?.[0];
    out.featuresBeforeTls = firstFeatures(pre);
    raw.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    out.proceed = await readUntil(raw, state, /<proceed[^>]*\/>|<proceed[^>]*>\s*<\/proceed>|<failure[^>]*\/>/, ms, 'proceed');
    const sock = tls.connect({ socket: raw, servername: to, ca, cert, key });
    await new Promise((res, rej) => sock.once('secureConnect', res).once('error', rej));
    out.tls = { protocol: sock.getProtocol(), authorized: sock.authorized, authorizationError: sock.authorizationError };
    const st = { buf: '' };
    sock.write(header(from, to));
    const post = await readUntil(sock, st,
      /<\/([\w-]+:)?features>|<([\w-]+:)?features\/>|<\/([\w-]+:)?error>/, ms, 'features after TLS');
    out.headerAfterTls = post.match(/<([\w-]+:)?stream[^>]*>/)?.[0];
    out.streamErrorAfterTls = post.match(/<([\w-]+:)?error[\s>][\s\S]*<\/([\w-]+:)?error>/)?.[0];
    out.featuresAfterTls = out.streamErrorAfterTls ? '' : firstFeatures(post);
    // authzid '' sends '=' (no authorization identity), anything else its base64.
    if (authzid !== undefined && /<mechanism>EXTERNAL<\/mechanism>/.test(out.featuresAfterTls)) {
      const payload = authzid === '' ? '=' : Buffer.from(authzid).toString('base64');
      sock.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>${payload}</auth>`);
      out.saslReply = await readUntil(sock, st, /<success[^>]*\/>|<success[\s\S]*?<\/success>|<failure[\s\S]*?<\/failure>|<failure[^>]*\/>/, ms, 'SASL reply');
    }
    // After <success/> the peer's parser waits for a new stream header (RFC 6120 §6.4.6):
    // open one, so that the closing tag is well-formed there too.
    if (/^<success/.test(out.saslReply ?? '')) sock.write(header(from, to));
    sock.write('</stream:stream>');
    await readUntil(sock, st, /<\/([\w-]+:)?stream>/, 3000, 'closing tag').catch(() => {});
    sock.destroy();
  } finally {
    raw.destroy();
  }
  return out;
}
