// Smoke test of the federation harness itself, without weft: alice@prosody.test and
// bob@ejabberd.test (xmpp.js over c2s STARTTLS, trusting the test CA) exchange messages and
// directed presence across Prosody ↔ ejabberd s2s, which proves the harness's DNS,
// certificates and configs. Then each peer's logs must show the authentication the mode calls
// for on both links (SASL EXTERNAL, or dialback when the peers cannot verify certificates),
// and a probe posing as weft.test records the stream features each peer offers.
//   interop/s2s/run.sh            # both modes, harness up and down around each
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { randomUUID } from 'node:crypto';
import {
  loadHarness, startClient, nextStanza, goOnline, waitForLog, stopAll, xml,
} from './lib/harness.js';
import { probeS2s } from './lib/s2s-probe.js';

const h = loadHarness();
const { prosody, ejabberd } = h.peers;
const S2S_MS = 30000; // first stanza on a link waits for DNS, TCP, TLS and authentication
let alice;
let bob;

before(async () => {
  alice = await startClient(h, prosody);
  bob = await startClient(h, ejabberd);
  await goOnline(alice, prosody.domain);
  await goOnline(bob, ejabberd.domain);
}, { timeout: 30000 });
after(() => stopAll(alice, bob));

test(`${h.mode}: both users are logged in over c2s STARTTLS on their own peer`, () => {
  assert.equal(alice.boundJid.bare().toString(), `${prosody.user}@${prosody.domain}`);
  assert.equal(bob.boundJid.bare().toString(), `${ejabberd.user}@${ejabberd.domain}`);
  assert.equal(alice.isSecure(), true);
  assert.equal(bob.isSecure(), true);
});

async function sendMessage(from, to, toAddress) {
  const body = `s2s ${randomUUID()}`;
  const got = nextStanza(to, (el) => el.is('message') && el.getChildText('body') === body,
    S2S_MS, `message "${body}" at ${to.boundJid}`);
  await from.send(xml('message', { to: toAddress, type: 'chat' }, xml('body', {}, body)));
  const msg = await got;
  assert.equal(msg.attrs.from, from.boundJid.toString());
  assert.equal(msg.attrs.type, 'chat');
}

test(`${h.mode}: a message from alice@prosody.test reaches bob@ejabberd.test`, async () => {
  await sendMessage(alice, bob, bob.boundJid.bare().toString());
});

test(`${h.mode}: a message from bob@ejabberd.test reaches alice@prosody.test`, async () => {
  await sendMessage(bob, alice, alice.boundJid.bare().toString());
});

async function directedPresence(from, to) {
  const status = `here ${randomUUID()}`;
  const got = nextStanza(to, (el) => el.is('presence') && el.getChildText('status') === status,
    S2S_MS, `presence "${status}" at ${to.boundJid}`);
  await from.send(xml('presence', { to: to.boundJid.bare().toString() }, xml('status', {}, status)));
  const pres = await got;
  assert.equal(pres.attrs.from, from.boundJid.toString());
  assert.equal(pres.attrs.type, undefined); // available
}

test(`${h.mode}: directed presence goes prosody.test → ejabberd.test`, () => directedPresence(alice, bob));
test(`${h.mode}: directed presence goes ejabberd.test → prosody.test`, () => directedPresence(bob, alice));

// Both links (prosody.test → ejabberd.test and back) must have authenticated the way the mode
// says, as each peer reports it: Prosody through the harness's logging module, ejabberd in its
// own "Accepted inbound/outbound s2s MECH authentication" lines. In dialback mode ejabberd
// also logs failed EXTERNAL attempts first (it offers EXTERNAL whatever the certificate, and
// Prosody tries it; its own outgoing side finds no mechanisms at Prosody): expected, see README.
test(`${h.mode}: each peer reports ${h.mode === 'external' ? 'SASL EXTERNAL' : 'dialback'} on both links`, async () => {
  const mech = h.mode === 'external' ? 'EXTERNAL' : 'dialback';
  const other = h.mode === 'external' ? 'dialback' : 'EXTERNAL';
  const p = prosody.domain.replace(/\./g, '\\.');
  const e = ejabberd.domain.replace(/\./g, '\\.');
  const pl = await waitForLog(prosody.log, [
    new RegExp(`harness-s2s-auth direction=incoming from=${e} to=${p} mechanism=${mech}\\b`),
    new RegExp(`harness-s2s-auth direction=outgoing from=${p} to=${e} mechanism=${mech}\\b`),
  ]);
  // Only this pair's links: weft.test's (and the probe's, which poses as weft.test) are judged
  // by weft-federates.test.js.
  assert.doesNotMatch(pl, new RegExp(`harness-s2s-auth .*from=(${p} to=${e}|${e} to=${p}) mechanism=${other}\\b`));
  const el = await waitForLog(ejabberd.log, [
    new RegExp(`Accepted inbound s2s ${mech} authentication ${p} -> ${e}`),
    new RegExp(`Accepted outbound s2s ${mech} authentication ${e} -> ${p}`),
  ]);
  assert.doesNotMatch(el, new RegExp(`Accepted (inbound|outbound) s2s ${other} authentication (${p} -> ${e}|${e} -> ${p})`));
  if (h.mode === 'external') {
    assert.doesNotMatch(el, new RegExp(`Failed (inbound|outbound) s2s .*(${p} -> ${e}|${e} -> ${p})`));
  } else {
    assert.match(el, new RegExp(`Failed inbound s2s EXTERNAL authentication ${p} -> ${e} .*: self signed certificate in certificate chain`));
    assert.match(el, new RegExp(`Failed outbound s2s EXTERNAL authentication ${e} -> ${p} .*Peer provided no SASL mechanisms`));
  }
});

// What weft will meet: a server calling itself weft.test, with its certificate from the test
// CA, connects to each peer's s2s port, asks for STARTTLS and tries SASL EXTERNAL, with an
// empty authorization identity ('=') and with its domain. In external mode the peer verifies
// the certificate and EXTERNAL succeeds; in dialback mode it cannot (Prosody then offers no
// SASL at all, ejabberd still offers EXTERNAL but refuses it) and dialback is on offer.
for (const name of ['prosody', 'ejabberd']) {
  for (const authzid of ['', 'weft.test']) {
    const form = authzid === '' ? "'='" : 'authzid weft.test';
    const want = h.mode === 'external' ? 'succeeds' : 'is refused or not offered';
    test(`${h.mode}: ${name}: weft.test's STARTTLS works and SASL EXTERNAL (${form}) ${want}`, async (t) => {
      const peer = h.peers[name];
      const got = await probeS2s({
        ip: peer.ip, port: peer.s2sPort, from: h.weft.domain, to: peer.domain, authzid,
        ca: fs.readFileSync(h.caFile), cert: fs.readFileSync(h.weft.cert), key: fs.readFileSync(h.weft.key),
      });
      t.diagnostic(`${name} header before TLS: ${got.headerBeforeTls}`);
      t.diagnostic(`${name} features before TLS: ${got.featuresBeforeTls}`);
      t.diagnostic(`${name} features after TLS (${got.tls.protocol}): ${got.featuresAfterTls}`);
      t.diagnostic(`${name} SASL EXTERNAL reply: ${got.saslReply ?? '(not offered)'}`);
      assert.match(got.featuresBeforeTls, /<starttls xmlns=['"]urn:ietf:params:xml:ns:xmpp-tls['"]><required\/><\/starttls>/);
      assert.equal(got.tls.authorized, true, `peer certificate for ${peer.domain}: ${got.tls.authorizationError}`);
      const succeeded = /^<success/.test(got.saslReply ?? '');
      assert.equal(succeeded, h.mode === 'external', `SASL EXTERNAL reply: ${got.saslReply ?? '(not offered)'}`);
      if (h.mode === 'dialback') {
        assert.match(got.featuresAfterTls, /<dialback xmlns=['"]urn:xmpp:features:dialback['"]/);
      }
    });
  }
}

// The case of weft behind a TLS-terminating proxy: no client certificate at all. Neither peer
// lets EXTERNAL succeed then. ejabberd still offers EXTERNAL (and refuses it) and dialback.
// Prosody offers dialback in dialback mode; with s2s_secure_auth (external mode) it answers the
// stream header after TLS with a <not-authorized/> stream error instead of features.
for (const name of ['prosody', 'ejabberd']) {
  const secureAuth = name === 'prosody' && h.mode === 'external';
  test(`${h.mode}: ${name}: without a client certificate ${secureAuth ? 'the stream is refused (not-authorized)' : 'SASL EXTERNAL does not succeed and dialback is offered'}`, async (t) => {
    const peer = h.peers[name];
    const got = await probeS2s({
      ip: peer.ip, port: peer.s2sPort, from: h.weft.domain, to: peer.domain, authzid: h.weft.domain,
      ca: fs.readFileSync(h.caFile),
    });
    t.diagnostic(`${name} after TLS, no client certificate: ${got.streamErrorAfterTls ?? got.featuresAfterTls}`);
    t.diagnostic(`${name} SASL EXTERNAL reply: ${got.saslReply ?? '(not offered)'}`);
    if (secureAuth) {
      assert.match(got.streamErrorAfterTls ?? '', /<not-authorized xmlns=['"]urn:ietf:params:xml:ns:xmpp-streams['"]\/>/);
      return;
    }
    assert.doesNotMatch(got.saslReply ?? '', /^<success/);
    assert.match(got.featuresAfterTls, /<dialback xmlns=['"]urn:xmpp:features:dialback['"]/);
  });
}
