// Operator pages (members of herd_admin): live events, trace, pipeline,
// rollups, usage, loaders and sources.
import { get, post } from './api.js';
import { clear, empty, errorBox, fmtAgo, fmtBytes, fmtMs, fmtNum, fmtTime, h } from './dom.js';
import { chartView } from './chart.js';
import { link, navigate, onLeave } from './main.js';

const MAX_LIVE = 300;
const REFRESH_MS = 5000;

function page(title, hint, ...children) {
  document.title = `${title} — herd console`;
  return h('div', { class: 'page' }, h('h1', {}, title), hint ? h('p', { class: 'hint' }, hint) : null, ...children);
}

function json(v) {
  return h('pre', { class: 'json' }, v === undefined ? '' : JSON.stringify(v, null, 2));
}

const FIRST = ['message_id', 'type', 'event', 'name', 'user_id', 'anonymous_id', 'timestamp', 'received_at', 'loaded_at', 'source_id', 'properties', 'traits', 'context'];
const rank = (k) => (FIRST.includes(k) ? FIRST.indexOf(k) : FIRST.length);

// kv shows a row's columns as a two-column table: the usual ones first,
// then the rest by name, the empty (NULL) ones folded away at the end.
function kv(obj) {
  const entries = Object.entries(obj || {}).sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
  const row = ([k, v]) => h('tr', {}, h('th', {}, k), h('td', { class: v === null ? 'null' : null }, v === null ? 'NULL' : typeof v === 'object' ? JSON.stringify(v) : String(v)));
  const nulls = entries.filter(([, v]) => v === null);
  return h('div', {},
    h('table', { class: 'kv' }, h('tbody', {}, entries.filter(([, v]) => v !== null).map(row))),
    nulls.length ? h('details', { class: 'nulls' }, h('summary', {}, `${nulls.length} empty columns: ${nulls.map(([k]) => k).join(', ')}`),
      h('table', { class: 'kv' }, h('tbody', {}, nulls.map(row)))) : null);
}

// ---- Live events

export function livePage() {
  const sources = h('select', { id: 'live-source', 'aria-label': 'Source', onchange: () => connect() }, h('option', { value: '' }, 'All sources'));
  const state = h('span', { class: 'status', id: 'live-state', dataset: { state: 'connecting' } }, 'Connecting…');
  const pause = h('button', { type: 'button', id: 'live-pause', onclick: () => { paused = !paused; pause.textContent = paused ? 'Resume' : 'Pause'; } }, 'Pause');
  const list = h('tbody', { id: 'live-events' });
  const detail = h('div', { class: 'live-detail', id: 'live-detail' }, empty('Click an event to see its raw body beside its stored row, or its reject reason.'));
  const none = empty('Waiting for events… send one to the collector and it appears here as soon as it is accepted.');
  let es = null;
  let retry = 0;
  let paused = false;
  let selected = null;

  get('/api/sources').then((r) => {
    for (const s of sourceList(r)) sources.append(h('option', { value: s.name }, s.name));
  }).catch(() => {});

  function connect() {
    es?.close();
    list.replaceChildren();
    none.hidden = false;
    state.dataset.state = 'connecting';
    state.textContent = 'Connecting…';
    const src = sources.value;
    es = new EventSource('/api/live' + (src ? '?source=' + encodeURIComponent(src) : ''));
    es.onopen = () => {
      state.dataset.state = 'open';
      state.textContent = 'Live: new events appear at the top.';
    };
    es.onerror = () => {
      state.dataset.state = 'retrying';
      if (es.readyState !== EventSource.CLOSED) {
        state.textContent = 'Disconnected; reconnecting…';
        return;
      }
      // refused (503, 429, or the session ended): the browser gives up, so
      // try again in a few seconds; a 401 shows the sign-in page
      state.textContent = 'The live stream is unavailable; trying again in 5 s…';
      clearTimeout(retry);
      retry = setTimeout(() => get('/api/session').then(connect, () => {}), 5000);
    };
    es.addEventListener('accepted', (e) => add('accepted', JSON.parse(e.data)));
    es.addEventListener('rejected', (e) => add('rejected', JSON.parse(e.data)));
    es.addEventListener('dropped', (e) => {
      const d = JSON.parse(e.data);
      list.prepend(h('tr', { class: 'dropped' }, h('td', { colSpan: 5 }, `${fmtNum(d.count)} events not shown (too many per second to list)`)));
    });
  }

  function add(kind, ev) {
    if (paused) return;
    none.hidden = true;
    const tr = h('tr', {
      class: kind, tabIndex: 0, dataset: { messageId: ev.messageId || '' },
      onclick: () => select(tr, kind, ev),
      onkeydown: (e) => e.key === 'Enter' && select(tr, kind, ev),
    },
    h('td', {}, fmtTime(ev.received_at || ev.at || new Date().toISOString()).slice(11)),
    h('td', {}, ev.source || ''),
    h('td', {}, kind === 'accepted' ? h('span', { class: 'ok' }, 'accepted') : h('span', { class: 'bad' }, 'rejected')),
    h('td', {}, kind === 'accepted' ? (ev.type || '') + (ev.event || ev.body?.event ? ' · ' + (ev.event || ev.body.event) : '') : ev.reason),
    h('td', { class: 'mono' }, ev.messageId || ''));
    list.prepend(tr);
    while (list.children.length > MAX_LIVE) list.lastChild.remove();
  }

  async function select(tr, kind, ev) {
    selected?.classList.remove('selected');
    selected = tr;
    tr.classList.add('selected');
    const stored = h('div', {}, kind === 'rejected' ? h('div', { class: 'error', id: 'reject-reason' }, h('strong', {}, 'Rejected: '), ev.reason) : h('p', { class: 'loading' }, 'Looking up its row…'));
    clear(detail,
      h('div', { class: 'detail-head' }, h('code', {}, ev.messageId || '(no messageId)'), ' ', ev.messageId ? link('/ops/trace?id=' + encodeURIComponent(ev.messageId), 'Trace it') : null),
      h('div', { class: 'side-by-side' },
        h('div', {}, h('h3', {}, 'Raw body'), json(ev.body)),
        h('div', {}, h('h3', {}, kind === 'rejected' ? 'Why it was rejected' : 'Stored row in herd.events'), stored)));
    if (kind !== 'accepted' || !ev.messageId) return;
    // the writer commits in batches: the row can lag the 200 by a moment
    for (let i = 0; i < 10 && selected === tr; i++) {
      try {
        const t = await get('/api/trace/' + encodeURIComponent(ev.messageId));
        if (t.row) return clear(stored, h('div', { id: 'stored-row' }, kv(t.row)));
        if (t.rejected) return clear(stored, h('div', { class: 'error' }, 'Rejected: ', t.rejected.reason));
        clear(stored, h('p', { class: 'loading' }, 'Accepted; not written to herd.events yet…'));
      } catch (err) {
        return clear(stored, errorBox(err));
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  onLeave(() => (clearTimeout(retry), es?.close()));
  connect();
  return page('Live events', 'Every event as the collector accepts or rejects it. Click one to compare its raw body with the row stored in herd.events.',
    h('div', { class: 'toolbar' }, h('label', {}, 'Source ', sources), pause, h('button', { type: 'button', onclick: () => { list.replaceChildren(); none.hidden = false; } }, 'Clear'), state),
    h('div', { class: 'live' },
      h('div', { class: 'live-list' },
        h('table', { class: 'list' }, h('thead', {}, h('tr', {}, ['Time', 'Source', 'Status', 'Type / reason', 'messageId'].map((t) => h('th', {}, t)))), list),
        none),
      detail));
}

function sourceList(r) {
  return Array.isArray(r) ? r : r?.sources || [];
}

// ---- Trace

export function tracePage() {
  const input = h('input', { id: 'trace-id', type: 'search', size: 44, placeholder: 'messageId, e.g. 0b6f3c1e-…', spellcheck: false, value: new URLSearchParams(location.search).get('id') || '' });
  const out = h('div', { id: 'trace-result' });
  async function trace() {
    const id = input.value.trim();
    if (!id) return;
    history.replaceState(null, '', '/ops/trace?id=' + encodeURIComponent(id));
    clear(out, h('p', { class: 'loading' }, 'Tracing…'));
    try {
      const t = await get('/api/trace/' + encodeURIComponent(id));
      clear(out, traceView(t));
    } catch (err) {
      clear(out, errorBox(err));
    }
  }
  if (input.value) setTimeout(trace, 0);
  return page('Trace', 'Paste a messageId to see where that event is: accepted, in the stream, in herd.events, in the lake — or why it was rejected.',
    h('form', { class: 'toolbar', onsubmit: (e) => (e.preventDefault(), trace()) }, input, h('button', { type: 'submit', class: 'primary' }, 'Trace')),
    out);
}

function step(name, ok, what, body) {
  return h('li', { class: 'step ' + (ok ? 'done' : 'missing'), dataset: { step: what } },
    h('span', { class: 'mark', 'aria-hidden': 'true' }, ok ? '✓' : '–'),
    h('div', {}, h('h3', {}, name), body));
}

function traceView(t) {
  if (!t.accepted && !t.rejected && !t.row && !t.lake) return empty(`No trace of ${t.messageId}: the collector never accepted or rejected an event with this messageId (or it is older than what herd keeps).`);
  const steps = [];
  if (t.rejected) steps.push(step('Rejected', false, 'rejected', h('div', { class: 'error', id: 'trace-reject' }, h('p', {}, h('strong', {}, t.rejected.reason)), h('small', {}, `at ${fmtTime(t.rejected.at)} from source ${t.rejected.source || '?'}`))));
  if (t.accepted || !t.rejected) {
    steps.push(step('Accepted into the stream', !!t.accepted, 'stream', t.accepted ? h('p', {}, `at ${fmtTime(t.accepted.at)}, stream sequence `, h('code', { id: 'trace-seq' }, String(t.accepted.stream_seq)), `, source ${t.accepted.source}`) : h('p', {}, 'not in the stream (it may have aged out)')));
    steps.push(step('Row in herd.events', !!t.row, 'row', t.row ? kv(t.row) : h('p', {}, 'not written yet')));
    steps.push(step('In the lake', !!t.lake, 'lake', t.lake ? h('p', {}, 'file ', h('code', { id: 'trace-lake' }, t.lake.file), t.lake.partition ? ` (partition ${t.lake.partition})` : '') : h('p', { id: 'trace-lake-note' }, t.lake_note || 'not archived yet (the archiver closes lake files periodically)')));
  }
  return h('ol', { class: 'trace' }, steps);
}

// ---- Pipeline

export function pipelinePage() {
  const perMinute = h('div', { id: 'chart-per-minute' });
  const rejects = h('div', { id: 'chart-rejects' });
  const stream = h('div', { id: 'stream' });
  const lagChart = h('div', { id: 'chart-lag' });
  const updated = h('span', { class: 'status', id: 'pipeline-updated' }, 'Loading…');
  const lagHistory = []; // [time, consumer, lag] sampled while the page is open
  let charts = {};
  let timer = 0;

  function keep(el, key, columns, rows, none) {
    if (!rows.length) {
      charts[key] = null;
      return clear(el, empty(none));
    }
    if (charts[key]) return charts[key].update(rows);
    charts[key] = chartView(columns, rows, { height: 220 });
    clear(el, charts[key]);
  }

  async function refresh() {
    try {
      const p = await get('/api/pipeline');
      const pm = fillMinutes(p.per_minute || []);
      keep(perMinute, 'pm', [{ name: 'minute', type: 'timestamptz' }, { name: 'source', type: 'text' }, { name: 'events', type: 'bigint' }], pm, 'No events in the last 24 hours.');
      const rj = (p.rejects || []).map((r) => [r.reason, r.count]);
      keep(rejects, 'rj', [{ name: 'reason', type: 'text' }, { name: 'rejects', type: 'bigint' }], rj, 'No rejects in the last 24 hours.');
      const s = p.stream || { consumers: [] };
      const now = new Date().toISOString();
      for (const c of s.consumers || []) lagHistory.push([now, c.name, c.lag_seconds ?? 0]);
      while (lagHistory.length > 2000) lagHistory.shift();
      clear(stream,
        p.stream ? null : h('p', { class: 'notice' }, p.stream_error || 'The stream is not reachable from this console (herd console runs without NATS).'),
        h('dl', { class: 'meta' }, h('dt', {}, 'Messages in the stream'), h('dd', { id: 'stream-messages' }, fmtNum(s.messages)), h('dt', {}, 'Bytes'), h('dd', {}, fmtBytes(s.bytes))),
        (s.consumers || []).length ? h('table', { class: 'list' }, h('thead', {}, h('tr', {}, ['Consumer', 'Pending', 'Awaiting ack', 'Lag'].map((t) => h('th', {}, t)))),
          h('tbody', {}, s.consumers.map((c) => h('tr', {}, h('td', {}, c.name), h('td', { class: 'num' }, fmtNum(c.pending)), h('td', { class: 'num' }, fmtNum(c.ack_pending)), h('td', { class: 'num' }, c.lag_seconds == null ? '—' : fmtMs(c.lag_seconds * 1000)))))) : empty('No consumers.'));
      keep(lagChart, 'lag', [{ name: 'time', type: 'timestamptz' }, { name: 'consumer', type: 'text' }, { name: 'lag_seconds', type: 'float8' }], lagHistory, 'Lag is sampled while this page is open.');
      updated.textContent = `Updated ${fmtTime(now).slice(11)}; refreshes every ${REFRESH_MS / 1000} s.`;
    } catch (err) {
      updated.textContent = 'Refresh failed: ' + err.message;
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }
  onLeave(() => clearTimeout(timer));
  refresh();
  return page('Pipeline', null, h('div', { class: 'toolbar' }, updated),
    h('section', { class: 'panel' }, h('h2', {}, 'Events per minute by source (last 24 h)'), perMinute),
    h('div', { class: 'two' },
      h('section', { class: 'panel' }, h('h2', {}, 'Stream and consumers'), stream),
      h('section', { class: 'panel' }, h('h2', {}, 'Rejects by reason (last 24 h)'), rejects)),
    h('section', { class: 'panel' }, h('h2', {}, 'Writer and archiver lag (seconds, since this page opened)'), lagChart));
}

// fillMinutes lists every minute from the first with events to now for
// each source, with 0 where none arrived, so lines fall to zero in quiet
// minutes instead of bridging them.
function fillMinutes(perMinute) {
  if (!perMinute.length) return [];
  const have = new Map();
  const sources = new Set();
  let first = Infinity;
  for (const r of perMinute) {
    const t = Math.floor(Date.parse(r.minute) / 60000);
    first = Math.min(first, t);
    sources.add(r.source);
    have.set(t + '|' + r.source, r.events);
  }
  const now = Math.floor(Date.now() / 60000);
  first = Math.max(Math.min(first, now - 59), now - 1440); // at least the last hour
  const rows = [];
  for (let t = first; t <= now; t++) {
    const minute = new Date(t * 60000).toISOString();
    for (const s of sources) rows.push([minute, s, have.get(t + '|' + s) || 0]);
  }
  return rows;
}

// ---- Rollups

export function rollupsPage() {
  const out = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  get('/api/rollups').then((r) => {
    const rs = r.rollups || [];
    if (!rs.length) return clear(out, empty('No rollups defined. `herd rollups add` creates one.'));
    clear(out, rollupGraph(rs), rollupTable(rs));
  }).catch((err) => clear(out, errorBox(err)));
  return page('Rollups', 'Each rollup after the ones it depends on. A failed rollup blocks the rollups built on it until it succeeds.', out);
}

function rollupState(r) {
  if (r.blocked_by) return 'blocked';
  if (!r.last_run) return 'never';
  return r.last_run.error ? 'failed' : 'ok';
}

function rollupGraph(rs) {
  const by = new Map(rs.map((r) => [r.name, r]));
  const depth = new Map();
  const level = (n, seen = new Set()) => {
    if (depth.has(n)) return depth.get(n);
    if (seen.has(n)) return 0; // a cycle: draw it rather than loop
    seen.add(n);
    const deps = (by.get(n)?.depends_on || []).filter((d) => by.has(d));
    const d = deps.length ? 1 + Math.max(...deps.map((x) => level(x, seen))) : 0;
    depth.set(n, d);
    return d;
  };
  rs.forEach((r) => level(r.name));
  const layers = [];
  for (const r of rs) (layers[depth.get(r.name)] ||= []).push(r);
  const W = 190, H = 46, GX = 70, GY = 20;
  const pos = new Map();
  layers.forEach((l, x) => l.forEach((r, y) => pos.set(r.name, { x: 10 + x * (W + GX), y: 10 + y * (H + GY) })));
  const width = 20 + layers.length * (W + GX) - GX;
  const height = 20 + Math.max(...layers.map((l) => l.length)) * (H + GY) - GY;
  const svg = h('svg', { class: 'graph', id: 'rollup-graph', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Rollup dependency graph' });
  svg.append(h('defs', {}, h('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto' }, h('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#94a3b8' }))));
  for (const r of rs) {
    for (const d of r.depends_on || []) {
      const a = pos.get(d), b = pos.get(r.name);
      if (!a || !b) continue;
      svg.append(h('path', { class: 'edge', d: `M${a.x + W},${a.y + H / 2} C${a.x + W + GX / 2},${a.y + H / 2} ${b.x - GX / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}`, 'marker-end': 'url(#arrow)' }));
    }
  }
  for (const r of rs) {
    const p = pos.get(r.name);
    const st = rollupState(r);
    const sub = st === 'failed' ? 'failed ' + fmtAgo(r.last_run.started_at) : st === 'blocked' ? 'blocked by ' + r.blocked_by : st === 'never' ? 'never ran' : `ok ${fmtAgo(r.last_run.started_at)}, ${fmtMs(r.last_run.duration_ms)}`;
    svg.append(h('g', { class: 'node ' + st, dataset: { name: r.name, state: st }, transform: `translate(${p.x},${p.y})` },
      h('title', {}, `${r.name}: ${sub}${r.last_run?.error ? '\n' + r.last_run.error : ''}`),
      h('rect', { width: W, height: H, rx: 6 }),
      h('text', { x: 10, y: 19, class: 'name' }, r.name.length > 26 ? r.name.slice(0, 25) + '…' : r.name),
      h('text', { x: 10, y: 36, class: 'sub' }, sub.length > 30 ? sub.slice(0, 29) + '…' : sub)));
  }
  return h('div', { class: 'graph-wrap' }, svg, h('p', { class: 'legend' },
    ['ok', 'failed', 'blocked', 'never'].map((s) => h('span', { class: 'key ' + s }, { ok: 'succeeded', failed: 'failed', blocked: 'blocked', never: 'never ran' }[s]))));
}

function rollupTable(rs) {
  const blocks = new Map();
  for (const r of rs) if (r.blocked_by) (blocks.get(r.blocked_by) || blocks.set(r.blocked_by, []).get(r.blocked_by)).push(r.name);
  return h('table', { class: 'list', id: 'rollups' },
    h('thead', {}, h('tr', {}, ['Rollup', 'Depends on', 'Last run', 'Duration', 'State', 'Blocks'].map((t) => h('th', {}, t)))),
    h('tbody', {}, rs.map((r) => h('tr', { dataset: { name: r.name, state: rollupState(r) } },
      h('td', {}, r.name),
      h('td', {}, (r.depends_on || []).join(', ') || '—'),
      h('td', { title: fmtTime(r.last_run?.started_at) }, r.last_run ? fmtAgo(r.last_run.started_at) : 'never'),
      h('td', { class: 'num' }, r.last_run ? fmtMs(r.last_run.duration_ms) : ''),
      h('td', {}, r.blocked_by ? h('span', { class: 'warn' }, 'blocked by ' + r.blocked_by) : r.last_run?.error ? h('span', { class: 'bad' }, 'failed: ' + r.last_run.error) : r.last_run ? h('span', { class: 'ok' }, 'ok') : 'never ran'),
      h('td', { class: 'blocks' }, (blocks.get(r.name) || []).join(', '))))));
}

// ---- Usage

export function usagePage() {
  const out = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  get('/api/usage').then((u) => {
    const schemas = (u.schemas || []).slice().sort((a, b) => b.bytes - a.bytes);
    const roles = (u.roles || []).slice().sort((a, b) => b.total_ms - a.total_ms);
    const maxB = Math.max(1, ...schemas.map((s) => s.bytes));
    const maxT = Math.max(1, ...roles.map((r) => r.total_ms));
    clear(out, u.note ? h('p', { class: 'notice' }, u.note) : null, h('div', { class: 'two' },
      h('section', { class: 'panel' }, h('h2', {}, 'Size per schema'), schemas.length ? h('table', { class: 'list' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Schema'), h('th', {}, 'Size'), h('th', {}))),
        h('tbody', {}, schemas.map((s) => h('tr', {}, h('td', {}, s.name), h('td', { class: 'num' }, fmtBytes(s.bytes)), h('td', { class: 'barcell' }, h('span', { class: 'bar', style: { width: (100 * s.bytes) / maxB + '%' } })))))) : empty('No schemas.')),
      h('section', { class: 'panel' }, h('h2', {}, 'Query time per role'), roles.length ? h('table', { class: 'list' },
        h('thead', {}, h('tr', {}, ['Role', 'Calls', 'Total time', 'Per call', ''].map((t) => h('th', {}, t)))),
        h('tbody', {}, roles.map((r) => h('tr', {}, h('td', {}, r.role), h('td', { class: 'num' }, fmtNum(r.calls)), h('td', { class: 'num' }, fmtMs(r.total_ms)), h('td', { class: 'num' }, r.calls ? fmtMs(r.total_ms / r.calls) : '—'), h('td', { class: 'barcell' }, h('span', { class: 'bar', style: { width: (100 * r.total_ms) / maxT + '%' } })))))) : empty('No query statistics (pg_stat_statements may not be enabled).'))));
  }).catch((err) => clear(out, errorBox(err)));
  return page('Usage', 'The numbers analysts use to self-regulate: what each schema stores and how much query time each role spends.', out);
}

// ---- Loaders

function genericTable(rows, none) {
  if (!rows || !rows.length) return empty(none);
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return h('table', { class: 'list' }, h('thead', {}, h('tr', {}, cols.map((c) => h('th', {}, c.replace(/_/g, ' '))))),
    h('tbody', {}, rows.map((r) => h('tr', {}, cols.map((c) => {
      const v = r[c];
      if (/(_at|_sync|time)$/.test(c) && typeof v === 'string') return h('td', { title: v }, fmtAgo(v));
      if (/lag_seconds$/.test(c) && typeof v === 'number') return h('td', { class: 'num' }, fmtMs(v * 1000));
      return h('td', {}, v == null ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v));
    })))));
}

export function loadersPage() {
  const out = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  get('/api/loaders').then((l) => clear(out,
    h('section', { class: 'panel' }, h('h2', {}, 'Replication'), genericTable(l.replication, 'No replication configured.')),
    h('section', { class: 'panel' }, h('h2', {}, 'SaaS syncs'), genericTable(l.saas, 'No SaaS syncs configured.')))).catch((err) => clear(out, errorBox(err)));
  return page('Loaders', 'Replication from other databases and SaaS syncs: their state and how far behind they are.', out);
}

// ---- Sources

export function sourcesPage() {
  const out = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  const created = h('div', { id: 'source-created' });
  const msg = h('div');
  const name = h('input', { id: 'source-name', required: true, placeholder: 'web, backend, mobile…', spellcheck: false });
  const kind = h('select', { id: 'source-kind', 'aria-label': 'Kind' },
    h('option', { value: 'server' }, 'server (secret write key)'),
    h('option', { value: 'browser' }, 'browser (public write key)'));
  const origins = h('input', { id: 'source-origins', placeholder: 'allowed origins, comma-separated (browser)', spellcheck: false, size: 34 });

  function load() {
    get('/api/sources').then((r) => {
      const list = sourceList(r);
      if (!list.length) return clear(out, empty('No sources yet. Create one above; its write key is shown once.'));
      clear(out, h('table', { class: 'list', id: 'sources' },
        h('thead', {}, h('tr', {}, ['Name', 'Kind', 'Allowed origins', 'Rate limit', 'Created', 'State', ''].map((t) => h('th', {}, t)))),
        h('tbody', {}, list.map((s) => h('tr', { dataset: { name: s.name } },
          h('td', {}, s.name),
          h('td', {}, s.kind || ''),
          h('td', {}, (s.allowed_origins || []).join(', ') || (s.kind === 'browser' ? 'any' : '—')),
          h('td', { class: 'num' }, s.rate_limit == null ? 'default' : s.rate_limit === 0 ? 'unlimited' : `${fmtNum(s.rate_limit)}/s`),
          h('td', { title: fmtTime(s.created_at) }, fmtAgo(s.created_at)),
          h('td', {}, s.revoked ? h('span', { class: 'bad' }, 'revoked') : h('span', { class: 'ok' }, 'active')),
          h('td', { class: 'actions' },
            s.revoked ? null : h('button', { type: 'button', onclick: () => limits(s) }, 'Rate limit…'),
            s.revoked ? null : h('button', { type: 'button', class: 'danger', onclick: () => revoke(s.name) }, 'Revoke')))))));
    }).catch((err) => clear(out, errorBox(err)));
  }

  async function revoke(n) {
    if (!confirm(`Revoke source ${n}? Its write key stops working within a second.`)) return;
    try {
      await post('/api/sources/' + encodeURIComponent(n) + '/revoke');
      load();
    } catch (err) {
      clear(msg, errorBox(err));
    }
  }

  function limits(s) {
    const rate = h('input', { type: 'number', min: 0, step: 'any', id: 'limit-rate', value: s.rate_limit ?? '', placeholder: 'empty: the collector default' });
    clear(msg, h('form', {
      class: 'panel',
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await post('/api/sources/' + encodeURIComponent(s.name) + '/limits', { rate_limit: rate.value === '' ? null : +rate.value });
          clear(msg, h('p', { class: 'notice' }, `Rate limit of ${s.name} saved.`));
          load();
        } catch (err) {
          msg.append(errorBox(err));
        }
      },
    }, h('h2', {}, `Rate limit of ${s.name}`),
    h('label', { for: 'limit-rate' }, 'Events per second (0: unlimited; empty: the collector\'s --rate-limit)'), rate,
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, 'Save'), h('button', { type: 'button', onclick: () => clear(msg) }, 'Close'))));
    rate.focus();
  }

  const form = h('form', {
    class: 'toolbar',
    onsubmit: async (e) => {
      e.preventDefault();
      clear(msg);
      try {
        const allowed = origins.value.split(',').map((o) => o.trim()).filter(Boolean);
        const r = await post('/api/sources', { name: name.value.trim(), kind: kind.value, allowed_origins: allowed });
        const keyEl = h('pre', { class: 'secret', id: 'write-key' }, r.write_key);
        const copy = h('button', {
          type: 'button',
          onclick: async () => {
            try {
              await navigator.clipboard.writeText(r.write_key);
              copy.textContent = 'Copied';
            } catch {
              // no clipboard API outside https/localhost: select it for Ctrl+C
              getSelection().selectAllChildren(keyEl);
              copy.textContent = 'Selected: press Ctrl+C';
            }
          },
        }, 'Copy');
        clear(created, h('div', { class: 'notice' }, h('p', {}, `Source ${r.name} created. Its write key is shown only now; copy it:`), keyEl, copy));
        name.value = '';
        origins.value = '';
        load();
      } catch (err) {
        clear(msg, errorBox(err));
      }
    },
  }, h('label', { for: 'source-name' }, 'New source'), name, kind, origins, h('button', { type: 'submit', class: 'primary' }, 'Create'));
  load();
  return page('Sources', 'Each source sends events with its own write key. Revoking a source stops its key at once.', form, created, msg, out);
}
