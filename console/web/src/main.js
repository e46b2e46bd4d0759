// The console's entry point: session check, the page frame with navigation,
// and a path router (the server answers index.html for every page path).
import 'uplot/dist/uPlot.min.css';
import './app.css';
import { api, post, session, whenSignedOut } from './api.js';
import { clear, h } from './dom.js';
import { loginPage } from './login.js';
import { forget, workspacePage } from './workspace.js';
import { queriesPage, savedQueryPage } from './queries.js';
import { livePage, tracePage, pipelinePage, rollupsPage, usagePage, loadersPage, sourcesPage } from './ops.js';

const app = document.getElementById('app');

const NAV = [
  { path: '/sql', label: 'SQL', key: 'g s' },
  { path: '/queries', label: 'Saved queries', key: 'g q' },
];
const OPS = [
  { path: '/ops/live', label: 'Live events' },
  { path: '/ops/trace', label: 'Trace' },
  { path: '/ops/pipeline', label: 'Pipeline' },
  { path: '/ops/rollups', label: 'Rollups' },
  { path: '/ops/usage', label: 'Usage' },
  { path: '/ops/loaders', label: 'Loaders' },
  { path: '/ops/sources', label: 'Sources' },
];

// cleanup runs when the page changes: pages register timers and streams here.
let cleanups = [];
export function onLeave(f) {
  cleanups.push(f);
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  route();
}

function route() {
  for (const f of cleanups.splice(0)) {
    try {
      f();
    } catch {}
  }
  const path = location.pathname;
  if (!session.user) return showLogin(path === '/login' ? new URLSearchParams(location.search).get('next') || '/sql' : path + location.search);
  if (path === '/login') return navigate(safeNext(new URLSearchParams(location.search).get('next')), { replace: true });
  const main = frame(path);
  let page;
  if (path === '/' || path === '/sql') page = workspacePage;
  else if (path === '/queries') page = queriesPage;
  else if (path.startsWith('/q/')) page = () => savedQueryPage(decodeURIComponent(path.slice(3)));
  else if (path.startsWith('/ops/') && !session.admin) page = () => h('div', { class: 'page' }, h('h1', {}, 'Operators only'), h('p', {}, 'These pages are for members of the herd_admin role. Ask an administrator to grant it.'));
  else {
    page = {
      '/ops/live': livePage, '/ops/trace': tracePage, '/ops/pipeline': pipelinePage, '/ops/rollups': rollupsPage,
      '/ops/usage': usagePage, '/ops/loaders': loadersPage, '/ops/sources': sourcesPage,
    }[path];
  }
  if (!page) page = () => h('div', { class: 'page' }, h('h1', {}, 'Not found'), h('p', {}, 'No page at ', h('code', {}, path), '. ', link('/sql', 'Go to the SQL workspace'), '.'));
  clear(main, page());
}

// safeNext keeps a post-sign-in redirect on this console.
function safeNext(next) {
  return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') ? next : '/sql';
}

export function link(path, ...children) {
  return h('a', {
    href: path,
    onclick: (e) => {
      if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
      e.preventDefault();
      navigate(path);
    },
  }, ...children);
}

function frame(path) {
  const item = (n) => h('li', {}, link(n.path, n.label));
  const nav = h('nav', { class: 'top', 'aria-label': 'Main' },
    h('a', { class: 'brand', href: '/sql', onclick: (e) => (e.preventDefault(), navigate('/sql')) }, 'herd'),
    h('ul', {}, NAV.map(item)),
    session.admin ? h('ul', { class: 'ops', 'aria-label': 'Operator pages' }, OPS.map(item)) : null,
    h('div', { class: 'who' },
      h('button', { type: 'button', class: 'help', title: 'Keyboard shortcuts (?)', onclick: showShortcuts }, '?'),
      h('span', { class: 'user', title: 'Signed in as' }, session.user, session.admin ? h('span', { class: 'badge' }, 'admin') : null),
      h('button', { type: 'button', class: 'signout', onclick: signOut }, 'Sign out')));
  for (const a of nav.querySelectorAll('ul a')) {
    const p = a.getAttribute('href');
    if (path === p || (p === '/sql' && path === '/') || (p === '/queries' && path.startsWith('/q/'))) a.setAttribute('aria-current', 'page');
  }
  const main = h('main', { id: 'main' });
  clear(app, nav, main);
  return main;
}

async function signOut() {
  try {
    await post('/api/logout');
  } catch {}
  session.user = '';
  session.admin = false;
  session.csrf = '';
  forget();
  navigate('/login');
}

function showLogin(next) {
  if (location.pathname !== '/login') history.replaceState(null, '', '/login?next=' + encodeURIComponent(next));
  document.title = 'Sign in — herd console';
  clear(app, loginPage(async (s) => {
    Object.assign(session, s);
    navigate(safeNext(next), { replace: true });
  }, next));
}

whenSignedOut(() => {
  if (!session.user) return;
  session.user = '';
  session.csrf = '';
  forget();
  route();
});

window.addEventListener('popstate', route);

const MOD = /Mac|iPhone|iPad/.test(navigator.platform) ? '⌘' : 'Ctrl';
const SHORTCUTS = [
  [`${MOD}+Enter`, 'run the query (or the selected part)'],
  ['Esc', 'cancel the running query'],
  [`${MOD}+S`, 'save the query under a name'],
  [`${MOD}+Space`, 'complete a schema, table or column name'],
  ['g s', 'go to the SQL workspace'],
  ['g q', 'go to saved queries'],
  ['g l / g t / g p / g r', 'operators: live events, trace, pipeline, rollups'],
  ['?', 'show this list'],
];

function showShortcuts() {
  let d = document.getElementById('shortcuts');
  if (!d) {
    d = h('dialog', { id: 'shortcuts', 'aria-label': 'Keyboard shortcuts' },
      h('h2', {}, 'Keyboard shortcuts'),
      h('table', { class: 'kv' }, h('tbody', {}, SHORTCUTS.map(([k, what]) => h('tr', {}, h('th', {}, h('kbd', {}, k)), h('td', {}, what))))),
      h('form', { method: 'dialog' }, h('button', { type: 'submit' }, 'Close')));
    document.body.append(d);
  }
  d.showModal();
}

// g then a letter moves between the main pages; ? lists the shortcuts
let pendingG = 0;
document.addEventListener('keydown', (e) => {
  if (e.target.closest && e.target.closest('input, textarea, select, .cm-editor')) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === '?' && session.user) return showShortcuts();
  if (e.key === 'g') {
    pendingG = Date.now();
    return;
  }
  if (Date.now() - pendingG < 1500 && session.user) {
    const to = { s: '/sql', q: '/queries', l: '/ops/live', t: '/ops/trace', p: '/ops/pipeline', r: '/ops/rollups' }[e.key];
    pendingG = 0;
    if (to && (session.admin || !to.startsWith('/ops'))) navigate(to);
  }
});

async function boot() {
  try {
    Object.assign(session, await api('/api/session', { quiet401: true }));
  } catch {
    session.user = '';
  }
  route();
}
boot();
