// Saved queries: the list, and /q/NAME with the latest snapshot (or an
// earlier one), its chart, its SQL and who saved it.
import { get, post } from './api.js';
import { clear, empty, errorBox, fmtAgo, fmtMs, fmtNum, fmtTime, h } from './dom.js';
import { resultTable } from './table.js';
import { chartView } from './chart.js';
import { link, navigate } from './main.js';
import { openInWorkspace } from './workspace.js';

export function queriesPage() {
  document.title = 'Saved queries — herd console';
  const body = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  get('/api/queries').then((r) => {
    const qs = r.queries || [];
    if (!qs.length) return clear(body, empty('No saved queries yet. Write one in the SQL workspace and press Save.'));
    clear(body, h('table', { class: 'list', id: 'saved-queries' },
      h('thead', {}, h('tr', {}, ['Name', 'Saved by', 'Schedule', 'Last run', 'Duration', 'Rows', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, qs.map((q) => h('tr', {},
        h('td', {}, link('/q/' + encodeURIComponent(q.name), q.name)),
        h('td', {}, q.saved_by),
        h('td', {}, q.every || 'on demand'),
        h('td', { title: fmtTime(q.last_run?.started_at) }, q.last_run ? fmtAgo(q.last_run.started_at) : 'never'),
        h('td', { class: 'num' }, q.last_run ? fmtMs(q.last_run.duration_ms) : ''),
        h('td', { class: 'num' }, q.last_run?.rows != null ? fmtNum(q.last_run.rows) : ''),
        h('td', { class: 'error-cell' }, q.last_run?.error || ''))))));
  }).catch((err) => clear(body, errorBox(err)));
  return h('div', { class: 'page' }, h('h1', {}, 'Saved queries'), h('p', { class: 'hint' }, 'Each one has a link colleagues can open once signed in; it shows the latest snapshot, computed as the role that saved it.'), body);
}

export function savedQueryPage(name) {
  document.title = `${name} — herd console`;
  const pinned = new URLSearchParams(location.search).get('run');
  const body = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  const base = '/q/' + encodeURIComponent(name);
  const suffix = pinned ? '?run=' + encodeURIComponent(pinned) : '';

  function load() {
    get(base + '.json' + suffix).then(show).catch((err) => clear(body, errorBox(err),
      err.status === 404 ? h('div', { class: 'toolbar' }, h('button', {
        type: 'button', id: 'run-now',
        onclick: () => post('/api/queries/' + encodeURIComponent(name) + '/run').then(load, (e) => body.append(errorBox(e))),
      }, 'Run it now')) : null));
  }

  function show(q) {
    const run = q.run;
    const runs = q.runs || [];
    const runBtn = h('button', {
      type: 'button', id: 'run-now',
      onclick: async () => {
        runBtn.disabled = true;
        try {
          await post('/api/queries/' + encodeURIComponent(name) + '/run');
        } catch (err) {
          clear(msg, errorBox(err));
        }
        runBtn.disabled = false;
        if (pinned) navigate(base, { replace: true });
        else load();
      },
    }, 'Run now');
    const msg = h('div');
    clear(body,
      h('dl', { class: 'meta' },
        h('dt', {}, 'Saved by'), h('dd', { id: 'saved-by' }, q.saved_by),
        h('dt', {}, 'Schedule'), h('dd', {}, q.every || 'on demand'),
        h('dt', {}, 'Ran at'), h('dd', { id: 'ran-at' }, run ? `${fmtTime(run.started_at)} (${fmtAgo(run.started_at)})` : 'not yet'),
        run ? [h('dt', {}, 'Ran as'), h('dd', {}, run.run_as || q.saved_by), h('dt', {}, 'Took'), h('dd', {}, fmtMs(run.duration_ms))] : null),
      h('div', { class: 'toolbar' }, runBtn,
        h('button', { type: 'button', onclick: () => openInWorkspace(q.sql) }, 'Open in editor'),
        h('span', { class: 'sep' }),
        h('span', { class: 'label' }, 'Download'),
        h('a', { class: 'button', href: base + '.csv' + suffix, download: `${name}.csv` }, 'CSV'),
        h('a', { class: 'button', href: base + '.json' + suffix, download: `${name}.json` }, 'JSON')),
      msg,
      pinned && runs[0] && String(runs[0].id) !== pinned ? h('p', { class: 'notice' }, 'This is an earlier snapshot. ', link(base, 'Show the latest'), '.') : null,
      !run ? empty('This query has not run yet. Press Run now.') :
        run.error ? errorBox({ message: run.error }) :
          h('section', { class: 'results snapshot', dataset: { run: run.id } },
            h('p', { class: 'status' }, `${fmtNum(run.rows?.length ?? 0)} rows`),
            chartView(run.columns || [], run.rows || []),
            resultTable(run.columns || [], run.rows || [])),
      h('h2', {}, 'SQL'),
      h('pre', { class: 'sql', id: 'saved-sql' }, q.sql),
      h('h2', {}, 'Snapshots'),
      runs.length ? h('ol', { class: 'runs', id: 'snapshots' }, runs.map((r, i) => h('li', {},
        String(run?.id) === String(r.id) ? h('strong', {}, fmtTime(r.started_at)) : link(i === 0 ? base : `${base}?run=${encodeURIComponent(r.id)}`, fmtTime(r.started_at)),
        i === 0 ? ' (latest)' : '',
        r.rows != null && !r.error ? h('span', { class: 'muted' }, ` — ${fmtNum(r.rows)} rows`) : '',
        r.error ? h('span', { class: 'error-cell' }, ' failed: ' + r.error) : ''))) : empty('No snapshots yet.'));
  }
  load();
  return h('div', { class: 'page' }, h('h1', {}, h('span', { class: 'crumb' }, link('/queries', 'Saved queries'), ' / '), name), body);
}
