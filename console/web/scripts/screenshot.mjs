// Takes the README's picture of the console (docs/console.png): a real
// `herd up` on a scratch database, a few hundred events, an analyst signed
// in, a query with its chart. Debian's Chromium through playwright-core.
//   HERD_BIN=bin/herd node console/web/scripts/screenshot.mjs [OUT.png]
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { addAnalyst, createDatabase, launchBrowser, root, send, signIn, startHerd, tag, until } from '../e2e/harness.js';

const out = process.argv[2] || join(root, '../../docs/console.png');
const KEY = 'screenshot_write_key';
const db = createDatabase();
const herd = await startHerd({ databaseUrl: db.url, writeKey: KEY });
let browser;
try {
  const who = addAnalyst(db.url, `maya_${tag}`);
  const names = ['Page Viewed', 'Signed Up', 'Plan Chosen', 'Invite Sent'];
  const batch = [];
  for (let i = 0; i < 600; i++) {
    const minutesAgo = Math.floor(Math.random() * 180);
    batch.push({ type: 'track', event: names[Math.min(3, Math.floor(Math.random() ** 2 * 4))], userId: 'u' + (i % 90), messageId: randomUUID(),
      timestamp: new Date(Date.now() - minutesAgo * 60000).toISOString() });
  }
  for (let i = 0; i < batch.length; i += 100) await send(herd.url, KEY, batch.slice(i, i + 100));
  await until('events in herd.events', () => db.query('select 1 from herd.events').length >= 600, 30000);
  browser = await launchBrowser();
  const { page } = await signIn(browser, herd.console, who);
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.click('.cm-content');
  await page.keyboard.press('Control+a');
  await page.keyboard.insertText(`-- events per 10 minutes, by name\nselect date_bin('10 minutes', "timestamp", timestamptz '2000-01-01') as at,\n       event, count(*) as events\nfrom herd.events\ngroup by 1, 2\norder by 1`);
  await page.keyboard.press('Control+Enter');
  await page.waitForSelector('#results .chart[data-points]:not([data-points="0"]) canvas');
  await page.evaluate(() => {
    for (const d of document.querySelectorAll('.schema-tree .table-node')) if (d.querySelector('.ins').textContent === 'events') d.open = true;
  });
  await page.screenshot({ path: out });
  console.log('wrote', out);
} finally {
  await browser?.close();
  await herd.stop();
  db.drop();
}
