// A small stand-in for the browser globals the SDK touches, installed on
// globalThis so that src/ runs unchanged under node --test. Only behaviour
// the SDK relies on is modelled: a cookie jar that honours domain and
// max-age, localStorage, location and history, events on window and
// document, sendBeacon and fetch that record what they were given.
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
globalThis.__VERSION__ = pkg.version;

class Target {
  constructor() { this.listeners = {}; }
  addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); }
  removeEventListener(type, fn) { this.listeners[type] = (this.listeners[type] || []).filter((f) => f != fn); }
  dispatch(type, event = {}) { for (const fn of this.listeners[type] || []) fn({ type, ...event }); }
}

class Storage {
  constructor() { this.m = new Map(); this.full = false; }
  getItem(k) { return this.m.has(k) ? this.m.get(k) : null; }
  setItem(k, v) { if (this.full) throw new Error('QuotaExceededError'); this.m.set(k, String(v)); }
  removeItem(k) { this.m.delete(k); }
}

const publicSuffixes = new Set(['com', 'org', 'co.uk', 'uk']);

class CookieJar {
  constructor(loc) { this.loc = loc; this.c = new Map(); this.writes = 0; }
  get() { return [...this.c].map(([k, v]) => k + '=' + v.value).join('; '); }
  set(s) {
    this.writes++;
    const [kv, ...attrs] = s.split(';').map((x) => x.trim());
    const eq = kv.indexOf('=');
    const k = kv.slice(0, eq), v = kv.slice(eq + 1);
    let domain = '', age = null;
    for (const a of attrs) {
      const [n, val] = a.split('=');
      if (n.toLowerCase() == 'domain') domain = val.replace(/^\./, '');
      if (n.toLowerCase() == 'max-age') age = +val;
    }
    const host = this.loc.hostname;
    if (domain && (publicSuffixes.has(domain) || !(host == domain || host.endsWith('.' + domain)))) return;
    if (age !== null && age <= 0) this.c.delete(k);
    else this.c.set(k, { value: v, domain });
  }
}

// install replaces the browser globals with fresh ones and returns handles
// that tests use to drive and observe them.
export function install({ url = 'https://www.example.com/start?x=1', referrer = '', title = 'Start', nav = {}, storage = true } = {}) {
  const loc = new URL(url);
  const location = {
    get href() { return loc.href; }, get pathname() { return loc.pathname; }, get search() { return loc.search; },
    get hash() { return loc.hash; }, get hostname() { return loc.hostname; }, get protocol() { return loc.protocol; },
  };
  const win = new Target();
  const doc = new Target();
  const jar = new CookieJar(location);
  const localStorage = new Storage();
  const beacons = [];
  const requests = [];
  const env = {
    win, doc, jar, localStorage, beacons, requests,
    // respond decides each fetch's fate: a status, or 'fail' for a network error.
    respond: () => 200,
    beaconResult: true,
    navigate(u) { loc.href = new URL(u, loc.href).href; },
    bodies() { return [...requests.map((r) => r.body), ...beacons.map((b) => b.data)].map((b) => JSON.parse(b)); },
    events() { return env.bodies().flatMap((b) => b.batch); },
  };
  Object.assign(doc, { referrer, title, visibilityState: 'visible' });
  Object.defineProperty(doc, 'cookie', { get: () => jar.get(), set: (s) => jar.set(s) });
  Object.assign(win, { screen: { width: 1280, height: 800 }, devicePixelRatio: 2 });
  const history = {
    pushState(_s, _t, u) { if (u != null) env.navigate(u); },
    replaceState(_s, _t, u) { if (u != null) env.navigate(u); },
  };
  const navigator = {
    userAgent: 'FakeBrowser/1.0', language: 'en-GB', cookieEnabled: true,
    sendBeacon(u, data) { if (!env.beaconResult) return false; beacons.push({ url: u, data }); return true; },
    ...nav,
  };
  const fetch = async (u, init) => {
    requests.push({ url: u, ...init });
    const r = await env.respond(u, init);
    if (r == 'fail') throw new TypeError('Failed to fetch');
    return { status: r, ok: r >= 200 && r < 300 };
  };
  const globals = { window: win, document: doc, location, history, navigator, fetch, screen: win.screen };
  if (storage) globals.localStorage = localStorage;
  else Object.defineProperty(globalThis, 'localStorage', { configurable: true, get() { throw new Error('SecurityError'); } });
  for (const [k, v] of Object.entries(globals)) Object.defineProperty(globalThis, k, { configurable: true, writable: true, value: v });
  win.devicePixelRatio = 2;
  return env;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// until polls cond every few ms and fails after timeout.
export async function until(cond, timeout = 2000) {
  const end = Date.now() + timeout;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + cond);
    await sleep(5);
  }
}

// element builds just enough of a DOM element for click capture.
export function element(tag, attrs = {}, parent = null, text = '') {
  const el = {
    nodeType: 1, tagName: tag.toUpperCase(), parentElement: parent, children: [], textContent: text,
    id: attrs.id || '', href: attrs.href ? new URL(attrs.href, 'https://www.example.com/').href : undefined,
    attributes: Object.entries(attrs).map(([name, value]) => ({ name, value })),
    getAttribute(n) { const a = el.attributes.find((x) => x.name == n); return a ? a.value : null; },
    matches(sel) {
      return sel.split(',').some((s) => {
        s = s.trim();
        const m = s.match(/^([a-z]*)(?:\[([\w-]+)(?:=([\w-]+))?\])?$/);
        if (!m) return false;
        if (m[1] && m[1] != tag) return false;
        if (m[2] && el.getAttribute(m[2]) == null) return false;
        if (m[3] && el.getAttribute(m[2]) != m[3]) return false;
        return true;
      });
    },
    closest(sel) { for (let e = el; e; e = e.parentElement) if (e.matches(sel)) return e; return null; },
  };
  if (parent) parent.children.push(el);
  Object.defineProperty(el, 'firstElementChild', { get: () => el.children[0] || null });
  Object.defineProperty(el, 'nextElementSibling', {
    get: () => { if (!parent) return null; const i = parent.children.indexOf(el); return parent.children[i + 1] || null; },
  });
  return el;
}
