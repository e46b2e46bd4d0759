// What the browser tests run against: a real herd (`herd up`) on a fresh
// Postgres database, a second origin that serves the test pages and a
// first-party path (/herd/) proxied to herd that can be cut off, and Debian's
// Chromium driven by playwright-core.
import { spawn, execFileSync } from 'node:child_process';
import { createServer, request as httpRequest } from 'node:http';
import { createServer as netServer } from 'node:net';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const root = new URL('..', import.meta.url).pathname;
export const VERSION = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
const PG = process.env.HERD_E2E_PG || 'postgres://postgres@127.0.0.1:5432/postgres';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function until(what, cond, timeout = 15000) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(100);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = netServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function psql(url, sql) {
  return execFileSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', url, '-c', sql], { encoding: 'utf8', timeout: 30000 });
}

// createDatabase makes an empty database for one run and returns its URL and
// a query function that returns rows as objects.
// Databases left by runs that were killed (their pid is gone) are dropped.
export function createDatabase() {
  for (const old of psql(PG, "select datname from pg_database where datname like 'herd\\_sdk\\_e2e\\_%'").split('\n').filter(Boolean)) {
    const pid = +old.split('_')[3];
    try {
      process.kill(pid, 0);
    } catch {
      psql(PG, `drop database if exists ${old} with (force)`);
    }
  }
  const name = `herd_sdk_e2e_${process.pid}_${Date.now()}`;
  psql(PG, `create database ${name}`);
  const url = PG.replace(/\/[^/?]*(\?|$)/, `/${name}$1`);
  return {
    url,
    query: (sql) => JSON.parse(psql(url, `select coalesce(json_agg(t), '[]') from (${sql}) t`)),
    drop: () => psql(PG, `drop database if exists ${name} with (force)`),
  };
}

// startHerd runs `herd up` and resolves once /readyz answers 200.
export async function startHerd({ databaseUrl, writeKey }) {
  const bin = process.env.HERD_BIN || join(root, '../bin/herd');
  const [port, adminPort] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'herd-e2e-'));
  const logFile = join(dir, 'herd.log');
  const log = openSync(logFile, 'a');
  const proc = spawn(bin, ['up', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`,
    '--data-dir', join(dir, 'data'), '--database-url', databaseUrl, '--write-key', writeKey], { stdio: ['ignore', log, log] });
  let exited = null;
  proc.on('exit', (code) => (exited = code));
  try {
    await until('herd /readyz', async () => {
      if (exited !== null) throw new Error(`herd exited with ${exited}:\n${readFileSync(logFile, 'utf8')}`);
      try {
        return (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status == 200;
      } catch {
        return false;
      }
    }, 60000);
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    log: () => readFileSync(logFile, 'utf8'),
    async stop() {
      if (exited === null) {
        proc.kill('SIGINT');
        await until('herd to stop', () => exited !== null, 15000).catch(() => proc.kill('SIGKILL'));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// startSite serves pages on a second origin. pages maps a path prefix to a
// function returning HTML; /herd/* is proxied to herd unless offline is set,
// when requests to /herd/v1/ have their connection dropped, as if the
// collector were unreachable.
export async function startSite(herdUrl) {
  const target = new URL(herdUrl);
  const site = { pages: {}, offline: false, proxied: [] };
  const server = createServer((req, res) => {
    if (req.url.startsWith('/herd/')) {
      const path = req.url.slice(5);
      site.proxied.push({ method: req.method, path, offline: site.offline });
      if (site.offline && path.startsWith('/v1/')) return req.socket.destroy();
      const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path, headers: { ...req.headers, host: target.host } }, (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      up.on('error', () => req.socket.destroy());
      return req.pipe(up);
    }
    const prefix = Object.keys(site.pages).sort((a, b) => b.length - a.length).find((p) => req.url.startsWith(p));
    if (!prefix) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' }).end(site.pages[prefix](req));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  site.url = `http://127.0.0.1:${server.address().port}`;
  site.stop = () => new Promise((r) => { server.closeAllConnections(); server.close(r); });
  return site;
}

// snippet fills dist/snippet.js the way the Go package's Snippet does, with
// extra options in the snippet's last argument.
export function snippet(writeKey, apiHost, options = {}) {
  return '<script>' + readFileSync(join(root, 'dist/snippet.js'), 'utf8').trim()
    .replace('"__HERD_WRITE_KEY__"', JSON.stringify(writeKey))
    .replace('"__HERD_API_HOST__"', JSON.stringify(apiHost))
    .replace(/\{\}\);$/, JSON.stringify(options) + ');') + '</script>';
}

// appPage is a small single-page app under base ("/shop/"): three routes
// reached with pushState and a hash, a button tagged for herd, and `script`
// run right after the snippet (before sdk.js has loaded).
export function appPage({ base, head, script = '' }) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Shop</title>${head}
<script>${script}</script></head><body>
<nav>
<a id="pricing" href="${base}pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring">Pricing</a>
<a id="docs" href="${base}docs">Docs</a>
<a id="faq" href="#faq">FAQ</a>
</nav>
<button id="choose" data-herd-event="Plan Chosen" data-herd-plan="pro" data-herd-billing-cycle="yearly">Choose <b>Pro</b></button>
<button id="plain">Not tagged</button>
<script>
  document.querySelectorAll('nav a:not([href^="#"])').forEach(function (a) {
    a.addEventListener('click', function (e) {
      e.preventDefault();
      history.pushState({}, '', a.getAttribute('href'));
      document.title = a.textContent; // as routers do, after the URL changes
    });
  });
  document.body.dataset.ready = '1';
</script></body></html>`;
}

// launchBrowser starts Debian's Chromium. playwright gives each launch a
// fresh temporary profile (it refuses --user-data-dir in args), and every
// test gets its own context: no cookies or storage carry over.
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
}

// watch records a page's requests to the collector (beacons included) in
// requests; in all, every request made in the page's browser context (the
// page, its workers, the browser on its behalf); and the errors that reached
// the page.
export function watch(page, herdUrl, site) {
  const w = { requests: [], all: [], errors: [] };
  page.context().on('request', (r) => w.all.push({ url: r.url(), method: r.method(), type: r.resourceType() }));
  page.on('request', (r) => {
    const u = r.url();
    if (u.startsWith(herdUrl + '/v1/') || u.startsWith(site.url + '/herd/v1/')) w.requests.push({ url: u, type: r.resourceType(), body: r.postData() });
  });
  page.on('pageerror', (e) => w.errors.push(String(e)));
  w.batches = () => w.requests.filter((r) => r.body).map((r) => JSON.parse(r.body).batch.map((e) => e.messageId));
  w.messageIds = () => new Set(w.batches().flat());
  // resent lists the messageIds that went out in more than one request
  w.resent = () => {
    const seen = new Map();
    for (const id of w.batches().flat()) seen.set(id, (seen.get(id) || 0) + 1);
    return [...seen].filter(([, n]) => n > 1).map(([id]) => id);
  };
  return w;
}
