// Small DOM helpers: elements are built with h(), never from HTML strings, so
// nothing a query returns can become markup.

// h builds an element: attrs sets properties/attributes (on* adds listeners,
// class, dataset, style as an object), children are nodes, strings or arrays.
export function h(tag, attrs, ...children) {
  const el = tag === 'svg' || SVG.has(tag) ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'spellcheck') el.setAttribute('spellcheck', String(v));
    else if (v == null || v === false) continue;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k in el && !(el instanceof SVGElement) && k !== 'list' && k !== 'form') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

const SVG = new Set(['g', 'rect', 'line', 'path', 'text', 'title', 'polyline', 'circle', 'marker', 'defs']);

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// fmtTime shows an RFC 3339 time in the reader's time zone, to the second.
export function fmtTime(s) {
  if (!s) return '—';
  const d = new Date(s);
  if (isNaN(d)) return String(s);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtAgo(s) {
  if (!s) return 'never';
  const sec = Math.round((Date.now() - new Date(s)) / 1000);
  if (sec < 60) return `${Math.max(sec, 0)} s ago`;
  if (sec < 3600) return `${Math.round(sec / 60)} min ago`;
  if (sec < 86400) return `${Math.round(sec / 3600)} h ago`;
  return `${Math.round(sec / 86400)} d ago`;
}

export function fmtMs(ms) {
  if (ms == null) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

export function fmtBytes(n) {
  if (n == null) return '—';
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) (n /= 1000), i++;
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

export function fmtNum(n) {
  return n == null ? '—' : Number(n).toLocaleString('en-US');
}

// download saves text as a file through a temporary object URL.
export function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// empty is the message shown where a list has nothing yet.
export function empty(text) {
  return h('p', { class: 'empty' }, text);
}

// errorBox shows a server error message as it came, with Postgres's code and
// position when there is one.
export function errorBox(err) {
  if (!err) return null;
  const extra = [];
  if (err.code) extra.push(`SQLSTATE ${err.code}`);
  if (err.position) extra.push(`at character ${err.position}`);
  return h('div', { class: 'error', role: 'alert' }, h('pre', {}, err.message || String(err)),
    err.detail ? h('p', { class: 'detail' }, 'DETAIL: ' + err.detail) : null,
    err.hint ? h('p', { class: 'detail' }, 'HINT: ' + err.hint) : null,
    extra.length ? h('small', {}, extra.join(', ')) : null);
}
