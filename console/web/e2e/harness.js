// What the console's browser tests run against: a real `herd up` (collector,
// writer, archiver and console) on a fresh database of the machine's
// Postgres, analysts made by `herd analysts add`, and Debian's Chromium
// driven by playwright-core.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createServer as netServer } from 'node:net';
import { mkdtempSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const root = new URL('..', import.meta.url).pathname;
const PG = process.env.HERD_E2E_PG || 'postgres://postgres@127.0.0.1:5432/postgres';
export const BIN = process.env.HERD_BIN || join(root, '../../bin/herd');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function until(what, cond, timeout = 15000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error('timed out waiting for ' + what + (last ? `: ${last.message}` : ''));
    await sleep(100);
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = netServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export function psql(url, sql, timeout = 30000) {
  return execFileSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', url, '-c', sql], { encoding: 'utf8', timeout });
}

// cleanup runs a cleanup step a few times, waiting longer each time (a
// loaded machine can take minutes to end a database's sessions), and
// never fails the suite: a leftover is dropped by the next run.
async function cleanup(what, fn) {
  for (let i = 1; ; i++) {
    try {
      return fn();
    } catch (e) {
      if (i === 4) {
        console.error(`cleanup: ${what} failed, left for the next run: ${e.message}`);
        return;
      }
      await sleep(2000 * i);
    }
  }
}

export function herd(args, env = {}) {
  return execFileSync(BIN, args, { encoding: 'utf8', timeout: 60000, env: { ...process.env, ...env } });
}

// tag names this run's databases and roles: roles are server-wide, so
// analysts get the tag too. Leftovers of runs whose process is gone are
// dropped first.
export const tag = `c${process.pid}`;

export function createDatabase() {
  for (const old of psql(PG, "select datname from pg_database where datname like 'herd\\_console\\_e2e\\_%'").split('\n').filter(Boolean)) {
    const pid = +old.split('_')[3];
    if (alive(pid)) continue;
    try {
      psql(PG, `drop database if exists ${old} with (force)`, 120000);
      dropRoles(pid);
    } catch (e) {
      console.error(`cleanup: leftover ${old} not dropped: ${e.message}`);
    }
  }
  for (const r of psql(PG, "select rolname from pg_roles where rolname like 'herd\\_analysts\\_herd\\_console\\_e2e\\_%'").split('\n').filter(Boolean)) {
    const pid = +r.split('_')[5];
    if (!alive(pid)) dropRoles(pid);
  }
  const name = `herd_console_e2e_${process.pid}_${Date.now()}`;
  psql(PG, `create database ${name}`);
  const url = PG.replace(/\/[^/?]*(\?|$)/, `/${name}$1`);
  return {
    url,
    query: (sql) => JSON.parse(psql(url, `select coalesce(json_agg(t), '[]') from (${sql}) t`)),
    exec: (sql) => psql(url, sql),
    // drop is a cleanup step: it retries and never throws.
    drop: async () => {
      await cleanup(`drop database ${name}`, () => psql(PG, `drop database if exists ${name} with (force)`, 120000));
      await cleanup('drop roles', () => dropRoles(process.pid));
    },
  };
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// dropRoles drops the analysts of run pid and the group role `herd
// analysts add` made for each of its databases (herd_analysts_<database>).
function dropRoles(pid) {
  const roles = `select rolname from pg_roles where rolname ~ '^[a-z]+_c${pid}$' or rolname like 'herd\\_analysts\\_herd\\_console\\_e2e\\_${pid}\\_%'`;
  for (const r of psql(PG, roles).split('\n').filter(Boolean)) {
    try {
      psql(PG, `drop role if exists ${r}`);
    } catch {}
  }
}

// startHerd runs `herd up` with the console on its own port and resolves
// once /readyz answers 200 and the console serves its page. The same
// dir may be given again to restart on the same data.
// lakeFileAgeFlag: whether herd up can close lake files after seconds (else
// a lake file is written when herd up stops).
const upHelp = spawnSync(BIN, ['up', '--help'], { encoding: 'utf8' });
export const lakeFileAgeFlag = /--lake-file-max-age/.test(upHelp.stdout + upHelp.stderr);

export async function startHerd({ databaseUrl, writeKey, dir, extra = [] }) {
  if (lakeFileAgeFlag) extra = ['--lake-file-max-age', '2s', ...extra];
  const [port, adminPort, consolePort] = [await freePort(), await freePort(), await freePort()];
  dir ||= mkdtempSync(join(tmpdir(), 'herd-console-e2e-'));
  mkdirSync(dir, { recursive: true });
  const logFile = join(dir, 'herd.log');
  const log = openSync(logFile, 'a');
  const proc = spawn(BIN, ['up', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`,
    '--console-listen', `127.0.0.1:${consolePort}`, '--data-dir', join(dir, 'data'), '--database-url', databaseUrl,
    '--write-key', writeKey, ...extra], { stdio: ['ignore', log, log] });
  let exited = null;
  proc.on('exit', (code) => (exited = code));
  const consoleUrl = `http://127.0.0.1:${consolePort}`;
  try {
    await until('herd /readyz and the console', async () => {
      if (exited !== null) throw new Error(`herd exited with ${exited}:\n${readFileSync(logFile, 'utf8')}`);
      try {
        return (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status == 200 && (await fetch(consoleUrl + '/login')).status == 200;
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
    console: consoleUrl,
    dir,
    log: () => readFileSync(logFile, 'utf8'),
    // stop ends herd up and waits until it has exited (its connections
    // closed), so the database can be dropped after it.
    async stop({ keep = false } = {}) {
      if (exited === null) {
        proc.kill('SIGINT');
        await until('herd to stop', () => exited !== null, 60000).catch(async () => {
          proc.kill('SIGKILL');
          await until('herd to be killed', () => exited !== null, 30000).catch(() => {});
        });
      }
      if (!keep) rmSync(dir, { recursive: true, force: true });
    },
  };
}

// addAnalyst runs `herd analysts add` and returns the login it printed.
export function addAnalyst(databaseUrl, name) {
  const out = herd(['analysts', 'add', name, '--database-url', databaseUrl]).trim().split('\n').pop();
  const u = new URL(out);
  return { user: decodeURIComponent(u.username), password: decodeURIComponent(u.password), url: out };
}

// send posts one batch to the collector as the default source.
export async function send(herdUrl, writeKey, batch) {
  const r = await fetch(herdUrl + '/v1/batch', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: 'Basic ' + Buffer.from(writeKey + ':').toString('base64') },
    body: JSON.stringify({ batch }),
  });
  return { status: r.status, body: await r.text() };
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
}

// signIn opens the console in a fresh context (its own cookies) and signs in
// through the form.
export async function signIn(browser, base, who, { path = '/sql' } = {}) {
  const context = await browser.newContext({ viewport: { width: 1360, height: 860 }, acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && !/Failed to load resource/.test(m.text()) && errors.push(m.text()));
  await page.goto(base + path);
  await page.fill('#login-user', who.user);
  await page.fill('#login-password', who.password);
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('nav.top .user', { timeout: 10000 });
  return { context, page, errors };
}

export function writeFiles(dir, files) {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}
