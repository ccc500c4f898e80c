// Converse.js (its prebuilt dist) in Chromium connected over BOSH only (XEP-0206): no
// WebSocket URL, no discovery, just `bosh_service_url`. The page is served from another
// origin than weft, so every request is cross-origin: the browser's CORS preflight and
// weft's Access-Control-Allow-Origin are on the path. Converse logs in, shows a message from
// an xmpp.js user on WebSocket and answers it through its own UI.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { httpPort, jidOf, password } from './lib/env.js';
import { startClient, nextStanza, stopAll, xml } from './lib/xmppjs.js';
import { goOnline } from './lib/exchange.js';
import { wsUrl } from './lib/env.js';
import { serveConverse } from './lib/converse-page.js';
import { launchChromium, watchPage, withArtifacts, until } from './lib/browser.js';

const boshUrl = `http://127.0.0.1:${httpPort}/http-bind`;
let browser;
const cleanups = [];
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await browser?.close();
});

test('Converse.js in Chromium over BOSH only: logs in, shows a message and answers it', { timeout: 60000 }, async (t) => {
  const site = await serveConverse({
    authentication: 'login', auto_login: true, jid: jidOf('bosh-cleo'), password,
    auto_reconnect: false, assets_path: '/dist/', view_mode: 'fullscreen',
    play_sounds: false, show_desktop_notifications: false, loglevel: 'info',
    bosh_service_url: boshUrl, discover_connection_methods: false,
  });
  cleanups.push(site.close);
  const page = await browser.context.newPage();
  const rec = watchPage(page);
  // Every BOSH request body and the CORS header of every answer, as the browser saw them.
  const posts = [];
  const allowOrigin = [];
  page.on('request', (r) => {
    if (r.url() === boshUrl && r.method() === 'POST') posts.push(r.postData() ?? '');
  });
  page.on('response', (r) => {
    if (r.url() === boshUrl) allowOrigin.push(r.headers()['access-control-allow-origin']);
  });
  await withArtifacts(t.name, page, rec, async () => {
    await page.goto(site.url);
    await page.waitForFunction(() => window.weftProbe.connected || window.weftProbe.errors.length,
      null, { timeout: 20000 });
    assert.deepEqual(await page.evaluate(() => window.weftProbe.errors), []);
    assert.deepEqual(rec.sockets, [], 'no WebSocket at all');
    assert.ok(posts.length >= 4, `BOSH requests: ${posts.length}`);
    assert.match(posts[0], /xmpp:version=["']1\.0["']/, 'an XEP-0206 session creation request');
    assert.ok(posts.some((p) => /mechanism=["']SCRAM-SHA-256["']/.test(p)), 'SCRAM-SHA-256 over BOSH');
    assert.ok(posts.some((p) => /xmpp:restart=["']true["']/.test(p)), 'the XEP-0206 restart');
    assert.ok(allowOrigin.length > 0 && allowOrigin.every((o) => o === '*'), `CORS: ${allowOrigin}`);
    await until(() => posts.some((p) => /<presence(?![^>]*type=)/.test(p)), 'Converse\'s initial presence');

    const dora = await startClient({ service: wsUrl, username: 'bosh-dora' });
    cleanups.push(() => stopAll(dora));
    await goOnline(dora);
    const hello = `hello Converse over BOSH ${randomUUID()}`;
    await dora.send(xml('message', { to: jidOf('bosh-cleo'), type: 'chat' }, xml('body', {}, hello)));
    await page.waitForFunction((body) => window.weftProbe.messages.some((m) => m.body === body), hello,
      { timeout: 10000 });
    await page.locator('a.open-chat', { hasText: 'bosh-dora' }).first().click();
    await page.locator('.chat-msg__text', { hasText: hello }).waitFor({ timeout: 10000 });

    const reply = `hello from BOSH ${randomUUID()}`;
    const received = nextStanza(dora, (el) => el.is('message') && el.getChildText('body') === reply,
      10000, `Converse's reply "${reply}"`);
    const box = page.locator('textarea.chat-textarea');
    await box.fill(reply);
    await box.press('Enter');
    const msg = await received;
    assert.match(msg.attrs.from, new RegExp(`^${jidOf('bosh-cleo')}/.+`));
    assert.equal(msg.attrs.type, 'chat');
     t.diagnostic(`${posts.length} BOSH requests, the largest ${Math.max(...posts.map((p) => p.length))} bytes`);
  });
});
