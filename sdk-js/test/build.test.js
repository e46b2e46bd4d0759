// Checks on what dist/ holds: the size budget, the built script and snippet
// working together as a page would load them, and dist/ being current.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runInThisContext } from 'node:vm';
import { gzipSync, brotliCompressSync } from 'node:zlib';
import { install, until } from './fakebrowser.js';

const root = new URL('..', import.meta.url).pathname;
const dist = (f) => readFileSync(join(root, 'dist', f), 'utf8');
const LIMIT = 6 * 1024;

// snippet fills the placeholders the way the Go package does.
const snippet = (key, host) => dist('snippet.js').replace('"__HERD_WRITE_KEY__"', JSON.stringify(key)).replace('"__HERD_API_HOST__"', JSON.stringify(host));

test('sdk.js is at most 6 KB gzipped', () => {
  const js = readFileSync(join(root, 'dist/sdk.js'));
  const gz = gzipSync(js, { level: 9 }).length;
  console.log(`sdk.js: ${js.length} bytes, ${gz} gzipped, ${brotliCompressSync(js).length} brotli (limit ${LIMIT} gzipped)`);
  assert.ok(gz <= LIMIT, `sdk.js is ${gz} bytes gzipped, over the ${LIMIT} byte budget`);
});

test('dist/ is what the build makes from src/', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'herd-dist-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  execFileSync(process.execPath, [join(root, 'scripts/build.mjs'), '--outdir', tmp]);
  for (const f of readdirSync(tmp)) assert.equal(readFileSync(join(root, 'dist', f), 'utf8'), readFileSync(join(tmp, f), 'utf8'), `dist/${f} is stale: run make sdk`);
});

test('the snippet queues calls and loads sdk.js, which replays them in order', async () => {
  const env = install({ url: 'https://www.example.com/' });
  const appended = [];
  document.createElement = (tag) => ({ tagName: tag });
  document.head = { appendChild: (el) => appended.push(el) };

  runInThisContext(snippet('key "1"', 'https://collect.example.com/herd'));
  window.herd.track('Before Load', { n: 1 });
  window.herd.identify('u1');
  // the snippet pasted twice does not reset the queue
  runInThisContext(snippet('other', 'https://other.example.com'));
  assert.equal(appended.length, 1);
  assert.equal(appended[0].src, 'https://collect.example.com/herd/sdk.js');
  assert.equal(appended[0].async, true);
  assert.equal(window.herd.length, 2);

  document.currentScript = { src: appended[0].src, getAttribute: () => null };
  runInThisContext(dist('sdk.js'));
  assert.equal(window.herd.loaded, true);
  window.herd.track('After Load');
  await window.herd.flush();
  await until(() => env.events().length == 4);
  assert.equal(env.requests[0].url, 'https://collect.example.com/herd/v1/batch');
  assert.equal(JSON.parse(env.requests[0].body).writeKey, 'key "1"');
  assert.deepEqual(env.events().map((e) => e.event || e.type), ['page', 'Before Load', 'identify', 'After Load']);
  assert.equal(env.events()[3].userId, 'u1');

  // loading sdk.js a second time leaves the running instance alone
  const running = window.herd;
  runInThisContext(dist('sdk.js'));
  assert.equal(window.herd, running);
});

test('sdk.js without the snippet reads its settings from its tag', async () => {
  const env = install({ url: 'https://www.example.com/' });
  window.herd = undefined;
  document.currentScript = { src: 'https://www.example.com/herd/sdk.js', getAttribute: (n) => ({ 'data-write-key': 'tag-key' })[n] ?? null };
  runInThisContext(dist('sdk.js'));
  await window.herd.flush();
  await until(() => env.requests.length == 1);
  assert.equal(env.requests[0].url, 'https://www.example.com/herd/v1/batch');
  assert.equal(JSON.parse(env.requests[0].body).writeKey, 'tag-key');
});

test('the README shows the snippet as built', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  assert.ok(readme.includes(snippet('YOUR_WRITE_KEY', 'https://collect.example.com')), 'README.md snippet differs from dist/snippet.js');
});

test('the ES module exports createHerd', async () => {
  const mod = await import(join(root, 'dist/herd.esm.js'));
  assert.equal(typeof mod.createHerd, 'function');
  assert.equal(mod.VERSION, JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version);
});
