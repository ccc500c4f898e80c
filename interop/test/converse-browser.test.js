// Converse.js (its prebuilt dist, as sites embed it) in a real browser, Debian's Chromium under
// playwright-core: logs in to weft, receives a chat message from an xmpp.js client and shows
// it, answers through its own UI. A second test lets Converse find weft by itself (XEP-0156
// host-meta, fetched cross-origin, so weft's CORS header is exercised) and connect over wss://.
// A third reloads Converse on a fresh origin (no local storage) and gets the conversation back
// from weft's archive (XEP-0313). Then bookmarks, avatars, upload (issue 19), and a room of
// weft's MUC service entered, autojoined from its bookmark and read back from its archive.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { wsUrl, httpsPort, jidOf, password, ca, domain } from './lib/env.js';
import { startClient, nextStanza, stopAll, xml } from './lib/xmppjs.js';
import { goOnline } from './lib/exchange.js';
import { serveConverse } from './lib/converse-page.js';
import { launchChromium, spkiHash, watchPage, withArtifacts, until, keepScreenshot } from './lib/browser.js';

// Every test has a timeout of its own: run.sh gives this file as a whole 5 minutes (Node 20
// applies --test-timeout to a test file, not only to each of its tests).
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
// Each call serves the page on a new port, so a new origin: Converse starts with empty storage.
async function openConverse(t, settings, context = browser.context) {
  const site = await serveConverse(settings);
  cleanups.push(site.close);
  const page = await context.newPage();
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

test('Converse.js in Chromium logs in over ws://, shows a message and answers it', { timeout: 60000 }, async (t) => {
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

test('Converse.js discovers weft through host-meta (XEP-0156, CORS) and logs in over wss://', { timeout: 60000 }, async (t) => {
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

test('Converse.js on a fresh page gets the conversation back from the archive (XEP-0313)', { timeout: 60000 }, async (t) => {
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

// --- issue 19: bookmarks, avatars and file upload through Converse's UI ----------------------

const NS_BOOKMARKS2 = 'urn:xmpp:bookmarks:1';
const wsSettings = (user) => ({ ...base(user), websocket_url: wsUrl, discover_connection_methods: false });
const initialPresenceSent = (rec) => rec.sent.some((f) => /^<presence(?![^>]*type=)/.test(f));

// Waits in the page for `fn(arg)` to be truthy; on timeout fails naming `what`.
async function waitInPage(page, fn, arg, what, ms = 10000) {
  try {
    return await page.waitForFunction(fn, arg, { timeout: ms });
  } catch (err) {
    throw new Error(`timed out after ${ms} ms waiting for ${what}`, { cause: err });
  }
}

// The IQ request a page sent (the first get/set `sentMatch` accepts) and the answer it got: waits for
// both on the page's record, resolves with { sent, answer } (the frames' text).
async function iqExchange(rec, sentMatch, what, ms = 10000) {
  const sent = await until(() => rec.sent.find((f) => /^<iq\s[^>]*type=["'](get|set)["']/.test(f) && sentMatch(f)),
    `${what} (sent)`, ms);
  const id = sent.match(/\sid=["']([^"']+)["']/)?.[1];
  assert.ok(id, `the IQ has an id: ${sent}`);
  const idAttr = new RegExp(`^<iq\\s[^>]*id=["']${id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}["']`);
  const answer = await until(() => rec.received.find((f) => idAttr.test(f)), `${what} (answer to id ${id})`, ms);
  return { sent, answer };
}
const iqType = (frame) => frame.match(/^<iq\s[^>]*type=["']([^"']+)["']/)?.[1];

// Makes two accounts mutual contacts (subscription 'both' on both sides) with xmpp.js clients,
// before the browsers log in: the tests are about avatars and files, not the subscription UI
// (covered for weft by the xmpp.js and slixmpp IM tests).
async function makeContacts(userA, userB) {
  const [a, b] = await Promise.all([userA, userB].map((username) =>
    startClient({ service: wsUrl, username, resource: 'setup' })));
  try {
    await Promise.all([goOnline(a), goOnline(b)]);
    const isSubscribe = (el) => el.is('presence') && el.attrs.type === 'subscribe';
    for (const [from, to, toUser, fromUser] of [[a, b, userB, userA], [b, a, userA, userB]]) {
      const asked = nextStanza(to, isSubscribe, 5000, `subscribe from ${fromUser}`);
      await from.send(xml('presence', { to: jidOf(toUser), type: 'subscribe' }));
      await asked;
      await to.send(xml('presence', { to: jidOf(fromUser), type: 'subscribed' }));
    }
    const rosterItem = async (c, jid) => {
      const res = await c.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })), 5000);
      return res.getChild('query')?.getChildren('item').find((i) => i.attrs.jid === jid);
    };
    for (const [c, jid] of [[a, jidOf(userB)], [b, jidOf(userA)]]) {
      const deadline = Date.now() + 5000;
      while ((await rosterItem(c, jid))?.attrs.subscription !== 'both') {
        if (Date.now() > deadline) throw new Error(`${jid} not a contact with subscription 'both'`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    await stopAll(a, b);
  }
}

// A small PNG, different every run (a colour from `seed`), built here: 16×16, RGB.
function makePng(seed) {
  const [r, g, b] = createHash('sha256').update(seed).digest();
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf) => {
    let c = 0xffffffff;
    for (const byte of buf) c = crcTable[(c ^ byte) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const size = 16;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0); ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; ihdr[9] = 2; // 8 bits per channel, RGB
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array(size).fill([r, g, b]).flat())]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(Buffer.concat(Array(size).fill(row)))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
const sha1Hex = (buf) => createHash('sha1').update(buf).digest('hex');

// Opens the bookmarks list the way a user does: the menu next to "Groupchats" in the control
// box, then "Bookmarks".
async function openBookmarksList(page) {
  await page.locator('converse-rooms-list converse-dropdown button.dropdown-toggle').click();
  await page.locator('converse-rooms-list a.show-bookmark-list-modal').click();
  await page.locator('converse-bookmark-list-modal converse-bookmarks .list-container--bookmarks').waitFor({ timeout: 10000 });
}

// A stand-in for a groupchat (the bookmark test is about PEP, and was written before weft had
// rooms; weft's own MUC service is tested at the end of this file): an xmpp.js client logged in
// as `user` with the resource `nick`, so that the room JID is user@domain and Converse's
// occupant JID user@domain/nick is this client's full JID. It answers a MUC join presence
// with the self-presence of XEP-0045 §7.2.3 (status 110, owner/moderator): enough for Converse
// to enter the room. disco#info of the room JID is answered by weft for the account.
async function standInRoom(user, nick) {
  const room = await startClient({ service: wsUrl, username: user, resource: nick });
  room.joins = [];
  room.on('stanza', (el) => {
    if (!el.is('presence') || el.attrs.type || !el.getChild('x', 'http://jabber.org/protocol/muc')) return;
    room.joins.push(el.attrs.from);
    room.send(xml('presence', { to: el.attrs.from },
      xml('x', { xmlns: 'http://jabber.org/protocol/muc#user' },
        xml('item', { affiliation: 'owner', role: 'moderator', jid: el.attrs.from }),
        xml('status', { code: '110' })))).catch(() => {});
  });
  await goOnline(room); // directed presence reaches only an available resource
  return room;
}

test('Converse.js: a groupchat joined in one browser is in the bookmarks list of another (XEP-0402 in PEP)', { timeout: 90000 }, async (t) => {
  const settings = wsSettings('converse-xena');
  const roomJid = jidOf('converse-hall');
  const nick = `xena-${randomUUID().slice(0, 8)}`;
  const room = await standInRoom('converse-hall', nick);
  cleanups.push(() => stopAll(room));

  const first = await openConverse(t, settings);
  await withArtifacts(t.name, first.page, first.rec, async () => {
    // Converse keeps bookmarks only when the account has PEP with publish-options (it asks
    // disco#info of the bare JID) and reads them then: its "bookmarksInitialized".
    await waitInPage(first.page, () => window.weftProbe.bookmarksInitialized, null,
      'Converse\'s bookmarks (it keeps none without PEP and pubsub#publish-options on the account)');
    // Converse 14 bookmarks a groupchat when it enters it (autojoin on): "Add groupchat" in the
    // menu next to "Groupchats", the room's address and a nickname, "Join".
    await first.page.locator('converse-rooms-list converse-dropdown button.dropdown-toggle').click();
    await first.page.locator('converse-rooms-list a.show-add-muc-modal').click();
    const form = first.page.locator('converse-add-muc-modal form');
    await form.locator('input[name="chatroom"]').fill(roomJid);
    await form.locator('input[name="nickname"]').fill(nick);
    await form.locator('input[type="submit"][name="join"]').click();
    await until(() => room.joins.length, 'the join presence at the stand-in room');
    const publish = await iqExchange(first.rec,
      (f) => f.includes(`<publish node="${NS_BOOKMARKS2}"`) && f.includes(roomJid), 'the bookmark\'s PEP publish');
    assert.equal(iqType(publish.answer), 'result', `weft stored the bookmark: ${publish.answer}`);
    assert.match(publish.sent, new RegExp(`<item id="${roomJid}"`), 'one item per room (XEP-0402)');
    assert.match(publish.sent, new RegExp(`<nick>${nick}</nick>`));
    await openBookmarksList(first.page);
    await first.page.locator(`converse-bookmarks .list-item[data-room-jid="${roomJid}"]`).waitFor({ timeout: 10000 });
    t.diagnostic(`screenshot: ${await keepScreenshot('bookmark - first browser', first.page)}`);
  });
  await first.page.close();

  // A second browser: another Chromium with a profile of its own (nothing shared with the first
  // but the account), logging in as the same user.
  const other = await launchChromium({ trustSpki: spkiHash(ca) });
  cleanups.push(() => other.close());
  const second = await openConverse(t, settings, other.context);
  await withArtifacts(t.name, second.page, second.rec, async () => {
    await openBookmarksList(second.page);
    const item = second.page.locator(`converse-bookmarks .list-item[data-room-jid="${roomJid}"]`);
    await item.waitFor({ timeout: 10000 });
    // On the wire: the list came from weft's PEP node urn:xmpp:bookmarks:1.
    const fetched = await iqExchange(second.rec,
      (f) => f.includes(`<items node="${NS_BOOKMARKS2}"`), 'the bookmarks fetch');
    assert.equal(iqType(fetched.answer), 'result', fetched.answer);
    assert.match(fetched.answer, new RegExp(`<item id=["']${roomJid}["']`));
    assert.match(fetched.answer, new RegExp(`<conference\\s[^>]*xmlns=["']${NS_BOOKMARKS2}["']`));
    assert.match(fetched.answer, new RegExp(`<nick>${nick}</nick>`), 'the bookmark\'s nick came from weft');
    // The bookmark has autojoin on (Converse sets it when it enters a room): the second browser
    // joins the room by itself, as the nick stored in the bookmark.
    await until(() => new Set(room.joins).size >= 2, 'the second browser joining the bookmarked room (autojoin)');
    t.diagnostic(`screenshot: ${await keepScreenshot('bookmark - second browser', second.page)}`);
  });

  // weft keeps XEP-0048 bookmarks in private XML storage in step (XEP-0402 §3.2 compat): a
  // client that only knows those sees the groupchat Converse bookmarked.
  const legacy = await startClient({ service: wsUrl, username: 'converse-xena', resource: 'legacy-probe' });
  cleanups.push(() => stopAll(legacy));
  const res = await legacy.iqCaller.request(xml('iq', { type: 'get' },
    xml('query', { xmlns: 'jabber:iq:private' }, xml('storage', { xmlns: 'storage:bookmarks' }))), 5000);
  const conference = res.getChild('query')?.getChild('storage', 'storage:bookmarks')?.getChildren('conference')
    .find((c) => c.attrs.jid === roomJid);
  assert.ok(conference, `private storage lists the groupchat: ${res}`);
  assert.equal(conference.getChildText('nick'), nick);
  assert.ok(['true', '1'].includes(conference.attrs.autojoin), `autojoin: ${conference.attrs.autojoin}`);
});

test('Converse.js: an avatar set in the profile modal shows in the contact\'s roster (XEP-0153, XEP-0398)', { timeout: 90000 }, async (t) => {
  await makeContacts('converse-yara', 'converse-zeno');
  const png = makePng(randomUUID());
  const hash = sha1Hex(png);
  // zeno first, so that yara's presence with the new photo hash reaches a running Converse.
  const zeno = await openConverse(t, wsSettings('converse-zeno'));
  const yara = await openConverse(t, wsSettings('converse-yara'));
  await withArtifacts(t.name, yara.page, yara.rec, async () => {
    await until(() => initialPresenceSent(yara.rec) && initialPresenceSent(zeno.rec), 'both initial presences');
    // The profile modal: the user's own avatar/name at the top of the control box, the picture
    // (a file chooser), "Save and close".
    await yara.page.locator('converse-user-profile a.show-profile').click();
    const chooser = yara.page.waitForEvent('filechooser', { timeout: 10000 });
    await yara.page.locator('converse-profile-modal a.change-avatar').click();
    await (await chooser).setFiles({ name: 'avatar.png', mimeType: 'image/png', buffer: png });
    await yara.page.locator('converse-profile-modal button.save-form').click();
    // Converse sends the vCard (XEP-0054) with the picture inline; a small PNG goes unchanged.
    const set = await iqExchange(yara.rec, (f) => /type=["']set["']/.test(f) && f.includes('vcard-temp'), 'the vCard set');
    assert.equal(iqType(set.answer), 'result', `weft stored the vCard: ${set.answer}`);
    const binval = set.sent.match(/<BINVAL>([^<]*)<\/BINVAL>/)?.[1];
    assert.equal(binval && sha1Hex(Buffer.from(binval, 'base64')), hash, 'the picture sent is the PNG chosen');
  });
  await withArtifacts(t.name, zeno.page, zeno.rec, async () => {
    // zeno's Converse got yara's presence with the photo's hash (XEP-0153)…
    const photoPresence = await until(() => zeno.rec.received.find((f) => /^<presence[\s>]/.test(f) &&
      f.includes(jidOf('converse-yara')) && f.includes(`<photo>${hash}</photo>`)), 'yara\'s presence with the photo hash');
    assert.ok(photoPresence);
    // …fetched her vCard and shows the picture on her roster entry.
    const img = zeno.page.locator(`converse-roster a.open-chat[data-jid="${jidOf('converse-yara')}"] converse-avatar svg image`).first();
    await img.waitFor({ timeout: 10000 });
    const href = await img.getAttribute('href');
    assert.equal(href, `data:image/png;base64,${png.toString('base64')}`);
    assert.equal(await zeno.page.evaluate((jid) => window.weftProbe.vcardHash(jid), jidOf('converse-yara')), hash);
    t.diagnostic(`screenshot: ${await keepScreenshot('avatar - contact', zeno.page)}`);
  });
  t.diagnostic(`screenshot: ${await keepScreenshot('avatar - owner', yara.page)}`);

  // weft keeps the vCard photo and the PEP avatar in step (XEP-0398): the picture Converse set
  // as a vCard is yara's XEP-0084 avatar too, readable by her contact.
  const probe = await startClient({ service: wsUrl, username: 'converse-zeno', resource: 'pep-probe' });
  cleanups.push(() => stopAll(probe));
  const items = async (node) => {
    const res = await probe.iqCaller.request(xml('iq', { type: 'get', to: jidOf('converse-yara') },
      xml('pubsub', { xmlns: 'http://jabber.org/protocol/pubsub' }, xml('items', { node }))), 5000);
    return res.getChild('pubsub').getChild('items').getChildren('item');
  };
  const [meta] = await items('urn:xmpp:avatar:metadata');
  assert.equal(meta?.attrs.id, hash, 'PEP avatar metadata names the vCard photo\'s hash');
  const info = meta.getChild('metadata', 'urn:xmpp:avatar:metadata').getChild('info');
  assert.equal(info.attrs.id, hash);
  assert.equal(info.attrs.type, 'image/png');
  assert.equal(Number(info.attrs.bytes), png.length);
  const [data] = await items('urn:xmpp:avatar:data');
  assert.equal(data?.attrs.id, hash);
  assert.ok(Buffer.from(data.getChildText('data', 'urn:xmpp:avatar:data'), 'base64').equals(png));
});

test('Converse.js: a file sent with the chat\'s upload button is shown to the contact and fetched (XEP-0363)', { timeout: 90000 }, async (t) => {
  await makeContacts('converse-abel', 'converse-bria');
  const file = makePng(randomUUID());
  const fileName = `weft-${randomUUID().slice(0, 8)}.png`;
  const bria = await openConverse(t, wsSettings('converse-bria'));
  const abel = await openConverse(t, wsSettings('converse-abel'));
  await withArtifacts(t.name, abel.page, abel.rec, async () => {
    await until(() => initialPresenceSent(abel.rec) && initialPresenceSent(bria.rec), 'both initial presences');
    // abel opens the chat from his roster and picks the file with the paperclip (shown only
    // when Converse found an upload service in weft's disco#items).
    await abel.page.locator(`converse-roster a.open-chat[data-jid="${jidOf('converse-bria')}"]`).first().click();
    const paperclip = abel.page.locator('converse-chat-toolbar button[title="Choose a file to send"]');
    try {
      await paperclip.waitFor({ timeout: 10000 });
    } catch (err) {
      throw new Error('no upload button in the chat toolbar: Converse found no XEP-0363 service', { cause: err });
    }
    const chooser = abel.page.waitForEvent('filechooser', { timeout: 10000 });
    await paperclip.click();
    await (await chooser).setFiles({ name: fileName, mimeType: 'image/png', buffer: file });
    const slot = await iqExchange(abel.rec, (f) => f.includes('urn:xmpp:http:upload:0'), 'the upload slot request');
    assert.equal(iqType(slot.answer), 'result', slot.answer);
    assert.match(slot.sent, new RegExp(`to=["']upload\\.${domain}["']`));
    assert.match(slot.sent, new RegExp(`size=["']${file.length}["']`));
  });
  await withArtifacts(t.name, bria.page, bria.rec, async () => {
    // bria gets a message whose body and XEP-0066 <url/> are the file's GET URL on weft's HTTPS.
    const msg = await until(() => bria.rec.received.find((f) => /^<message[\s>]/.test(f) && f.includes('jabber:x:oob')),
      'the message with the file', 20000);
    const url = msg.match(/<url>([^<]+)<\/url>/)?.[1]?.replaceAll('&amp;', '&');
    assert.ok(url?.startsWith(`https://${domain}:${httpsPort}/upload/`), `GET URL on weft: ${url}`);
    assert.ok(url.endsWith(`/${fileName}`), url);
    // Her Converse shows it: the image, inline in the chat. (abel is in her roster twice now:
    // under his group and under unread messages.)
    await bria.page.locator(`converse-roster a.open-chat[data-jid="${jidOf('converse-abel')}"]`).first().click();
    const img = bria.page.locator(`.chat-msg img[src="${url}"]`);
    await img.waitFor({ timeout: 15000 });
    await waitInPage(bria.page, (el) => el.complete && el.naturalWidth === 16, await img.elementHandle(),
      'the image loaded in bria\'s browser');
    // And her browser fetches the same bytes abel chose (cross-origin: weft's CORS header).
    const fetched = await bria.page.evaluate(async (u) => {
      const res = await fetch(u);
      const bytes = new Uint8Array(await res.arrayBuffer());
      return { status: res.status, type: res.headers.get('content-type'), b64: btoa(String.fromCharCode(...bytes)) };
    }, url);
    assert.equal(fetched.status, 200);
    assert.equal(fetched.type, 'image/png');
    assert.ok(Buffer.from(fetched.b64, 'base64').equals(file), 'bria fetched the bytes abel sent');
    t.diagnostic(`screenshot: ${await keepScreenshot('upload - recipient', bria.page)}`);
  });
  t.diagnostic(`screenshot: ${await keepScreenshot('upload - sender', abel.page)}`);
});

// --- issue 20: a room of weft's own MUC service (XEP-0045) -----------------------------------

test('Converse.js enters a weft room and talks in it; another browser autojoins it from the bookmark and shows the history from the room archive (XEP-0045, XEP-0313, XEP-0402)', { timeout: 120000 }, async (t) => {
  const roomJid = `weft-${randomUUID().slice(0, 8)}@conference.${domain}`;
  // The room's owner, an xmpp.js client: it creates the room, accepts it as an instant room
  // (XEP-0045 §10.1.2: a new room stays locked until then) and greets.
  const cato = await startClient({ service: wsUrl, username: 'converse-cato', resource: 'owner' });
  cleanups.push(() => stopAll(cato));
  await goOnline(cato);
  const entered = nextStanza(cato, (el) => el.is('message') && el.getChild('subject'), 5000,
    'the subject that ends entering the new room');
  await cato.send(xml('presence', { to: `${roomJid}/Cato` }, xml('x', { xmlns: 'http://jabber.org/protocol/muc' })));
  await entered;
  await cato.iqCaller.request(xml('iq', { type: 'set', to: roomJid },
    xml('query', { xmlns: 'http://jabber.org/protocol/muc#owner' }, xml('x', { xmlns: 'jabber:x:data', type: 'submit' }))), 5000);
  const hello = `hello room ${randomUUID()}`;
  await cato.send(xml('message', { to: roomJid, type: 'groupchat' }, xml('body', {}, hello)));

  const settings = wsSettings('converse-dora');
  const first = await openConverse(t, settings);
  const reply = `hello Cato ${randomUUID()}`;
  await withArtifacts(t.name, first.page, first.rec, async () => {
    await waitInPage(first.page, () => window.weftProbe.bookmarksInitialized, null, 'Converse\'s bookmarks');
    await first.page.locator('converse-rooms-list converse-dropdown button.dropdown-toggle').click();
    await first.page.locator('converse-rooms-list a.show-add-muc-modal').click();
    const form = first.page.locator('converse-add-muc-modal form');
    await form.locator('input[name="chatroom"]').fill(roomJid);
    await form.locator('input[name="nickname"]').fill('Dora');
    await form.locator('input[type="submit"][name="join"]').click();
    // The other occupant in the sidebar, and the greeting (from the room's archive: Converse
    // asks no join history of a room that has one).
    await first.page.locator('.occupant-list .occupant-nick', { hasText: 'Cato' }).first().waitFor({ timeout: 15000 });
    await first.page.locator('.chat-msg__text', { hasText: hello }).waitFor({ timeout: 15000 });
    // Converse → the room → xmpp.js, from Dora's occupant JID with the room's stanza-id.
    const got = nextStanza(cato, (el) => el.is('message') && el.getChildText('body') === reply, 10000, 'Dora\'s message');
    const box = first.page.locator('converse-muc textarea.chat-textarea');
    await box.fill(reply);
    await box.press('Enter');
    const msg = await got;
    assert.equal(msg.attrs.from, `${roomJid}/Dora`);
    assert.equal(msg.attrs.type, 'groupchat');
    assert.equal(msg.getChild('stanza-id', 'urn:xmpp:sid:0')?.attrs.by, roomJid, `${msg}`);
    t.diagnostic(`screenshot: ${await keepScreenshot('room - first browser', first.page)}`);
  });
  await first.page.close();

  // Another browser, nothing shared but the account: Converse finds the bookmark (autojoin),
  // enters the room by itself and shows both messages from the room's archive.
  const other = await launchChromium({ trustSpki: spkiHash(ca) });
  cleanups.push(() => other.close());
  const second = await openConverse(t, settings, other.context);
  await withArtifacts(t.name, second.page, second.rec, async () => {
    for (const body of [hello, reply]) {
      await second.page.locator('.chat-msg__text', { hasText: body }).waitFor({ timeout: 20000 });
    }
    assert.ok(second.rec.sent.some((f) => /^<presence[\s>]/.test(f) && f.includes(`${roomJid}/Dora`)),
      'Converse entered the room by itself (bookmark autojoin)');
    assert.ok(second.rec.sent.some((f) => /^<iq[\s>]/.test(f) && f.includes('urn:xmpp:mam:2') && f.includes(roomJid)),
      'Converse asked the room\'s archive');
    t.diagnostic(`screenshot: ${await keepScreenshot('room - second browser, autojoined', second.page)}`);
  });
});
