// The console in Chromium against a real `herd up`: two analysts and an
// operator sign in; SQL runs as each one's own role; a saved query's link
// works for colleagues and shows nothing without a session; the operator
// pages follow events live, trace them to the stream, herd.events and the
// lake, chart the pipeline and show a failed rollup with what it blocked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { addAnalyst, createDatabase, herd as herdCmd, lakeFileAgeFlag, launchBrowser, psql, send, signIn, startHerd, tag, until, writeFiles } from './harness.js';

const KEY = 'console_e2e_write_key';
let db, herd, browser, ana, bob, boss, rollupDir;
const sessions = {};

before(async () => {
  db = createDatabase();
  herd = await startHerd({ databaseUrl: db.url, writeKey: KEY });
  ana = addAnalyst(db.url, `ana_${tag}`);
  bob = addAnalyst(db.url, `bob_${tag}`);
  boss = addAnalyst(db.url, `boss_${tag}`);
  psql(db.url, `grant herd_admin to ${boss.user}`);
  // bob keeps a table in his own schema that ana must not read
  psql(bob.url, `create table ${bob.user}.salaries as select 'bob' as name, 123456 as salary`);
  // three rollups, applied while herd.events is empty: fragile_counts
  // divides by zero once there are events, which blocks built_on_fragile
  rollupDir = writeFiles(join(herd.dir, 'rollups'), {
    'fragile_counts.sql': '-- refresh: 1m\ncreate materialized view fragile_counts as select count(*) / (case when exists (select from herd.events) then 0 else 1 end) as n from herd.events where false;\n',
    'built_on_fragile.sql': '-- refresh: 1m\ncreate materialized view built_on_fragile as select n from rollups.fragile_counts;\n',
    'steady_counts.sql': '-- refresh: 1m\ncreate materialized view steady_counts as select count(*) as n from herd.events;\n',
  });
  herdCmd(['rollups', 'apply', '--dir', rollupDir, '--database-url', db.url]);
  // some events over a few seconds so that charts have points
  const batch = [];
  for (let i = 0; i < 30; i++) {
    batch.push({ type: 'track', event: i % 3 ? 'Page Opened' : 'Signed Up', userId: 'u' + (i % 7), messageId: randomUUID(),
      timestamp: new Date(Date.now() - (30 - i) * 60000).toISOString(), properties: { i } });
  }
  assert.equal((await send(herd.url, KEY, batch)).status, 200);
  await until('the first events in herd.events', () => db.query('select 1 from herd.events').length >= 30, 20000);
  browser = await launchBrowser();
  // each person signs in through the form, in a browser context of their own
  sessions.ana = await signIn(browser, herd.console, ana);
  sessions.bob = await signIn(browser, herd.console, bob);
  sessions.boss = await signIn(browser, herd.console, boss);
});

// Cleanup never fails the suite: each step's error is only reported.
after(async () => {
  for (const s of Object.values(sessions)) await s.context.close().catch(() => {});
  await browser?.close().catch((e) => console.error('cleanup: close the browser:', e.message));
  await herd?.stop().catch((e) => console.error('cleanup: stop herd:', e.message));
  await db?.drop();
});

async function rowsShown(page, scope = '') {
  await page.waitForSelector(`${scope} .grid-wrap`, { timeout: 15000 });
  return +(await page.getAttribute(`${scope} .grid-wrap`, 'data-rows'));
}

// chartDrawn waits for a chart with data points and checks its canvas has
// pixels drawn on it.
async function chartDrawn(page, scope) {
  const sel = `${scope} .chart[data-points]:not([data-points="0"]) canvas`;
  await page.waitForSelector(sel, { timeout: 15000 });
  const painted = await page.$eval(sel, (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
    return n;
  });
  assert.ok(painted > 100, `the chart canvas has drawn pixels (${painted})`);
  return page.$eval(`${scope} .chart`, (el) => ({ kind: el.dataset.kind, points: +el.dataset.points }));
}

async function runSQL(page, sql) {
  await page.click('.cm-content');
  await page.keyboard.press('Control+a');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(sql);
  await page.keyboard.press('Control+Enter');
  await page.waitForFunction(() => !document.querySelector('#run').disabled && /row|Failed|returned/.test(document.querySelector('.status').textContent + document.querySelector('#results').textContent), null, { timeout: 20000 });
}

test('two analysts and an operator sign in; only the operator sees the operator pages', async () => {
  for (const [who, s] of Object.entries(sessions)) {
    assert.equal(await s.page.textContent('nav.top .user'), who === 'boss' ? boss.user + 'admin' : { ana, bob }[who].user);
    assert.equal(await s.page.locator('nav.top ul.ops a').count(), who === 'boss' ? 7 : 0, `${who}'s operator links`);
  }
  const wrong = await browser.newContext();
  const p = await wrong.newPage();
  await p.goto(herd.console + '/sql');
  await p.fill('#login-user', ana.user);
  await p.fill('#login-password', ana.password + 'x');
  await p.click('form.login button[type=submit]');
  await p.waitForSelector('form.login .error:not([hidden])');
  assert.match(await p.textContent('form.login .error'), /wrong user or password/);
  await wrong.close();
});

test('analyst A runs a query over herd.events: rows, a line chart over time, a bar chart by category', async () => {
  const { page, errors } = sessions.ana;
  await page.waitForSelector('.schema-tree summary');
  assert.ok(await page.locator('.schema-tree .ins', { hasText: /^events$/ }).count(), 'the schema browser lists herd.events');
  await runSQL(page, "select date_trunc('minute', \"timestamp\") as minute, count(*) as events from herd.events group by 1 order by 1");
  assert.ok((await rowsShown(page, '#results')) >= 20);
  const line = await chartDrawn(page, '#results');
  assert.equal(line.kind, 'line');
  assert.ok(line.points >= 20, `points: ${line.points}`);
  await page.selectOption('#results .chart-kind', 'area');
  assert.equal((await chartDrawn(page, '#results')).kind, 'area');

  await runSQL(page, 'select event, count(*) as n from herd.events group by 1 order by 2 desc');
  assert.equal(await rowsShown(page, '#results'), 2);
  const bar = await chartDrawn(page, '#results');
  assert.equal(bar.kind, 'bar');
  assert.match(await page.textContent('.status'), /2 rows in/);

  // 10,000 rows: only the rows in view are in the page, and scrolling reaches the last
  await runSQL(page, "select g, md5(g::text) as h from generate_series(1, 10000) g");
  assert.equal(await rowsShown(page, '#results'), 10000);
  assert.ok((await page.locator('#results tbody tr').count()) < 150, 'rows rendered');
  await page.$eval('#results .grid-wrap', (el) => (el.scrollTop = el.scrollHeight));
  await page.waitForSelector('#results tbody td.num >> text=/^10000$/');
  assert.ok((await page.locator('#results tbody tr').count()) < 150, 'rows rendered after scrolling');
  // a click on a column header sorts, a second one sorts descending
  await page.$eval('#results .grid-wrap', (el) => (el.scrollTop = 0));
  await page.click('#results th:nth-child(1)');
  await page.click('#results th:nth-child(1)');
  assert.equal(await page.getAttribute('#results th:nth-child(1)', 'aria-sort'), 'descending');
  await page.waitForSelector('#results tbody tr:nth-child(2) td.num >> text=/^10000$/');

  await runSQL(page, 'select event, count(*) as n from herd.events group by 1 order by 2 desc');
  // downloads are built from the result
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#download-csv')]);
  const csv = await (await dl.createReadStream()).toArray();
  assert.match(Buffer.concat(csv).toString(), /^event,n\r\nPage Opened,20\r\nSigned Up,10\r\n$/);
  // quoting: commas, quotes and line breaks are quoted, NULL is empty; JSON keeps types
  await runSQL(page, `select 'a,b' as x, 'say "hi"' as y, E'two\\nlines' as z, null::int as n, 42 as k, '{"p":1}'::jsonb as j`);
  const [dl2] = await Promise.all([page.waitForEvent('download'), page.click('#download-csv')]);
  assert.equal(Buffer.concat(await (await dl2.createReadStream()).toArray()).toString(),
    'x,y,z,n,k,j\r\n"a,b","say ""hi""","two\nlines",,42,"{""p"":1}"\r\n');
  const [dl3] = await Promise.all([page.waitForEvent('download'), page.click('#download-json')]);
  const json3 = Buffer.concat(await (await dl3.createReadStream()).toArray()).toString();
  // a text cell that starts like a formula gets a leading '; numbers do not
  await runSQL(page, `select '=1+2' as "=f", '@SUM(A1)' as a, E'\\tx' as t, -3 as n, '-4' as s, -9007199254740993::int8 as big`);
  const [dl4] = await Promise.all([page.waitForEvent('download'), page.click('#download-csv')]);
  assert.equal(Buffer.concat(await (await dl4.createReadStream()).toArray()).toString(),
    "'=f,a,t,n,s,big\r\n'=1+2,'@SUM(A1),'\tx,-3,-4,-9007199254740993\r\n");
  assert.deepEqual(JSON.parse(json3),
    [{ x: 'a,b', y: 'say "hi"', z: 'two\nlines', n: null, k: 42, j: { p: 1 } }]);
  assert.deepEqual(errors, []);
});

test("analyst A cannot read B's schema: Postgres's error is shown", async () => {
  const { page } = sessions.ana;
  await runSQL(page, `select * from ${bob.user}.salaries`);
  const err = await page.textContent('#results .error');
  assert.match(err, new RegExp(`permission denied for (schema|table) ${bob.user}`));
  assert.match(err, /SQLSTATE 42501/);
  assert.doesNotMatch(await page.textContent('#results'), /123456/);
  // read-only by default: a write is refused by Postgres; unticked, it runs as ana
  await runSQL(page, `create table ${ana.user}.notes as select 1 as a`);
  assert.match(await page.textContent('#results .error'), /read-only transaction/);
  await page.uncheck('#read-only');
  await runSQL(page, `create table ${ana.user}.notes as select 1 as a`);
  assert.equal(await page.locator('#results .error').count(), 0, await page.textContent('#results'));
  await page.check('#read-only');
  await runSQL(page, `select * from ${ana.user}.notes`);
  assert.equal(await rowsShown(page, '#results'), 1);
  // bob reads his own
  await runSQL(sessions.bob.page, `select * from ${bob.user}.salaries`);
  assert.equal(await rowsShown(sessions.bob.page, '#results'), 1);
});

const SAVED = `events_by_type_${tag}`;

test('A saves a query; B opens its link and sees the same snapshot; without a session the link shows sign-in and no data', async () => {
  const { page } = sessions.ana;
  await runSQL(page, "select type || ':' || event as kind, count(*) as n from herd.events group by 1 order by 1");
  await page.keyboard.press('Control+s');
  await page.fill('#save-name', SAVED);
  await page.click('.save-box button[type=submit]');
  await page.waitForURL(`**/q/${SAVED}`);
  assert.equal(await rowsShown(page, '.snapshot'), 2);
  assert.equal(await page.textContent('#saved-by'), ana.user);
  const runA = await page.getAttribute('.snapshot', 'data-run');
  const textA = await page.textContent('.snapshot .grid-wrap');
  assert.match(textA, /track:Page Opened/);

  const b = sessions.bob.page;
  await b.goto(`${herd.console}/q/${SAVED}`);
  assert.equal(await rowsShown(b, '.snapshot'), 2);
  assert.equal(await b.getAttribute('.snapshot', 'data-run'), runA);
  assert.equal(await b.textContent('.snapshot .grid-wrap'), textA);
  assert.equal(await b.textContent('#saved-by'), ana.user);
  assert.match(await b.textContent('#saved-sql'), /group by 1 order by 1/);
  await chartDrawn(b, '.snapshot');
  // B's list shows it too
  await b.click('nav.top a[href="/queries"]');
  await b.waitForSelector(`#saved-queries a[href="/q/${SAVED}"]`);

  // B runs it again: a second snapshot; the first stays one click away
  await b.goto(`${herd.console}/q/${SAVED}`);
  await b.click('#run-now');
  await until('a second snapshot', async () => (await b.locator('#snapshots li').count()) === 2);
  await b.click('#snapshots li:nth-child(2) a');
  await b.waitForSelector(`.snapshot[data-run="${runA}"]`);

  const anon = await browser.newContext();
  const p = await anon.newPage();
  const bodies = [];
  p.on('response', async (r) => bodies.push(await r.text().catch(() => '')));
  const res = await p.goto(`${herd.console}/q/${SAVED}`);
  assert.ok(res.ok(), `status ${res.status()}`);
  await p.waitForSelector('form.login');
  assert.equal(await p.locator('.snapshot, .grid-wrap').count(), 0);
  for (const body of bodies) assert.doesNotMatch(body, /Page Opened|Signed Up/, 'no response to a browser without a session holds data');
  for (const suffix of ['.json', '.csv']) {
    const r = await fetch(`${herd.console}/q/${SAVED}${suffix}`);
    assert.equal(r.status, 401, suffix);
    assert.doesNotMatch(await r.text(), /Page Opened/);
  }
  // signing in there leads back to the link
  await p.fill('#login-user', bob.user);
  await p.fill('#login-password', bob.password);
  await p.click('form.login button[type=submit]');
  await p.waitForSelector('.snapshot .grid-wrap');
  await anon.close();
});

let acceptedId, rejectedId;

test('live events shows an accepted event within 2 s of its 200, with its raw body beside its stored row, and a rejected one with its reason', async (t) => {
  const { page } = sessions.boss;
  await page.click('nav.top a[href="/ops/live"]');
  await page.waitForSelector('#live-state[data-state=open]');
  // follow the default source only: the stream reconnects with ?source=
  await page.waitForSelector('#live-source option[value="default"]', { state: 'attached' });
  const reconnected = page.waitForRequest((r) => r.url().endsWith('/api/live?source=default'));
  await page.selectOption('#live-source', 'default');
  await reconnected;
  await page.waitForSelector('#live-state[data-state=open]');
  acceptedId = randomUUID();
  rejectedId = randomUUID();
  const r = await send(herd.url, KEY, [
    { type: 'track', event: 'Live Checked', userId: 'live-user', messageId: acceptedId, properties: { color: 'teal' } },
    { type: 'track', event: 'Bad Clock', userId: 'live-user', messageId: rejectedId, timestamp: 'yesterday-ish' },
  ]);
  const answered = Date.now();
  assert.equal(r.status, 200, r.body);
  await page.waitForSelector(`#live-events tr.accepted[data-message-id="${acceptedId}"]`, { timeout: 5000 });
  const took = Date.now() - answered;
  t.diagnostic(`live: shown ${took} ms after the 200`);
  assert.ok(took < 2000, `shown ${took} ms after the 200`);
  await page.click(`#live-events tr[data-message-id="${acceptedId}"]`);
  await page.waitForSelector('#stored-row');
  assert.match(await page.textContent('#live-detail pre.json'), /"color": "teal"/);
  assert.match(await page.textContent('#stored-row'), new RegExp(acceptedId));

  await page.waitForSelector(`#live-events tr.rejected[data-message-id="${rejectedId}"]`, { timeout: 5000 });
  await page.click(`#live-events tr[data-message-id="${rejectedId}"]`);
  assert.match(await page.textContent('#reject-reason'), /timestamp/);
});

test('trace finds an event in the stream, herd.events and the lake, and shows a rejected event\'s reason', async () => {
  const { page } = sessions.boss;
  await page.click('nav.top a[href="/ops/trace"]');
  await page.fill('#trace-id', acceptedId);
  await page.press('#trace-id', 'Enter');
  await page.waitForSelector('[data-step=row].done');
  assert.ok(await page.locator('[data-step=stream].done #trace-seq').count(), 'stream sequence shown');
  assert.match(await page.textContent('[data-step=row]'), /Live Checked/);

  // the lake file appears once the archiver writes it: within seconds when
  // herd up can be told to close files early, else when herd up stops (it
  // writes its open files), so restart it on the same data
  let page2 = page;
  if (!lakeFileAgeFlag) {
    await herd.stop({ keep: true });
    herd = await startHerd({ databaseUrl: db.url, writeKey: KEY, dir: herd.dir });
    for (const [k, who] of [['boss', boss], ['bob', bob], ['ana', ana]]) {
      await sessions[k].context.close();
      sessions[k] = await signIn(browser, herd.console, who);
    }
    page2 = sessions.boss.page;
    await page2.goto(`${herd.console}/ops/trace?id=${acceptedId}`);
  }
  await lakeShown(page2);
  await tracedReject(page2);
});

async function lakeShown(page) {
  await until('the lake file in the trace', async () => {
    await page.click('form.toolbar button[type=submit]');
    await page.waitForSelector('#trace-result .trace');
    return page.locator('[data-step=lake].done #trace-lake').count();
  }, 30000);
  assert.match(await page.textContent('#trace-lake'), /\.parquet/);
}

async function tracedReject(page) {
  await page.fill('#trace-id', rejectedId);
  await page.press('#trace-id', 'Enter');
  await page.waitForSelector('#trace-reject');
  assert.match(await page.textContent('#trace-reject'), /timestamp/);
}

test('pipeline charts draw from real data after a load', async () => {
  const { page } = sessions.boss;
  await page.click('nav.top a[href="/ops/pipeline"]');
  const pm = await chartDrawn(page, '#chart-per-minute');
  assert.ok(pm.points > 0);
  await chartDrawn(page, '#chart-rejects');
  await page.waitForSelector('#stream table');
});

test('rollups page shows a failed rollup and the ones it blocked', async () => {
  try {
    herdCmd(['rollups', 'run', '--all', '--dir', rollupDir, '--database-url', db.url]);
  } catch {} // exits non-zero: a rollup failed
  const { page } = sessions.boss;
  await page.click('nav.top a[href="/ops/rollups"]');
  await page.waitForSelector('#rollup-graph');
  assert.equal(await page.getAttribute('#rollup-graph .node[data-name$="fragile_counts"]', 'data-state'), 'failed');
  assert.equal(await page.getAttribute('#rollup-graph .node[data-name$="built_on_fragile"]', 'data-state'), 'blocked');
  assert.match(await page.textContent('#rollups tr[data-name$="fragile_counts"] .blocks'), /built_on_fragile/);
  assert.match(await page.textContent('#rollups tr[data-name$="fragile_counts"]'), /division by zero/);
  assert.equal(await page.getAttribute('#rollup-graph .node[data-name$="steady_counts"]', 'data-state'), 'ok');
});

test('sources: the operator creates one, its key is shown once and works, a rate limit is set, and revoking stops it', async () => {
  const { page } = sessions.boss;
  page.on('dialog', (d) => d.accept());
  await page.click('nav.top a[href="/ops/sources"]');
  const name = `backend_${tag}`;
  await page.fill('#source-name', name);
  await page.selectOption('#source-kind', 'server');
  await page.click('form.toolbar button[type=submit]');
  const key = (await page.textContent('#write-key', { timeout: 10000 })).trim();
  assert.ok(key.length >= 16, key);
  await page.waitForSelector(`#sources tr[data-name="${name}"]`);
  const ev = () => send(herd.url, key, [{ type: 'track', event: 'From Backend', userId: 'b1', messageId: randomUUID() }]);
  await until('the new key to work', async () => (await ev()).status === 200);

  await page.click(`#sources tr[data-name="${name}"] button:has-text("Rate limit")`);
  await page.fill('#limit-rate', '25');
  await page.click('form.panel button[type=submit]');
  await page.waitForSelector(`#sources tr[data-name="${name}"] td:has-text("25/s")`);

  await page.click(`#sources tr[data-name="${name}"] button.danger`);
  await page.waitForSelector(`#sources tr[data-name="${name}"] td:has-text("revoked")`);
  await until('the revoked key to be refused', async () => (await ev()).status === 401, 10000);
  await page.reload();
  assert.equal(await page.locator('#write-key').count(), 0, 'the key is not shown again');
});

test('a state-changing request without the CSRF token is refused', async () => {
  const { page } = sessions.bob;
  const r = await page.evaluate(async () => {
    const res = await fetch('/api/query', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ sql: 'select 1' }) });
    return { status: res.status, body: await res.json() };
  });
  assert.equal(r.status, 403);
  assert.equal(r.body.error, 'missing or wrong CSRF token');
});

test('a running query is cancelled with Cancel, and Postgres says so', async () => {
  const { page } = sessions.ana;
  await page.goto(herd.console + '/sql');
  await page.click('.cm-content');
  await page.keyboard.press('Control+a');
  await page.keyboard.insertText('select pg_sleep(60)');
  await page.click('#run');
  await page.waitForSelector('#cancel:not([disabled])');
  const started = Date.now();
  await page.click('#cancel');
  await page.waitForSelector('#results .error', { timeout: 10000 });
  assert.match(await page.textContent('#results .error'), /canceling statement due to user request/);
  assert.ok(Date.now() - started < 10000);
});

test('a page whose session ended elsewhere shows the sign-in page at its next request', async () => {
  const { context } = sessions.bob;
  const other = await context.newPage();
  await other.goto(herd.console + '/queries');
  await other.waitForSelector('#saved-queries');
  const r = await other.evaluate(async () => (await fetch('/api/logout', { method: 'POST', headers: { 'X-CSRF-Token': (await (await fetch('/api/session')).json()).csrf } })).status);
  assert.equal(r, 204);
  const { page } = sessions.bob;
  await page.goto(herd.console + '/sql');
  await page.waitForSelector('form.login');
  await other.click('nav.top a[href="/sql"]');
  await other.waitForSelector('form.login');
  await other.close();
});

test('sign-out returns to the sign-in page and the session is gone', async () => {
  const { page } = sessions.ana;
  await page.goto(herd.console + '/sql');
  await runSQL(page, "select 'ana-private-result' as note");
  await page.click('nav.top a[href="/queries"]');
  await page.click('nav.top a[href="/sql"]');
  await page.waitForSelector('#results .grid-wrap >> text=ana-private-result'); // kept while signed in
  await page.click('nav.top .signout');
  await page.waitForSelector('form.login');
  assert.equal(new URL(page.url()).pathname, '/login');
  const r = await page.evaluate(async () => (await fetch('/api/session')).status);
  assert.equal(r, 401);

  // the next person at this browser (same page, no reload) sees nothing of
  // the last one's work
  await page.fill('#login-user', boss.user);
  await page.fill('#login-password', boss.password);
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('nav.top .user');
  await page.click('nav.top a[href="/sql"]');
  await page.waitForSelector('.cm-content');
  assert.doesNotMatch(await page.textContent('main'), /ana-private-result/);

  await page.click('nav.top .signout');
  await page.waitForSelector('form.login');
  await page.goto(`${herd.console}/q/${SAVED}`);
  await page.waitForSelector('form.login');
  assert.equal(await page.locator('.snapshot').count(), 0);
});

test('repeated wrong passwords are rate-limited and the sign-in page says so', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(herd.console + '/login');
  let text = '';
  for (let i = 0; i < 30 && !/Too many/.test(text); i++) {
    await page.fill('#login-user', `nobody_${tag}`);
    await page.fill('#login-password', 'wrong' + i);
    await page.click('form.login button[type=submit]');
    await page.waitForSelector('form.login .error:not([hidden])');
    text = await page.textContent('form.login .error');
    await page.evaluate(() => (document.querySelector('form.login .error').hidden = true));
  }
  assert.match(text, /Too many sign-in attempts/);
  await context.close();
});

test('no page threw or broke the content security policy', async () => {
  for (const [who, s] of Object.entries(sessions)) assert.deepEqual(s.errors, [], `${who}'s pages`);
});
