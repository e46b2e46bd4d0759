// End-to-end: Chromium loads pages that use herd's snippet, against a real
// `herd up` writing to a real Postgres; each test checks the rows that land.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { appPage, createDatabase, launchBrowser, root, sleep, snippet, startHerd, startSite, until, VERSION, watch } from './harness.js';

const KEY = 'e2e_write_key';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
let db, herd, site, browser;

before(async () => {
  db = createDatabase();
  herd = await startHerd({ databaseUrl: db.url, writeKey: KEY });
  site = await startSite(herd.url);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await site?.stop();
  await herd?.stop();
  db?.drop();
});

function rowsOf(anon) {
  assert.match(anon, UUID);
  return db.query(`select message_id, type, event, anonymous_id, user_id, url, path, referrer, title, search,
    utm_source, utm_medium, utm_campaign, session_id, library_name, library_version, properties, context,
    "timestamp", sent_at from herd.events where anonymous_id = '${anon}' order by "timestamp", received_at`);
}

// rowsArrive waits for n rows of anon, then a little longer so that an
// extra (duplicate) row would be seen too.
async function rowsArrive(anon, n) {
  await until(`${n} rows for ${anon}`, () => rowsOf(anon).length >= n).catch((e) => {
    throw new Error(`${e.message}; got ${JSON.stringify(rowsOf(anon).map((r) => [r.type, r.event, r.url]))}`);
  });
  await sleep(1000);
  return rowsOf(anon);
}

async function open(path) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const w = watch(page, herd.url, site);
  await page.goto(site.url + path);
  return { context, page, w };
}

const loaded = (page) => page.waitForFunction(() => window.herd && window.herd.loaded, null, { timeout: 10000 });
const anonymousId = (page) => page.evaluate(() => herd.user().anonymousId());
// SPA page views are read a moment after the route changes (titles change late)
const settle = () => sleep(300);

test('herd serves the built sdk.js', async () => {
  const r = await fetch(herd.url + '/sdk.js');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /javascript/);
  assert.ok(r.headers.get('cache-control'), 'cache headers');
  assert.equal(await r.text(), readFileSync(join(root, 'dist/sdk.js'), 'utf8'));
  for (const enc of ['gzip', 'br']) {
    const res = await new Promise((resolve, reject) => get(herd.url + '/sdk.js', { headers: { 'Accept-Encoding': enc } }, resolve).on('error', reject));
    res.resume();
    assert.equal(res.headers['content-encoding'], enc, `compressed with ${enc} when asked`);
  }
});

test('snippet from another origin: track before load, three SPA routes, a tagged click, tab closed: one row per event', async () => {
  site.pages['/shop/'] = () => appPage({ base: '/shop/', head: snippet(KEY, herd.url), script: "herd.track('Before Load', { step: 1 })" });
  const { context, page, w } = await open('/shop/');
  await loaded(page);
  const anon = await anonymousId(page);

  await page.click('#pricing'); // pushState
  await settle();
  await page.evaluate(() => history.replaceState(history.state, '', location.href)); // same URL: no page view
  await page.click('#docs'); // pushState
  await settle();
  await page.click('#faq'); // hashchange
  await settle();
  await page.click('#plain'); // untagged, autocapture off: nothing
  // The SDK removes events from its stored queue only when it could read
  // the collector's reply. Across origins that takes CORS headers on the
  // reply: without them the browser hides it, the SDK counts the batch as
  // undelivered and resends it, and the queue never empties (even though
  // the collector stored the text/plain POST).
  await until('the queue to empty: replies read across origins', async () => (await page.evaluate(() => localStorage.getItem('herd_queue'))) === null);
  assert.ok(w.requests.length > 0);
  assert.deepEqual(w.resent(), [], 'no batch sent twice');
  await page.click('#choose');
  await page.close({ runBeforeUnload: true }); // the click can only leave by the unload path

  const rows = await rowsArrive(anon, 6);
  await context.close(); // not before: closing the profile would cancel beacons in flight
  assert.deepEqual(w.errors, []);
  assert.equal(rows.length, 6, JSON.stringify(rows.map((r) => [r.type, r.event, r.url])));
  const ids = new Set(rows.map((r) => r.message_id));
  assert.equal(ids.size, rows.length, 'one row per messageId');
  for (const id of w.messageIds()) assert.ok(ids.has(id), `sent event ${id} is stored`);
  assert.deepEqual(w.resent(), [], 'no event sent twice');

  const origin = site.url;
  const pages = rows.filter((r) => r.type == 'page');
  const pricing = `${origin}/shop/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring`;
  assert.deepEqual(pages.map((p) => ({ url: p.url, path: p.path, referrer: p.referrer, title: p.title, search: p.search })), [
    { url: `${origin}/shop/`, path: '/shop/', referrer: null, title: 'Shop', search: null },
    { url: pricing, path: '/shop/pricing', referrer: `${origin}/shop/`, title: 'Pricing', search: '?utm_source=newsletter&utm_medium=email&utm_campaign=spring' },
    { url: `${origin}/shop/docs`, path: '/shop/docs', referrer: pricing, title: 'Docs', search: null },
    { url: `${origin}/shop/docs#faq`, path: '/shop/docs', referrer: `${origin}/shop/docs`, title: 'Docs', search: null },
  ]);
  assert.deepEqual([pages[1].utm_source, pages[1].utm_medium, pages[1].utm_campaign], ['newsletter', 'email', 'spring']);
  assert.deepEqual(pages[1].context.campaign, { source: 'newsletter', medium: 'email', name: 'spring' });
  assert.equal(pages[0].utm_source, null);

  const tracks = rows.filter((r) => r.type == 'track');
  assert.deepEqual(tracks.map((t) => [t.event, t.properties]).sort(), [
    ['Before Load', { step: 1 }],
    ['Plan Chosen', { plan: 'pro', billing_cycle: 'yearly' }],
  ]);
  const click = tracks.find((t) => t.event == 'Plan Chosen');
  assert.equal(click.context.page.url, `${origin}/shop/docs#faq`);

  const sessions = new Set(rows.map((r) => r.session_id));
  assert.equal(sessions.size, 1);
  for (const r of rows) {
    assert.match(r.message_id, UUID);
    assert.equal(r.anonymous_id, anon);
    assert.equal(r.user_id, null);
    assert.match(r.session_id, UUID);
    assert.equal(r.context.sessionId, r.session_id);
    assert.equal(r.library_name, 'herd-js');
    assert.equal(r.library_version, VERSION);
    assert.ok(r.context.locale && r.context.timezone && r.context.userAgent, 'locale, timezone, user agent');
    assert.ok(r.context.screen.width > 0 && r.context.screen.height > 0, 'screen');
    assert.ok(r.sent_at, 'sent_at');
  }
});

test('from another origin, a JSON POST with credentials (as analytics.js sends, preflighted) is accepted and its reply readable', async () => {
  site.pages['/json/'] = () => '<!doctype html><html><head><meta charset="utf-8"><title>JSON</title></head><body></body></html>';
  const { context, page, w } = await open('/json/');
  const messageId = crypto.randomUUID();
  const reply = await page.evaluate(async ({ url, key, messageId }) => {
    try {
      const r = await fetch(url + '/v1/track', {
        method: 'POST',
        mode: 'cors',
        credentials: 'include',
        headers: { 'Content-Type': 'application/json', Authorization: 'Basic ' + btoa(key + ':') },
        body: JSON.stringify({ event: 'JSON Cross Origin', anonymousId: 'json-cors', messageId, properties: { n: 1 } }),
      });
      return { status: r.status, body: await r.json() };
    } catch (e) {
      return { error: String(e) };
    }
  }, { url: herd.url, key: KEY, messageId });
  assert.deepEqual(reply, { status: 200, body: { success: true } });
  await until('the row', () => db.query(`select message_id from herd.events where message_id = '${messageId}'`).length == 1);
  assert.ok(w.all.some((r) => r.url == herd.url + '/v1/track' && r.method == 'POST'));
  assert.deepEqual(w.errors, []);
  await context.close();

  // The preflight the browser made, asked directly: the origin reflected
  // (credentials rule out "*"), credentials allowed, the headers granted.
  const pre = await fetch(herd.url + '/v1/track', {
    method: 'OPTIONS',
    headers: { Origin: site.url, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type' },
  });
  assert.ok(pre.status < 300, `preflight answered ${pre.status}`);
  assert.equal(pre.headers.get('access-control-allow-origin'), site.url);
  assert.equal(pre.headers.get('access-control-allow-credentials'), 'true');
  assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
  assert.match(pre.headers.get('access-control-allow-headers'), /authorization/i);
  assert.match(pre.headers.get('access-control-allow-headers'), /content-type/i);
});

test('with the collector unreachable events are kept, and after a reload they arrive once each', async () => {
  // served from the site's own /herd/ path, as behind a first-party proxy
  site.pages['/offline/'] = () => appPage({ base: '/offline/', head: snippet(KEY, site.url + '/herd'), script: "if (!sessionStorage.seen) herd.track('Queued Offline', { n: 1 }); sessionStorage.seen = 1" });
  site.offline = true;
  const { context, page, w } = await open('/offline/');
  await loaded(page);
  const anon = await anonymousId(page);
  await page.evaluate(() => herd.track('Queued Offline', { n: 2 }));
  await page.click('#choose');
  const queued = () => page.evaluate(() => JSON.parse(localStorage.getItem('herd_queue') || '[]').map((e) => e.messageId));
  await until('a failed attempt', () => site.proxied.some((r) => r.offline && r.path.startsWith('/v1/')));
  const kept = await until('4 queued events', async () => ((await queued()).length == 4 ? queued() : null));
  assert.equal(rowsOf(anon).length, 0);

  site.offline = false;
  await page.reload();
  await loaded(page);
  const rows = await rowsArrive(anon, kept.length + 1);
  const ids = rows.map((r) => r.message_id);
  assert.equal(rows.length, kept.length + 1, 'the kept events and the new page view');
  assert.equal(new Set(ids).size, ids.length, 'no duplicates');
  for (const id of kept) assert.ok(ids.includes(id), `kept event ${id} arrived`);
  assert.deepEqual(rows.filter((r) => r.type == 'track').map((r) => r.event + (r.properties.n || '')).sort(), ['Plan Chosen', 'Queued Offline1', 'Queued Offline2']);
  await until('an empty queue', async () => (await queued()).length == 0);
  assert.ok(w.requests.length > 0);
  assert.deepEqual(w.errors, []);
  await context.close();
});

test('with consent required nothing leaves the page until consent; then the queued events arrive once', async () => {
  site.pages['/consent/'] = () => appPage({ base: '/consent/', head: snippet(KEY, herd.url, { requireConsent: true }), script: "herd.track('Before Consent')" });
  const { context, page, w } = await open('/consent/');
  await loaded(page);
  const anon = await anonymousId(page);
  await page.click('#pricing');
  await settle();
  await page.click('#choose');
  await page.evaluate(() => { // the tab goes to the background: the unload path must hold back too
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    document.dispatchEvent(new Event('visibilitychange'));
    delete document.visibilityState;
  });
  await page.evaluate(() => herd.flush()); // asked to send: still nothing may go
  await sleep(2000); // well past the flush interval

  // Every request made so far: the test page itself, and sdk.js from the
  // collector. Loading the library is the site's choice, like any script it
  // embeds, and carries nothing about the visitor; anything else (an event,
  // a beacon, a settings call, a pixel) would be tracking before consent.
  const allowed = (r) => (r.url.startsWith(site.url + '/') && r.type == 'document') || (r.url == herd.url + '/sdk.js' && r.method == 'GET');
  assert.deepEqual(w.all.filter((r) => !allowed(r)), [], 'no request but the page and sdk.js before consent');
  assert.equal(w.all.filter((r) => r.url == herd.url + '/sdk.js').length, 1, 'sdk.js loaded once');
  assert.deepEqual(w.requests, []);
  assert.deepEqual((await context.cookies()).map((c) => c.name), []);
  assert.deepEqual(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('herd_'))), []);
  assert.equal(rowsOf(anon).length, 0);
  const before = w.all.length;

  await page.evaluate(() => herd.consent(true));
  const rows = await rowsArrive(anon, 4);
  assert.equal(rows.length, 4, 'each queued event stored once');
  assert.deepEqual(rows.map((r) => r.type + ':' + (r.event || r.path)).sort(), ['page:/consent/', 'page:/consent/pricing', 'track:Before Consent', 'track:Plan Chosen']);
  const ids = rows.map((r) => r.message_id);
  assert.equal(new Set(ids).size, 4, 'one row per messageId');
  assert.deepEqual([...w.messageIds()].sort(), [...ids].sort(), 'exactly the queued events were sent');
  assert.deepEqual(w.resent(), [], 'each sent in one request');
  assert.deepEqual(w.all.slice(before).filter((r) => !r.url.startsWith(herd.url + '/v1/')), [], 'after consent, requests go to the collector only');
  await until('an empty queue', async () => (await page.evaluate(() => localStorage.getItem('herd_queue'))) === null);
  assert.ok((await context.cookies()).some((c) => c.name == 'herd_aid' && c.value == anon), 'ids are stored after consent');
  assert.deepEqual(w.errors, []);
  await context.close();
});

test('a page whose sdk.js is blocked keeps working and nothing reaches it', async () => {
  site.pages['/blocked/'] = () => appPage({
    base: '/blocked/', head: snippet(KEY, herd.url),
    script: "herd.track('x'); herd.identify('u', {a: 1}); herd.page(); herd.group('g'); herd.alias('b'); herd.consent(true); herd.ready(function () {}); herd.flush(); herd.reset();",
  });
  const context = await browser.newContext();
  await context.route('**/sdk.js', (r) => r.abort('blockedbyclient'));
  const page = await context.newPage();
  const w = watch(page, herd.url, site);
  await page.goto(site.url + '/blocked/');
  await page.waitForSelector('body[data-ready="1"]');
  await page.click('#pricing');
  await page.click('#choose');
  await page.evaluate(() => herd.track('Later'));
  await sleep(500);
  assert.deepEqual(w.errors, []);
  assert.deepEqual(w.requests, []);
  assert.equal(await page.evaluate(() => location.pathname), '/blocked/pricing', "the page's own code ran");
  assert.equal(await page.evaluate(() => Array.isArray(herd) && herd.length), 10);
  await context.close();
});

test("herd's demo page sends a page view and the tagged button's click", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(herd.url + '/demo');
  await loaded(page);
  const anon = await anonymousId(page);
  await page.click('[data-herd-event]');
  await page.close({ runBeforeUnload: true });
  const rows = await rowsArrive(anon, 2);
  await context.close();
  assert.deepEqual(rows.map((r) => r.type + ':' + (r.event || '')).sort(), ['page:', 'track:Demo Button Clicked']);
  assert.deepEqual(errors, []);
});
