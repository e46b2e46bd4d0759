import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { install, sleep, until, element } from './fakebrowser.js';
import { createHerd, VERSION } from '../src/index.js';
import { parseArgs, campaign } from '../src/args.js';
import { selector, clickEvent } from '../src/clicks.js';
import { uuid } from '../src/uuid.js';

const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
let env;
const live = [];

function herd(opts = {}, calls) {
  const h = createHerd({ writeKey: 'wk', apiHost: 'https://c.example.com', flushInterval: 10, ...opts }, calls);
  live.push(h);
  return h;
}

// sent waits until n events have left the page and returns them.
async function sent(n) {
  await until(() => env.events().length >= n);
  return env.events();
}

beforeEach(() => {
  env = install();
});

// Leave nothing pending for the next test: let every instance deliver.
afterEach(async () => {
  env.respond = () => 200;
  for (let i = 0; i < 3; i++) {
    await sleep(15);
    for (const h of live) await h.flush();
  }
  live.length = 0;
});

test('uuid is a random version 4 UUID', () => {
  const seen = new Set();
  for (let i = 0; i < 1000; i++) {
    const u = uuid();
    assert.match(u, UUID4);
    seen.add(u);
  }
  assert.equal(seen.size, 1000);
});

test('arguments follow analytics.js shapes', () => {
  const cb = () => {};
  const cases = [
    [['Docs', 'Intro', { a: 1 }, { context: { x: 1 } }, cb], 2, { s: ['Docs', 'Intro'], p: { a: 1 }, o: { context: { x: 1 } }, f: cb }],
    [['Home'], 2, { s: ['Home'], p: {}, o: {}, f: undefined }],
    [[{ a: 1 }], 2, { s: [], p: { a: 1 }, o: {}, f: undefined }],
    [[null, 'Pricing'], 2, { s: [null, 'Pricing'], p: {}, o: {}, f: undefined }],
    [[42, { plan: 'pro' }], 1, { s: ['42'], p: { plan: 'pro' }, o: {}, f: undefined }],
    [['Clicked', cb], 1, { s: ['Clicked'], p: {}, o: {}, f: cb }],
    [['Clicked', undefined, { timestamp: 1 }], 1, { s: ['Clicked'], p: {}, o: { timestamp: 1 }, f: undefined }],
  ];
  for (const [args, n, want] of cases) assert.deepEqual(parseArgs(args, n), want, JSON.stringify(args));
});

test('UTM parameters become context.campaign', () => {
  assert.deepEqual(campaign('?utm_source=news&utm_medium=email&utm_campaign=spring&utm_term=shoes&utm_content=top&x=1'),
    { source: 'news', medium: 'email', name: 'spring', term: 'shoes', content: 'top' });
  assert.equal(campaign('?x=1'), undefined);
});

test('calls made before load replay in order, after the automatic page view, with their own times', async () => {
  const t0 = Date.now() - 5000;
  const h = herd({}, [
    ['track', ['Before Load', { a: 1 }], t0],
    ['identify', ['user-1', { email: 'a@example.com' }], t0 + 1],
    ['track', ['After Identify'], t0 + 2],
  ]);
  assert.equal(h.loaded, true);
  const evs = await sent(4);
  assert.deepEqual(evs.map((e) => e.type + ':' + (e.event || '')), ['page:', 'track:Before Load', 'identify:', 'track:After Identify']);
  assert.equal(evs[0].timestamp, new Date(t0).toISOString());
  assert.equal(evs[1].timestamp, new Date(t0).toISOString());
  assert.equal(evs[1].userId, undefined);
  assert.equal(evs[3].userId, 'user-1');
  assert.deepEqual(evs[2].traits, { email: 'a@example.com' });
  assert.equal(new Set(evs.map((e) => e.messageId)).size, 4);
  for (const e of evs) assert.match(e.messageId, UUID4);
});

test('a page call made before load replaces the automatic page view', async () => {
  herd({}, [['page', ['Landing'], Date.now()]]);
  await sleep(40);
  const pages = env.events().filter((e) => e.type == 'page');
  assert.equal(pages.length, 1);
  assert.equal(pages[0].name, 'Landing');
});

test('events carry the page, campaign, session and device context', async () => {
  env = install({ url: 'https://www.example.com/p/q?utm_source=ads&utm_campaign=launch', referrer: 'https://search.example/', title: 'Q page' });
  herd();
  const [e] = await sent(1);
  assert.equal(e.type, 'page');
  assert.deepEqual(e.properties, { path: '/p/q', referrer: 'https://search.example/', search: '?utm_source=ads&utm_campaign=launch', title: 'Q page', url: 'https://www.example.com/p/q?utm_source=ads&utm_campaign=launch' });
  assert.deepEqual(e.context.page, e.properties);
  assert.deepEqual(e.context.campaign, { source: 'ads', name: 'launch' });
  assert.deepEqual(e.context.library, { name: 'herd-js', version: VERSION });
  assert.equal(e.context.locale, 'en-GB');
  assert.equal(e.context.timezone, Intl.DateTimeFormat().resolvedOptions().timeZone);
  assert.deepEqual(e.context.screen, { width: 1280, height: 800, density: 2 });
  assert.equal(e.context.userAgent, 'FakeBrowser/1.0');
  assert.match(e.context.sessionId, UUID4);
  assert.match(e.anonymousId, UUID4);
});

test('page, track, group and alias build Segment events', async () => {
  const h = herd({ trackPages: false });
  let called = 0;
  h.page('Docs', 'Intro', { section: 2 });
  h.track('Signed Up', { plan: 'pro' }, { context: { app: 'web' }, timestamp: '2024-01-02T03:04:05.000Z' }, () => called++);
  h.group('acme', { size: 10 });
  h.identify('u9');
  h.alias('u10');
  const evs = await sent(5);
  const [page, track, group, , alias] = evs;
  assert.equal(page.name, 'Intro');
  assert.equal(page.category, 'Docs');
  assert.equal(page.properties.name, 'Intro');
  assert.equal(page.properties.section, 2);
  assert.equal(track.event, 'Signed Up');
  assert.deepEqual(track.properties, { plan: 'pro' });
  assert.equal(track.timestamp, '2024-01-02T03:04:05.000Z');
  assert.equal(track.context.app, 'web');
  assert.equal(track.context.library.name, 'herd-js');
  assert.equal(group.groupId, 'acme');
  assert.deepEqual(group.traits, { size: 10 });
  assert.equal(alias.userId, 'u10');
  assert.equal(alias.previousId, 'u9');
  await until(() => called == 1);
});

test('the anonymous id lives in a cookie on the widest domain and survives a reload', async () => {
  env = install({ url: 'https://app.shop.example.com/' });
  const a = herd().user().anonymousId();
  assert.match(env.jar.c.get('herd_aid').value, UUID4);
  assert.equal(env.jar.c.get('herd_aid').domain, 'example.com');
  assert.equal(env.localStorage.getItem('herd_aid'), a);
  // a new page on the same site
  assert.equal(herd().user().anonymousId(), a);
  // cookie jar cleared: localStorage still has it
  env.jar.c.clear();
  assert.equal(herd().user().anonymousId(), a);
});

test('cookieDomain can be set and public suffixes are never used', async () => {
  env = install({ url: 'https://shop.example.co.uk/' });
  herd().user().anonymousId();
  assert.equal(env.jar.c.get('herd_aid').domain, 'example.co.uk');
  env = install({ url: 'https://shop.example.com/' });
  herd({ cookieDomain: '' }).user().anonymousId();
  assert.equal(env.jar.c.get('herd_aid').domain, '');
});

test('without cookies the ids live in localStorage; memory mode stores nothing', async () => {
  env = install({ nav: { cookieEnabled: false } });
  const a = herd().user().anonymousId();
  assert.equal(env.jar.c.size, 0);
  assert.equal(env.localStorage.getItem('herd_aid'), a);

  env = install();
  const b = herd({ persistence: 'localStorage' }).user().anonymousId();
  await sent(1);
  assert.equal(env.jar.writes, 0);
  assert.equal(env.localStorage.getItem('herd_aid'), b);

  env = install();
  herd({ persistence: 'memory' }).track('x');
  await sent(2);
  assert.equal(env.jar.writes, 0);
  assert.equal(env.localStorage.m.size, 0);
});

test('blocked localStorage and a full one do not stop events', async () => {
  env = install({ storage: false, nav: { cookieEnabled: false } });
  herd().track('Still Sent');
  assert.ok((await sent(2)).some((e) => e.event == 'Still Sent'));

  env = install();
  env.localStorage.full = true;
  herd().track('Still Sent');
  assert.ok((await sent(2)).some((e) => e.event == 'Still Sent'));
});

test('identify keeps the user id and traits across pages; reset clears them', async () => {
  const h = herd({ trackPages: false });
  const anon = h.user().anonymousId();
  h.identify('u1', { email: 'a@example.com' });
  h.identify({ plan: 'pro' });
  const again = herd({ trackPages: false });
  assert.equal(again.user().id(), 'u1');
  assert.deepEqual(again.user().traits(), { email: 'a@example.com', plan: 'pro' });
  again.track('Later');
  const evs = await sent(3);
  assert.deepEqual(evs[1].traits, { email: 'a@example.com', plan: 'pro' });
  assert.equal(evs[2].userId, 'u1');
  assert.equal(evs[2].anonymousId, anon);

  // another user's identify drops the previous user's traits
  again.identify('u2', { name: 'B' });
  assert.deepEqual(again.user().traits(), { name: 'B' });

  again.reset();
  assert.equal(again.user().id(), null);
  assert.deepEqual(again.user().traits(), {});
  assert.notEqual(again.user().anonymousId(), anon);
  assert.equal(env.jar.c.has('herd_uid'), false);
});

test('single-page app navigations send page views with the previous route as referrer', async () => {
  env = install({ url: 'https://www.example.com/', referrer: 'https://ref.example/' });
  herd();
  history.pushState({}, '', '/pricing?utm_source=x');
  document.title = 'Pricing';
  await sleep(150);
  history.replaceState({}, '', '/pricing?utm_source=x'); // same URL: not a new page
  await sleep(150);
  env.navigate('/pricing?utm_source=x#faq');
  window.dispatch('hashchange');
  await sleep(150);
  env.navigate('/');
  window.dispatch('popstate');
  const pages = (await sent(4)).filter((e) => e.type == 'page');
  await sleep(150);
  assert.deepEqual(env.events().filter((e) => e.type == 'page').map((p) => [p.properties.url.replace('https://www.example.com', ''), p.properties.referrer.replace('https://www.example.com', '')]), [
    ['/', 'https://ref.example/'],
    ['/pricing?utm_source=x', '/'],
    ['/pricing?utm_source=x#faq', '/pricing?utm_source=x'],
    ['/', '/pricing?utm_source=x#faq'],
  ]);
  assert.equal(pages[1].properties.title, 'Pricing', 'title is read after the router sets it');
  assert.equal(pages[1].context.campaign.source, 'x');
});

test('a route change right before the page hides is not lost', async () => {
  herd({ flushInterval: 60000 });
  history.pushState({}, '', '/checkout');
  document.visibilityState = 'hidden';
  document.dispatch('visibilitychange');
  const pages = env.events().filter((e) => e.type == 'page');
  assert.deepEqual(pages.map((p) => p.properties.path), ['/start', '/checkout']);
  document.visibilityState = 'visible';
  document.dispatch('visibilitychange');
});

test('clicks on data-herd-event elements are tracked with data-herd-* properties', async () => {
  herd({ trackPages: false });
  const body = element('body');
  const button = element('button', { 'data-herd-event': 'Plan Chosen', 'data-herd-plan': 'pro', 'data-herd-billing-cycle': 'year', class: 'x' }, body);
  const span = element('span', {}, button, 'Choose');
  document.dispatch('click', { target: span });
  document.dispatch('click', { target: element('button', {}, body, 'Untagged') });
  const [e] = await sent(1);
  await sleep(30);
  assert.equal(env.events().length, 1, 'untagged clicks are ignored without autocapture');
  assert.equal(e.event, 'Plan Chosen');
  assert.deepEqual(e.properties, { plan: 'pro', billing_cycle: 'year' });
});

test('autocapture records links and buttons with text and a stable selector', async () => {
  herd({ trackPages: false, autocapture: true });
  const body = element('body');
  const nav = element('nav', { id: 'top' }, body);
  element('a', { href: '/a' }, nav, 'A');
  const link = element('a', { href: '/docs' }, nav, '  Read\n  the docs ');
  const div = element('div', {}, body);
  const button = element('button', {}, div, 'Buy');
  const secret = element('div', { 'data-herd-ignore': '' }, body);
  document.dispatch('click', { target: link });
  document.dispatch('click', { target: button });
  document.dispatch('click', { target: element('button', {}, secret, 'Hidden') });
  document.dispatch('click', { target: element('p', {}, body, 'text') });
  await sent(2);
  await sleep(30);
  const evs = env.events();
  assert.equal(evs.length, 2);
  assert.deepEqual(evs[0].properties, { tag: 'a', text: 'Read the docs', selector: '#top>a:nth-of-type(2)', href: 'https://www.example.com/docs' });
  assert.deepEqual(evs[1].properties, { tag: 'button', text: 'Buy', selector: 'body>div:nth-of-type(1)>button' });
  assert.equal(evs[0].event, 'Element Clicked');
});

test('selector and clickEvent handle odd targets', () => {
  assert.equal(clickEvent(null, true), undefined);
  assert.equal(clickEvent({ nodeType: 3 }, true), undefined);
  const body = element('body');
  const el = element('button', { id: '1bad id' }, body);
  assert.equal(selector(el), 'body>button');
});

test('the session id is kept while active and rotates after the inactivity timeout', async () => {
  const h = herd({ trackPages: false, sessionTimeout: 100 });
  h.track('a');
  await sleep(60);
  h.track('b');
  await sleep(60);
  h.track('c'); // 60 ms after b: same session, although 120 ms after a
  await sleep(150);
  h.track('d');
  const evs = await sent(4);
  const ids = evs.map((e) => e.context.sessionId);
  assert.equal(ids[0], ids[1]);
  assert.equal(ids[1], ids[2]);
  assert.notEqual(ids[2], ids[3]);
  // a new page in the same session keeps it
  herd({ trackPages: false, sessionTimeout: 100 }).track('e');
  assert.equal((await sent(5))[4].context.sessionId, ids[3]);
});

test('with consent required nothing is sent or stored until consent, then queued events go', async () => {
  const h = herd({ requireConsent: true, flushAt: 1 });
  h.track('Waiting');
  await h.flush();
  await sleep(40);
  document.visibilityState = 'hidden';
  document.dispatch('visibilitychange');
  document.visibilityState = 'visible';
  assert.equal(env.requests.length + env.beacons.length, 0);
  assert.equal(env.jar.writes, 0);
  assert.equal(env.localStorage.m.size, 0);

  const anon = h.user().anonymousId();
  h.consent(true);
  const evs = await sent(2);
  assert.deepEqual(evs.map((e) => e.event || e.type), ['page', 'Waiting']);
  assert.equal(evs[0].anonymousId, anon);
  assert.equal(env.jar.c.get('herd_aid').value, anon, 'the id is stored once consent is given');

  // the choice is remembered by the next page
  herd({ requireConsent: true }).track('Next Page');
  await until(() => env.events().some((e) => e.event == 'Next Page'));
});

test('consent(false) drops what is queued and stops sending', async () => {
  const h = herd({ flushInterval: 50 });
  h.track('Queued');
  h.consent(false);
  h.track('After');
  await sleep(100);
  assert.equal(env.requests.length, 0);
  assert.equal(env.jar.c.has('herd_aid'), false);
  assert.equal(env.localStorage.getItem('herd_queue'), null);
  herd({ flushInterval: 50 }).track('Next Page');
  await sleep(100);
  assert.equal(env.requests.length, 0, 'the refusal is remembered');
});

test('Do-Not-Track and Global Privacy Control are respected when asked', async () => {
  for (const nav of [{ doNotTrack: '1' }, { globalPrivacyControl: true }]) {
    env = install({ nav });
    herd({ respectDNT: true, respectGPC: true }).track('x');
    await sleep(40);
    assert.equal(env.requests.length, 0);
    assert.equal(env.jar.writes, 0);
    env = install({ nav });
    herd().track('x');
    await sent(2); // not asked to respect it
  }
});

test('the API host and path prefix decide where events go', async () => {
  const cases = [
    [{ apiHost: 'https://c.example.com' }, 'https://c.example.com/v1/batch'],
    [{ apiHost: 'c.example.com/' }, 'https://c.example.com/v1/batch'],
    [{ apiHost: 'https://www.example.com/herd' }, 'https://www.example.com/herd/v1/batch'],
    [{ apiHost: 'https://www.example.com', pathPrefix: 'herd/' }, 'https://www.example.com/herd/v1/batch'],
    [{ apiHost: 'http://127.0.0.1:8080', pathPrefix: '/a/b' }, 'http://127.0.0.1:8080/a/b/v1/batch'],
    [{ apiHost: '' }, '/v1/batch'],
  ];
  for (const [opts, url] of cases) {
    env = install();
    herd(opts);
    await until(() => env.requests.length == 1);
    assert.equal(env.requests[0].url, url);
  }
});

test('a misused API never throws into the page', () => {
  const h = herd();
  assert.doesNotThrow(() => {
    h.track();
    h.track({ not: 'a name' });
    h.identify(undefined, 'traits?');
    h.page(() => {});
    h.group();
    h.alias();
    h.consent('yes');
    h.ready('not a function');
  });
});

test('on localhost and IP addresses the cookie is host-only', async () => {
  for (const url of ['http://localhost:8080/', 'http://127.0.0.1:8080/']) {
    env = install({ url });
    herd().user().anonymousId();
    assert.equal(env.jar.c.get('herd_aid').domain, '', url);
  }
});
