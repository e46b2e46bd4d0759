// createHerd builds the tracking API: analytics.js's page, track, identify,
// group, alias and reset, plus consent, ready, flush and user. It starts the
// automatic page views (single-page apps included) and click capture.

import { uuid } from './uuid.js';
import { createStore, localStore } from './store.js';
import { createQueue } from './queue.js';
import { parseArgs, campaign } from './args.js';
import { clickEvent } from './clicks.js';

export var VERSION = __VERSION__;

var AID = 'herd_aid', UID = 'herd_uid', TRAITS = 'herd_traits', SID = 'herd_sid', CONSENT = 'herd_consent';

// options: writeKey (required); apiHost (scheme and host, optionally a path:
// "https://example.com/herd"); pathPrefix (appended to apiHost);
// persistence ('cookie', 'localStorage' or 'memory'); cookieDomain;
// requireConsent; respectDNT; respectGPC; trackPages; trackClicks;
// autocapture; flushAt; flushInterval (ms); maxQueue; sessionTimeout (ms).
// calls: [method, arguments, time] recorded by the snippet before load.
export function createHerd(options, calls) {
  var o = Object.assign({
      persistence: 'cookie', trackPages: true, trackClicks: true,
      flushAt: 20, flushInterval: 1000, maxQueue: 500, sessionTimeout: 18e5,
    }, options),
    w = window, d = document, nav = navigator,
    host = (o.apiHost || '').replace(/\/+$/, ''),
    ls = localStore(),
    saved = ls && ls.getItem(CONSENT),
    consented = saved == '1' || !o.requireConsent && saved != '0',
    off = o.respectDNT && (nav.doNotTrack == '1' || w.doNotTrack == '1') || o.respectGPC && nav.globalPrivacyControl === true,
    store = open(),
    ref = d.referrer, last, at, routeTimer, api;

  if (host && !/^(https?:)?\/\//.test(host)) host = 'https://' + host;

  var queue = createQueue(
    { url: host + ('/' + (o.pathPrefix || '')).replace(/\/+$/, '').replace(/^\/+/, '/') + '/v1/batch', writeKey: o.writeKey, flushAt: o.flushAt, flushInterval: o.flushInterval, maxQueue: o.maxQueue },
    function () { return consented && store.ls; },
    function () { return consented && !off; }
  );

  // Nothing is written to the device before consent (when it is required),
  // nor ever when Do-Not-Track or Global Privacy Control is respected.
  function open() {
    return createStore(consented && !off ? o.persistence : 'memory', o.cookieDomain);
  }

  function anonymousId() {
    var a = store.get(AID);
    if (!a) store.set(AID, (a = uuid()), 1);
    return a;
  }

  function traits() {
    try { return JSON.parse(store.get(TRAITS)) || {}; } catch (e) { return {}; }
  }

  // session returns the session id at time t; a session ends after
  // sessionTimeout of inactivity.
  function session(t) {
    var v = (store.get(SID) || '').split('.'), id = v[0], seen = +v[1] || 0;
    if (!id || t - seen > o.sessionTimeout) id = uuid();
    store.set(SID, id + '.' + Math.max(t, seen), 1);
    return id;
  }

  function pageProps() {
    var l = location;
    return { path: l.pathname, referrer: ref, search: l.search, title: d.title, url: l.href };
  }

  function context(t) {
    var s = w.screen || {}, c = {
      library: { name: 'herd-js', version: VERSION },
      page: pageProps(),
      userAgent: nav.userAgent,
      locale: nav.language,
      screen: { width: s.width, height: s.height, density: w.devicePixelRatio },
      sessionId: session(t),
    }, k = campaign(location.search);
    try { c.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) {}
    if (k) c.campaign = k;
    return c;
  }

  function send(type, fields, opts, cb) {
    if (off) return;
    var t = opts.timestamp ? new Date(opts.timestamp) : new Date(at || Date.now()),
      u = store.get(UID),
      e = {
        type: type,
        messageId: uuid(),
        anonymousId: opts.anonymousId || anonymousId(),
        timestamp: t.toISOString(),
        context: Object.assign(context(+t), opts.context),
      };
    if (u) e.userId = u;
    if (opts.integrations) e.integrations = opts.integrations;
    queue.push(Object.assign(e, fields));
    if (cb) setTimeout(cb, 0);
  }

  function page() {
    var a = parseArgs(arguments, 2), s = a.s, name = s[s.length - 1], f = {};
    if (last && last != location.href) ref = last; // in a single-page app the previous route is the referrer
    last = location.href;
    if (s.length > 1 && s[0]) f.category = s[0];
    if (name) f.name = name;
    send('page', Object.assign({ properties: Object.assign(pageProps(), f, a.p) }, f), a.o, a.f);
  }

  function route() {
    clearTimeout(routeTimer);
    routeTimer = 0;
    if (o.trackPages && location.href != last) page();
  }

  // Routers often set the title just after changing the URL: wait a moment
  // before reading it (route() runs at once if the page is hidden first).
  function routeSoon() {
    clearTimeout(routeTimer);
    routeTimer = setTimeout(route, 100);
  }

  function hidden() {
    if (routeTimer) route();
    queue.unload();
  }

  api = {
    loaded: true,
    VERSION: VERSION,
    page: page,

    track: function () {
      var a = parseArgs(arguments, 1);
      if (a.s[0]) send('track', { event: a.s[0], properties: a.p }, a.o, a.f);
    },

    identify: function () {
      var a = parseArgs(arguments, 1), id = a.s[0], cur = store.get(UID), tr;
      if (id && cur && id != cur) store.del(TRAITS); // another user: forget the last one's traits
      if (id) store.set(UID, id, 1);
      tr = Object.assign(traits(), a.p);
      store.set(TRAITS, JSON.stringify(tr));
      send('identify', { traits: tr }, a.o, a.f);
    },

    group: function () {
      var a = parseArgs(arguments, 1);
      if (a.s[0]) send('group', { groupId: a.s[0], traits: a.p }, a.o, a.f);
    },

    alias: function () {
      var a = parseArgs(arguments, 2);
      if (a.s[0]) send('alias', { userId: a.s[0], previousId: a.s[1] || store.get(UID) || anonymousId() }, a.o, a.f);
    },

    reset: function () {
      [AID, UID, TRAITS, SID].forEach(store.del);
    },

    // consent(true) starts sending what was queued and lets herd store its
    // ids; consent(false) drops what is queued, forgets the ids and stops.
    // The choice is remembered on the device.
    consent: function (yes) {
      var old = store;
      yes = yes !== false;
      if (ls) try { ls.setItem(CONSENT, yes ? '1' : '0'); } catch (e) {}
      if (yes == consented) return;
      if (!yes) {
        queue.clear();
        api.reset();
      }
      consented = yes;
      store = open();
      if (yes) {
        [AID, UID, TRAITS, SID].forEach(function (k) {
          var v = old.get(k);
          if (v != null) store.set(k, v, k != TRAITS);
        });
        queue.persist();
        queue.flush();
      }
    },

    ready: function (fn) {
      if (typeof fn == 'function') setTimeout(fn, 0);
    },

    flush: function () {
      return queue.flush();
    },

    user: function () {
      return { id: function () { return store.get(UID); }, anonymousId: anonymousId, traits: traits };
    },
  };

  // Each public method swallows its own errors: analytics must never break
  // the page that calls it.
  Object.keys(api).forEach(function (k) {
    var f = api[k];
    if (typeof f == 'function') api[k] = function () {
      try { return f.apply(api, arguments); } catch (e) { console.warn('herd: ' + k + ': ' + e); }
    };
  });

  calls = calls || [];
  if (o.trackPages && !calls.some(function (c) { return c[0] == 'page'; })) {
    at = calls[0] && calls[0][2];
    api.page();
  }
  calls.forEach(function (c) {
    if (typeof api[c[0]] == 'function') {
      at = c[2];
      api[c[0]].apply(api, c[1]);
    }
  });
  at = 0;

  if (o.trackPages) {
    ['pushState', 'replaceState'].forEach(function (m) {
      var orig = history[m];
      history[m] = function () {
        var r = orig.apply(this, arguments);
        routeSoon();
        return r;
      };
    });
    w.addEventListener('popstate', routeSoon);
    w.addEventListener('hashchange', routeSoon);
  }
  if (o.trackClicks) d.addEventListener('click', function (e) {
    var c = clickEvent(e.target, o.autocapture);
    if (c) api.track(c[0], c[1]);
  }, true);
  w.addEventListener('pagehide', hidden);
  d.addEventListener('visibilitychange', function () {
    d.visibilityState == 'hidden' ? hidden() : queue.shown();
  });
  w.addEventListener('online', queue.shown);
  if (!o.writeKey) console.warn('herd: no writeKey');
  return api;
}
