// Charts drawn with uPlot from a result's shape: a time column makes a line
// (or area) chart, one series per number column or per value of a text
// column; a text column with a number makes a bar chart. The reader can
// switch the kind; "none" hides it.
import uPlot from 'uplot';
import { h } from './dom.js';

const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#475569', '#ea580c'];
const MAX_SERIES = 10;
const MAX_BARS = 60;

const isTime = (c) => /^(timestamp|date|timestamptz)/i.test(c.type || '');
const isNum = (c, rows, i) => /^(int|float|numeric|decimal|real|double|smallint|bigint|integer|money)/i.test(c.type || '') ||
  (!c.type && rows.some((r) => typeof r[i] === 'number'));
const isText = (c, rows, i) => /^(text|varchar|character|char|name|uuid|bool|citext)/i.test(c.type || '') ||
  (!c.type && rows.some((r) => typeof r[i] === 'string'));

const NUMERIC = /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
const DATE = /^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d(:?\d\d)?)?)?$/;

// refine gives text columns a type from their values: saved snapshots keep
// every value as text, so "42" and "2026-01-01" are told apart here.
export function refine(columns, rows) {
  return columns.map((c, i) => {
    if (c.type && c.type !== 'text' && c.type !== 'unknown') return c;
    let n = 0, num = 0, date = 0;
    for (let r = 0; r < rows.length && n < 500; r++) {
      const v = rows[r][i];
      if (v === null || v === undefined) continue;
      n++;
      if (typeof v === 'number' || (typeof v === 'string' && NUMERIC.test(v))) num++;
      else if (typeof v === 'string' && DATE.test(v)) date++;
    }
    if (n && num === n) return { ...c, type: 'numeric' };
    if (n && date === n) return { ...c, type: 'timestamptz' };
    return c;
  });
}

// shape says which chart kinds fit a result, the first being the default.
export function shape(columns, rows) {
  columns = refine(columns, rows);
  const time = columns.findIndex(isTime);
  const nums = columns.map((c, i) => (i !== time && isNum(c, rows, i) ? i : -1)).filter((i) => i >= 0);
  const text = columns.findIndex((c, i) => i !== time && !nums.includes(i) && isText(c, rows, i));
  if (!rows.length || !nums.length) return { kinds: [], time, nums, text };
  if (time >= 0) return { kinds: ['line', 'area', 'bar'], time, nums, text };
  if (text >= 0) return { kinds: ['bar', 'line'], time, nums, text };
  return { kinds: [], time, nums, text };
}

// series turns rows into uPlot's columnar data for the kind.
function build(kind, columns, rows, s) {
  if (kind === 'bar' && s.time < 0) {
    // categories along x, the first number column as bar height
    const cat = s.text >= 0 ? s.text : s.time;
    const sums = new Map();
    for (const r of rows) {
      const k = r[cat] === null ? 'NULL' : String(r[cat]);
      sums.set(k, (sums.get(k) || 0) + (Number(r[s.nums[0]]) || 0));
    }
    const labels = [...sums.keys()].slice(0, MAX_BARS);
    return { labels, data: [labels.map((_, i) => i), labels.map((l) => sums.get(l))], names: [columns[s.nums[0]].name] };
  }
  if (kind === 'bar') {
    // a time column as bars: one bar per time, the first number column
    const pts = rows.map((r) => [Date.parse(r[s.time]) / 1000, Number(r[s.nums[0]])]).filter((p) => !isNaN(p[0])).sort((a, b) => a[0] - b[0]);
    return { time: true, data: [pts.map((p) => p[0]), pts.map((p) => p[1])], names: [columns[s.nums[0]].name] };
  }
  // line/area over time: pivot by the text column when there is one number
  // column, else one series per number column
  const t = s.time >= 0 ? s.time : s.text;
  const xs = [...new Set(rows.map((r) => (s.time >= 0 ? Date.parse(r[t]) / 1000 : r[t])))].filter((x) => x === x);
  if (s.time >= 0) xs.sort((a, b) => a - b);
  const xi = new Map(xs.map((x, i) => [x, i]));
  const xOf = (r) => xi.get(s.time >= 0 ? Date.parse(r[t]) / 1000 : r[t]);
  if (s.time >= 0 && s.text >= 0 && s.nums.length === 1) {
    const totals = new Map();
    for (const r of rows) totals.set(String(r[s.text]), (totals.get(String(r[s.text])) || 0) + (Number(r[s.nums[0]]) || 0));
    const cats = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a)).slice(0, MAX_SERIES);
    const ys = cats.map(() => xs.map(() => null));
    for (const r of rows) {
      const c = cats.indexOf(String(r[s.text]));
      if (c >= 0) ys[c][xOf(r)] = (ys[c][xOf(r)] || 0) + Number(r[s.nums[0]]);
    }
    return { time: true, data: [xs, ...ys], names: cats };
  }
  const num = s.nums.slice(0, MAX_SERIES);
  const ys = num.map(() => xs.map(() => null));
  for (const r of rows) num.forEach((c, k) => (ys[k][xOf(r)] = r[c] === null ? null : Number(r[c])));
  if (s.time < 0) return { labels: xs.map(String), data: [xs.map((_, i) => i), ...ys], names: num.map((c) => columns[c].name) };
  return { time: true, data: [xs, ...ys], names: num.map((c) => columns[c].name) };
}

function options(kind, b, width, height) {
  const bars = kind === 'bar';
  const series = [{}];
  b.names.forEach((name, i) => {
    const color = PALETTE[i % PALETTE.length];
    series.push({
      label: name,
      stroke: color,
      width: bars ? 1 : 2,
      fill: bars ? color + 'cc' : kind === 'area' ? color + '40' : undefined,
      paths: bars ? uPlot.paths.bars({ size: [0.7, 80] }) : undefined,
      points: { show: b.data[0].length < 60 && !bars },
      spanGaps: true,
    });
  });
  const o = { width, height, series, legend: { show: b.names.length > 1 || !bars }, cursor: { drag: { x: true, y: false } }, scales: {}, axes: [{}, { size: 60 }] };
  if (kind === 'area' && b.names.length > 1) o.bands = [];
  if (b.labels) {
    const len = b.labels.length <= 4 ? 48 : b.labels.length <= 8 ? 24 : 16;
    o.scales.x = { time: false, range: [-0.5, b.labels.length - 0.5] };
    o.axes[0] = { values: (u, splits) => splits.map((i) => (Number.isInteger(i) ? (b.labels[i] || '').slice(0, len) : '')), splits: () => b.labels.map((_, i) => i), rotate: 0, gap: 4 };
    if (b.labels.length > 12) o.axes[0].values = (u, splits) => splits.map((i) => (Number.isInteger(i) && i % Math.ceil(b.labels.length / 12) === 0 ? (b.labels[i] || '').slice(0, 14) : ''));
  } else {
    // one point in time: show the hour around it, not uPlot's years
    o.scales.x = { time: true, range: (u, min, max) => (min === max ? [min - 1800, max + 1800] : [min, max]) };
  }
  return o;
}

// chartView returns a chart with a kind switcher; kind 'auto' picks from the
// shape. It redraws to fit its container's width.
export function chartView(columns, rows, { kind = 'auto', height = 260, onKind } = {}) {
  const s = shape(columns, rows);
  const holder = h('div', { class: 'chart-canvas' });
  const root = h('div', { class: 'chart', dataset: { kind: 'none', points: 0 } });
  if (!s.kinds.length) {
    root.append(h('p', { class: 'empty' }, 'No chart for this result: a chart needs a time column or a text column, and a number column.'));
    return root;
  }
  if (kind === 'auto' || (kind !== 'none' && !s.kinds.includes(kind))) kind = s.kinds[0];
  const select = h('select', { class: 'chart-kind', 'aria-label': 'Chart kind', onchange: () => (onKind?.(select.value), draw(select.value)) },
    [...s.kinds, 'none'].map((k) => h('option', { value: k, selected: k === kind }, k === 'none' ? 'No chart' : k[0].toUpperCase() + k.slice(1) + ' chart')));
  root.append(h('div', { class: 'chart-bar' }, h('label', {}, 'Chart ', select)), holder);
  let plot = null;
  let ro = null;
  function draw(k) {
    plot?.destroy();
    plot = null;
    holder.replaceChildren();
    root.dataset.kind = k;
    root.dataset.points = 0;
    if (k === 'none') return;
    const b = build(k, columns, rows, s);
    const width = Math.max(300, holder.clientWidth || root.clientWidth || 800);
    plot = new uPlot(options(k, b, width, height), b.data, holder);
    root.dataset.points = b.data.slice(1).reduce((n, ys) => n + ys.filter((y) => y !== null && !isNaN(y)).length, 0);
    root.dataset.series = b.names.length;
  }
  // uPlot needs a width: draw once the element is in the page
  requestAnimationFrame(() => {
    draw(kind);
    ro = new ResizeObserver(() => {
      if (plot && holder.clientWidth && Math.abs(holder.clientWidth - plot.width) > 4) plot.setSize({ width: holder.clientWidth, height });
    });
    ro.observe(holder);
  });
  root.update = (newRows) => {
    rows = newRows;
    if (!plot) return draw(select.value);
    const b = build(select.value, columns, rows, s);
    if (b.names.length !== plot.series.length - 1) return draw(select.value);
    plot.setData(b.data);
    root.dataset.points = b.data.slice(1).reduce((n, ys) => n + ys.filter((y) => y !== null && !isNaN(y)).length, 0);
  };
  return root;
}
