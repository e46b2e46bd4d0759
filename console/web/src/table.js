// A results table that renders only the rows in view (plus a margin), so
// 10,000 rows cost as much as forty: one fixed row height, spacer rows above
// and below, and column widths measured once from a sample.
import { h } from './dom.js';
import { refine } from './chart.js';

const ROW = 26; // px, must match .grid td height in app.css
const OVERSCAN = 10;

export function cellText(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

const isNumericType = (t) => /^(int|float|numeric|decimal|real|double|smallint|bigint|integer|money|oid)/i.test(t || '');

export function resultTable(columns, rows) {
  const widths = columns.map((c, i) => {
    let n = c.name.length + (c.type || '').length * 0.8 + 3;
    for (let r = 0; r < rows.length && r < 200; r++) {
      const t = cellText(rows[r][i]);
      n = Math.max(n, t === null ? 4 : Math.min(t.length, 60));
    }
    return Math.max(60, Math.min(420, n * 7.5 + 20));
  });
  const numeric = refine(columns, rows).map((c, i) => isNumericType(c.type) || (rows.length > 0 && typeof rows[0][i] === 'number'));
  const table = h('table', { class: 'grid' },
    h('colgroup', {}, widths.map((w) => h('col', { style: { width: w + 'px' } }))),
    h('thead', {}, h('tr', {}, columns.map((c, i) => h('th', { title: `${c.type || ''} — click to sort`, onclick: () => sortBy(i) }, c.name, h('span', { class: 'type' }, c.type || ''))))));
  table.style.width = widths.reduce((a, b) => a + b, 0) + 'px';
  const body = h('tbody');
  const top = h('tr', { class: 'spacer' });
  const bottom = h('tr', { class: 'spacer' });
  body.append(top, bottom);
  table.append(body);
  const wrap = h('div', { class: 'grid-wrap', tabIndex: 0, dataset: { rows: rows.length } }, table);
  // rows in view are kept in a pool and refilled on scroll, so scrolling
  // creates no elements: it only changes text
  const pool = [];
  let first = -1, last = -1;
  // view is rows in the order shown: as the query returned them, or sorted
  // by a column the reader clicked (again: descending, a third time: as returned)
  let view = rows;
  let sorted = { col: -1, dir: 0 };

  function sortBy(i) {
    const dir = sorted.col === i ? (sorted.dir === 1 ? -1 : sorted.dir === -1 ? 0 : 1) : 1;
    sorted = { col: i, dir };
    const ths = table.querySelectorAll('th');
    ths.forEach((th, k) => (k === i && dir ? th.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending') : th.removeAttribute('aria-sort')));
    if (!dir) view = rows;
    else {
      const key = numeric[i] ? (v) => (v === null || v === undefined ? null : Number(v)) : (v) => cellText(v);
      const keyed = rows.map((r, n) => [key(r[i]), n]);
      keyed.sort((a, b) => (a[0] === null ? (b[0] === null ? a[1] - b[1] : 1) : b[0] === null ? -1 : (a[0] < b[0] ? -dir : a[0] > b[0] ? dir : a[1] - b[1])));
      view = keyed.map(([, n]) => rows[n]);
    }
    first = last = -1;
    render();
  }

  function fill(tr, row) {
    for (let i = 0; i < columns.length; i++) {
      const td = tr.children[i];
      const t = cellText(row[i]);
      if (t === null) {
        td.className = 'null';
        td.textContent = 'NULL';
        td.removeAttribute('title');
        continue;
      }
      td.className = numeric[i] ? 'num' : '';
      td.textContent = t.length > 300 ? t.slice(0, 300) + '…' : t;
      if (t.length > 40) td.title = t.slice(0, 2000);
      else td.removeAttribute('title');
    }
  }

  function render() {
    const from = Math.max(0, Math.floor(wrap.scrollTop / ROW) - OVERSCAN);
    const to = Math.min(rows.length, Math.ceil((wrap.scrollTop + (wrap.clientHeight || 600)) / ROW) + OVERSCAN);
    if (from === first && to === last) return;
    first = from;
    last = to;
    const n = to - from;
    while (pool.length < n) pool.push(h('tr', {}, columns.map(() => h('td'))));
    for (let k = 0; k < n; k++) {
      fill(pool[k], view[from + k]);
      if (pool[k].parentNode !== body) body.insertBefore(pool[k], bottom);
    }
    for (let k = n; k < pool.length && pool[k].parentNode === body; k++) pool[k].remove();
    top.style.height = from * ROW + 'px';
    bottom.style.height = (rows.length - to) * ROW + 'px';
  }
  let pending = false;
  wrap.addEventListener('scroll', () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      render();
    });
  }, { passive: true });
  render();
  // the first render guessed the height; redo once the wrapper is laid out
  requestAnimationFrame(render);
  if (!rows.length) wrap.append(h('p', { class: 'empty' }, 'The query returned no rows.'));
  return wrap;
}

// A text cell that starts like a formula (= + - @, tab, carriage return)
// gets a leading ' so a spreadsheet shows it instead of evaluating it;
// numbers are written as they are.
export function csvSafe(t) {
  if (!/^[=+\-@\t\r]/.test(t) || /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) return t;
  return "'" + t;
}

export function toCSV(columns, rows) {
  const q = (v) => {
    let t = cellText(v);
    if (t === null) return '';
    t = csvSafe(t);
    return /[",\n\r]/.test(t) || /^\s|\s$/.test(t) ? '"' + t.replace(/"/g, '""') + '"' : t;
  };
  const lines = [columns.map((c) => q(c.name)).join(',')];
  for (const r of rows) lines.push(r.map(q).join(','));
  return lines.join('\r\n') + '\r\n';
}

export function toJSON(columns, rows) {
  return JSON.stringify(rows.map((r) => Object.fromEntries(columns.map((c, i) => [c.name, r[i]]))), null, 2) + '\n';
}
