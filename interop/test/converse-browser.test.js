// Converse.js (its prebuilt dist, as sites embed it) in a real browser, Debian's Chromium under
// playwright-core: logs in to weft, receives a chat message from an xmpp.js client and shows
// it, answers through its own UI. A second test lets Converse find weft by itself (XEP-0156
// host-meta, fetched cross-origin, so weft's CORS header is exercised) and connect over wss://.
// A third reloads Converse on a fresh origin (no local storage) and gets the conversation back
// from weft's archive (XEP-0313).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { wsUrl, httpsPort, jidOf, password, ca, domain } from './lib/env.js';
import { startClient, nextStanza, stopAll, xml } from './lib/xmppjs.js';
import { goOnline } from './lib/exchange.js';
import { serveConverse } from './lib/converse-page.js';
import { launchChromium, spkiHash, watchPage, withArtifacts, until } from './lib/browser.js';

let browser;
const cleanups = [];
before(async () => {
  browser = await launchChromium({ trustSpki: spkiHash(ca) });
});
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await browser?.close();
});

// Settings both tests share: log in at once as `user`, fail visibly instead of reconnecting,
// nothing that needs a desktop.
const base = (user) => ({
  authentication: 'login', auto_login: true, jid: jidOf(user), password,
  auto_reconnect: false, assets_path: '/dist/', view_mode: 'fullscreen',
  play_sounds: false, show_desktop_notifications: false, loglevel: 'info',
});

// Opens the page, waits for Converse's `connected` event; returns the page and its record.
async function openConverse(t, settings) {
  const site = await serveConverse(settings);
  cleanups.push(site.close);
  const page = await browser.context.newPage();
  const rec = watchPage(page);
  await withArtifacts(t.name, page, rec, async () => {
    await page.goto(site.url);
    await page.waitForFunction(() => window.weftProbe.connected || window.weftProbe.errors.length,
      null, { timeout: 20000 });
    assert.deepEqual(await page.evaluate(() => window.weftProbe.errors), []);
  });
  return { page, rec };
}

// What Converse (Strophe.js inside) sent and got on the wire, from the browser's own record.
const mechanismsSent = (rec) => rec.sent.flatMap((f) => f.match(/<auth [^>]*mechanism=["']([^"']+)/)?.[1] ?? []);
const gotSuccess = (rec) => rec.received.some((f) => /^<success[\s>/]/.test(f));

test('Converse.js in Chromium logs in over ws://, shows a message and answers it', async (t) => {
  const { page, rec } = await openConverse(t, {
    ...base('converse-sam'), websocket_url: wsUrl, discover_connection_methods: false,
  });
  await withArtifacts(t.name, page, rec, async () => {
    assert.deepEqual(rec.sockets, [wsUrl]);
    assert.deepEqual(mechanismsSent(rec), ['SCRAM-SHA-256']);
    assert.ok(gotSuccess(rec), 'weft sent <success/>');
    // Converse announces itself (initial presence) after roster and disco; only then is its
    // session available for messages to the bare JID.
    await until(() => rec.sent.some((f) => /^<presence(?![^>]*type=)/.test(f)), 'Converse\'s initial presence');

    if (await page.evaluate(() => window.weftProbe.blocklistStandIn)) {
      t.diagnostic('weft advertises no XEP-0191: the page gave Converse an empty blocklist (see lib/converse-page.js)');
    }

    const trent = await startClient({ service: wsUrl, username: 'converse-trent' });
    cleanups.push(() => stopAll(trent));
    await goOnline(trent);

    // xmpp.js → Converse, to the bare JID. Converse's API sees it, lists trent under "New
    // messages"; a click opens the chat, which shows the text.
    const hello = `hello Converse ${randomUUID()}`;
    await trent.send(xml('message', { to: jidOf('converse-sam'), type: 'chat' }, xml('body', {}, hello)));
    await page.waitForFunction((body) => window.weftProbe.messages.some((m) => m.body === body), hello,
      { timeout: 10000 });
    const seen = await page.evaluate(() => window.weftProbe.messages);
    assert.deepEqual(seen, [{ from: trent.boundJid.toString(), body: hello }]);
    await page.locator('a.open-chat', { hasText: 'converse-trent' }).first().click();
    await page.locator('.chat-msg__text', { hasText: hello }).waitFor({ timeout: 10000 });

    // Converse → xmpp.js, typed into Converse's own message box and sent with Enter.
    const reply = `hello xmpp.js ${randomUUID()}`;
    const received = nextStanza(trent, (el) => el.is('message') && el.getChildText('body') === reply,
      10000, `Converse's reply "${reply}"`);
    const box = page.locator('textarea.chat-textarea');
    await box.fill(reply);
    await box.press('Enter');
    const msg = await received;
    // weft stamps the sender's full JID: Converse's bound resource on converse-sam.
    assert.match(msg.attrs.from, new RegExp(`^${jidOf('converse-sam')}/.+`));
    assert.equal(msg.attrs.type, 'chat');
    assert.equal(msg.attrs.to, trent.boundJid.bare().toString());
  });
});

test('Converse.js discovers weft through host-meta (XEP-0156, CORS) and logs in over wss://', async (t) => {
  const { context } = browser;
  // Converse fetches https://<domain>/.well-known/host-meta: port 443, where nothing of ours
  // listens. Send that one request to weft's HTTPS port instead; the browser still makes it
  // (cross-origin, so weft's Access-Control-Allow-Origin is what lets Converse read it) and
  // verifies weft's certificate.
  const hostMeta = `https://${domain}/.well-known/host-meta`;
  await context.route(hostMeta, (route) => route.continue({ url: `https://${domain}:${httpsPort}/.well-known/host-meta` }));
  cleanups.push(() => context.unroute(hostMeta));

  const { page, rec } = await openConverse(t, { ...base('converse-uma'), discover_connection_methods: true });
  await withArtifacts(t.name, page, rec, async () => {
    assert.deepEqual(rec.hostMeta, [{ status: 200, cors: '*' }], 'host-meta fetched once, with CORS');
    // host-meta lists wss:// and ws:// (loopback); Converse takes only wss:// links.
    assert.deepEqual(rec.sockets, [`wss://${domain}:${httpsPort}/xmpp-websocket`]);
    assert.deepEqual(mechanismsSent(rec), ['SCRAM-SHA-256']);
    assert.ok(gotSuccess(rec), 'weft sent <success/>');
  });
});

test('Converse.js on a fresh page gets the conversation back from the archive (XEP-0313)', async (t) => {
  const settings = { ...base('converse-vera'), websocket_url: wsUrl, discover_connection_methods: false };
  const first = await openConverse(t, settings);
  const walt = await startClient({ service: wsUrl, username: 'converse-walt' });
  cleanups.push(() => stopAll(walt));
  const bodies = [1, 2, 3].map((i) => `archived ${i} ${randomUUID()}`);
  await withArtifacts(t.name, first.page, first.rec, async () => {
    await until(() => first.rec.sent.some((f) => /^<presence(?![^>]*type=)/.test(f)), 'Converse\'s initial presence');
    await goOnline(walt);
    for (const body of bodies) {
      await walt.send(xml('message', { to: jidOf('converse-vera'), type: 'chat' }, xml('body', {}, body)));
    }
    await first.page.waitForFunction((want) => want.every((b) => window.weftProbe.messages.some((m) => m.body === b)),
      bodies, { timeout: 10000 });
  });
  await first.page.close();

  // Another origin: Converse starts with empty storage, so only the server can give the
  // history back. Opening the chat makes Converse ask the archive.
  const second = await openConverse(t, settings);
  await withArtifacts(t.name, second.page, second.rec, async () => {
    await second.page.evaluate((jid) => window.weftProbe.api.chats.open(jid), jidOf('converse-walt'));
    for (const body of bodies) {
      await second.page.locator('.chat-msg__text', { hasText: body }).waitFor({ timeout: 15000 });
    }
    assert.ok(second.rec.sent.some((f) => f.includes('urn:xmpp:mam:2') && /^<iq[\s>]/.test(f)),
      'Converse queried the archive');
    assert.ok(second.rec.received.some((f) => f.includes('<result') && f.includes('urn:xmpp:mam:2')),
      'weft answered with archived messages');
    assert.deepEqual(await second.page.evaluate(() => window.weftProbe.messages), [],
      'nothing arrived live: the page shows the archive');
  });
});
