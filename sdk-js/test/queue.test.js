import { test, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import { install, sleep, until } from './fakebrowser.js';
import { createHerd } from '../src/index.js';

let env;
const live = [];

function herd(opts = {}) {
  const h = createHerd({ writeKey: 'wk', apiHost: 'https://c.example.com', trackPages: false, flushInterval: 60000, ...opts });
  live.push(h);
  return h;
}

const stored = () => JSON.parse(env.localStorage.getItem('herd_queue') || '[]');
const ids = (evs) => evs.map((e) => e.messageId);

function hide() {
  document.visibilityState = 'hidden';
  document.dispatch('visibilitychange');
  window.dispatch('pagehide');
}

beforeEach(() => {
  env = install();
  mock.method(console, 'warn', () => {});
});

afterEach(async () => {
  env.respond = () => 200;
  for (let i = 0; i < 3; i++) {
    await sleep(15);
    for (const h of live) await h.flush();
  }
  live.length = 0;
  mock.restoreAll();
});

test('a batch goes when flushAt events are queued, as text/plain with the write key and sentAt', async () => {
  const h = herd({ flushAt: 3 });
  h.track('a');
  h.track('b');
  assert.equal(env.requests.length, 0);
  h.track('c');
  await until(() => env.requests.length == 1);
  const r = env.requests[0];
  assert.equal(r.method, 'POST');
  assert.equal(r.url, 'https://c.example.com/v1/batch');
  assert.equal(typeof r.body, 'string', 'a string body is sent as text/plain, which needs no preflight');
  assert.equal(r.headers, undefined);
  assert.equal(r.credentials, 'omit');
  const body = JSON.parse(r.body);
  assert.equal(body.writeKey, 'wk');
  assert.deepEqual(body.batch.map((e) => e.event), ['a', 'b', 'c']);
  assert.ok(Math.abs(Date.parse(body.sentAt) - Date.now()) < 5000);
  for (const e of body.batch) assert.equal(e.sentAt, body.sentAt);
  await until(() => stored().length == 0);
});

test('a batch goes after flushInterval when fewer events are queued', async () => {
  const h = herd({ flushInterval: 50 });
  h.track('a');
  await sleep(20);
  assert.equal(env.requests.length, 0);
  await until(() => env.requests.length == 1);
  assert.equal(env.events().length, 1);
});

test('events are stored before they are sent and removed only once accepted', async () => {
  let release;
  env.respond = () => new Promise((r) => (release = r));
  const h = herd({ flushAt: 1 });
  h.track('a');
  assert.deepEqual(stored().map((e) => e.event), ['a']);
  await until(() => release);
  assert.equal(stored().length, 1, 'still stored while the request is in flight');
  release(200);
  await until(() => stored().length == 0);
});

test('failures are retried with backoff, keeping each messageId', async () => {
  const answers = ['fail', 503];
  env.respond = () => answers.shift() ?? 200;
  const h = herd({ flushAt: 2 });
  h.track('a');
  h.track('b');
  await until(() => env.requests.length == 1);
  await sleep(200);
  assert.equal(env.requests.length, 1, 'the retry waits');
  window.dispatch('online'); // back online: retry now
  await until(() => env.requests.length == 2);
  await until(() => env.requests.length == 3, 4000); // after a backoff of 0.5-1 s
  const bodies = env.requests.map((r) => JSON.parse(r.body));
  assert.deepEqual(ids(bodies[1].batch), ids(bodies[0].batch));
  assert.deepEqual(ids(bodies[2].batch), ids(bodies[0].batch));
  await until(() => stored().length == 0);
});

test('a batch the collector refuses as invalid is not retried', async () => {
  env.respond = () => 400;
  herd({ flushAt: 1 }).track('bad');
  await until(() => env.requests.length == 1);
  await until(() => stored().length == 0);
  await sleep(50);
  assert.equal(env.requests.length, 1);
  assert.equal(console.warn.mock.callCount(), 1);
});

test('429 and 408 are retried', async () => {
  for (const status of [429, 408]) {
    env = install();
    const answers = [status];
    env.respond = () => answers.shift() ?? 200;
    const h = herd({ flushAt: 1 });
    h.track('x');
    await until(() => env.requests.length == 1);
    assert.equal(stored().length, 1);
    window.dispatch('online');
    await until(() => env.requests.length == 2 && stored().length == 0);
  }
});

test('when the page hides, the queue goes by sendBeacon and is dropped if the collector has been answering', async () => {
  const h = herd({ flushAt: 1 });
  h.track('first');
  await until(() => stored().length == 0); // the collector answered
  h.track('last'); // its request is in flight when the page hides
  hide();
  assert.equal(env.beacons.length, 1);
  assert.equal(env.beacons[0].url, 'https://c.example.com/v1/batch');
  const body = JSON.parse(env.beacons[0].data);
  assert.equal(body.writeKey, 'wk');
  assert.deepEqual(body.batch.map((e) => e.event), ['last']);
  assert.equal(stored().length, 0);
});

test('when the collector has not answered, beaconed events stay queued and the next page sends them once', async () => {
  env.respond = () => 'fail';
  const h = herd({ flushAt: 1 });
  h.track('a');
  h.track('b');
  await until(() => env.requests.length >= 1);
  hide();
  assert.equal(env.beacons.length, 1);
  const kept = stored();
  assert.deepEqual(kept.map((e) => e.event), ['a', 'b']);
  assert.deepEqual(ids(JSON.parse(env.beacons[0].data).batch), ids(kept));

  // pagehide after visibilitychange does not send the same events again
  window.dispatch('pagehide');
  assert.equal(env.beacons.length, 1);

  // the next page, with the collector back
  env.respond = () => 200;
  const before = env.requests.length;
  herd({ flushInterval: 10 });
  await until(() => stored().length == 0);
  const resent = env.requests.slice(before).flatMap((r) => JSON.parse(r.body).batch);
  assert.deepEqual(ids(resent), ids(kept));
});

test('when sendBeacon refuses, a keepalive fetch carries the events', async () => {
  env.beaconResult = false;
  const h = herd();
  h.track('a');
  hide();
  await until(() => env.requests.length == 1);
  assert.equal(env.requests[0].keepalive, true);
  assert.deepEqual(JSON.parse(env.requests[0].body).batch.map((e) => e.event), ['a']);
  await until(() => stored().length == 0, 500);
});

test('large queues go in several requests of at most 100 events and about 50 KB', async () => {
  env.respond = () => 'fail';
  const h = herd({ maxQueue: 1000 });
  for (let i = 0; i < 250; i++) h.track('e' + i, { pad: 'x'.repeat(i < 50 ? 2000 : 10) });
  hide();
  const sizes = env.beacons.map((b) => JSON.parse(b.data).batch.length);
  assert.equal(sizes.reduce((a, b) => a + b), 250);
  for (const b of env.beacons) assert.ok(b.data.length < 64000, 'beacon of ' + b.data.length + ' bytes');
  assert.ok(sizes.every((n) => n <= 100));
  assert.ok(sizes.length >= 4);
});

test('the queue is bounded: when full, new events are refused and the oldest kept', async () => {
  env.respond = () => 'fail';
  const h = herd({ maxQueue: 3 });
  for (const e of ['a', 'b', 'c', 'd', 'e']) h.track(e);
  assert.deepEqual(stored().map((e) => e.event), ['a', 'b', 'c']);
});

test('two tabs share the stored queue without losing each other\'s events', async () => {
  env.respond = () => 'fail';
  const a = herd(), b = herd();
  a.track('from a');
  b.track('from b');
  a.track('from a again');
  assert.deepEqual(stored().map((e) => e.event), ['from a', 'from b', 'from a again']);
});

test('a request that hangs is abandoned and retried', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let signal;
  env.respond = (_u, init) => {
    signal = init.signal;
    return new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(new Error('aborted'))));
  };
  const h = herd({ flushAt: 1 });
  h.track('a');
  assert.equal(env.requests.length, 1);
  assert.equal(signal.aborted, false);
  t.mock.timers.tick(15000);
  assert.equal(signal.aborted, true);
  await new Promise((r) => setImmediate(r));
  assert.equal(stored().length, 1, 'kept for the retry');
  env.respond = () => 200;
  t.mock.timers.tick(1000);
  await new Promise((r) => setImmediate(r));
  assert.equal(env.requests.length, 2);
  t.mock.timers.reset();
});
