// src/uuid.js
function uuid() {
  var b = crypto.getRandomValues(new Uint8Array(16)), s = "", i = 0;
  b[6] = b[6] & 15 | 64;
  b[8] = b[8] & 63 | 128;
  for (; i < 16; i++) s += (i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "") + (b[i] + 256).toString(16).slice(1);
  return s;
}

// src/store.js
var YEAR = 31536e3;
function localStore() {
  try {
    var s = localStorage;
    s.setItem("herd_t", "1");
    s.removeItem("herd_t");
    return s;
  } catch (e) {
  }
}
function cookieDomain(host) {
  var parts = host.split("."), i = parts.length - 2, d;
  if (i < 0 || /^[\d.]+$/.test(host)) return "";
  for (; i >= 0; i--) {
    d = parts.slice(i).join(".");
    document.cookie = "herd_t=1; path=/; domain=" + d;
    if (document.cookie.indexOf("herd_t=1") > -1) {
      document.cookie = "herd_t=; path=/; max-age=0; domain=" + d;
      return d;
    }
  }
  return "";
}
function createStore(mode, domain) {
  var mem = {}, ls = mode != "memory" && localStore(), jar = mode == "cookie" && navigator.cookieEnabled;
  if (jar && domain == null) domain = cookieDomain(location.hostname);
  function cookie(k, v, age) {
    document.cookie = k + "=" + encodeURIComponent(v) + "; path=/; max-age=" + age + "; SameSite=Lax" + (domain ? "; domain=" + domain : "") + (location.protocol == "https:" ? "; Secure" : "");
  }
  return {
    ls,
    get: function(k) {
      var m = jar && document.cookie.match(new RegExp("(?:^|; )" + k + "=([^;]*)")), v = m ? decodeURIComponent(m[1]) : null;
      if (v == null && ls) try {
        v = ls.getItem(k);
      } catch (e) {
      }
      return v == null ? k in mem ? mem[k] : null : v;
    },
    // set stores v under k; c asks for a cookie too (small values only).
    set: function(k, v, c) {
      mem[k] = v;
      if (c && jar) cookie(k, v, YEAR);
      if (ls) try {
        ls.setItem(k, v);
      } catch (e) {
      }
    },
    del: function(k) {
      delete mem[k];
      if (jar) cookie(k, "", 0);
      if (ls) try {
        ls.removeItem(k);
      } catch (e) {
      }
    }
  };
}

// src/queue.js
var KEY = "herd_queue";
function createQueue(cfg, storage, canSend) {
  var mem = [], broken, busy, timer, fails = 0, healthy = 0, beaconed = {};
  function disk() {
    return !broken && storage();
  }
  function read() {
    var s = disk();
    if (s) try {
      return JSON.parse(s.getItem(KEY)) || [];
    } catch (e) {
    }
    return mem.slice();
  }
  function write(q) {
    var s = disk();
    mem = q;
    if (s) try {
      q.length ? s.setItem(KEY, JSON.stringify(q)) : s.removeItem(KEY);
    } catch (e) {
      broken = 1;
    }
  }
  function remove(batch) {
    var ids = {};
    batch.forEach(function(e) {
      ids[e.messageId] = 1;
    });
    write(read().filter(function(e) {
      return !ids[e.messageId];
    }));
  }
  function schedule(ms) {
    if (!timer) timer = setTimeout(function() {
      timer = 0;
      flush();
    }, ms);
  }
  function take(q) {
    for (var n = 0, bytes = 0; n < q.length && n < 100; n++) {
      bytes += new TextEncoder().encode(JSON.stringify(q[n])).length;
      if (n && bytes > 5e4) break;
    }
    return q.slice(0, n);
  }
  function body(batch) {
    var t = (/* @__PURE__ */ new Date()).toISOString();
    return JSON.stringify({
      batch: batch.map(function(e) {
        return Object.assign({}, e, { sentAt: t });
      }),
      sentAt: t,
      writeKey: cfg.writeKey
    });
  }
  function post(batch, keepalive) {
    var c = typeof AbortController == "function" && new AbortController(), t = c && setTimeout(function() {
      c.abort();
    }, 15e3);
    return fetch(cfg.url, { method: "POST", body: body(batch), credentials: "omit", keepalive, signal: c && c.signal }).then(
      function(r) {
        var s = r.status;
        clearTimeout(t);
        if (s > 399 && s < 500 && s != 408 && s != 429) console.warn("herd: collector refused " + batch.length + " events: HTTP " + s);
        return s < 300 || s < 500 && s != 408 && s != 429;
      },
      function() {
        clearTimeout(t);
        return false;
      }
    );
  }
  function beacon(batch) {
    try {
      if (navigator.sendBeacon(cfg.url, body(batch))) return;
    } catch (e) {
    }
    post(batch, true).then(function(ok) {
      if (ok) remove(batch);
    });
  }
  function flush() {
    var q, batch;
    if (busy || !canSend()) return Promise.resolve();
    clearTimeout(timer);
    timer = 0;
    q = read();
    if (!q.length) return Promise.resolve();
    batch = take(q);
    busy = 1;
    return post(batch).then(function(ok) {
      busy = 0;
      healthy = ok;
      fails = ok ? 0 : fails + 1;
      if (ok) remove(batch);
      q = read().length;
      if (q) schedule(fails ? Math.min(6e4, 1e3 * Math.pow(2, fails - 1)) * (0.5 + Math.random() / 2) : q >= cfg.flushAt ? 0 : cfg.flushInterval);
    });
  }
  return {
    read,
    flush,
    // push queues an event; false when the queue is full (the oldest events
    // are kept: they are dropped last).
    push: function(e) {
      var q = read();
      if (q.length >= cfg.maxQueue) return false;
      q.push(e);
      write(q);
      if (canSend()) q.length >= cfg.flushAt && !fails ? flush() : schedule(cfg.flushInterval);
      return true;
    },
    // unload sends what is queued when the page is hidden or going away,
    // with sendBeacon (text/plain, no preflight), falling back to a keepalive
    // fetch. A beacon's outcome is unknown, so its events stay queued for the
    // next page unless the collector has just been answering: then a loss
    // is unlikely and a resend on every navigation would double traffic.
    unload: function() {
      var q, batch, sent = [];
      if (!canSend()) return;
      q = read().filter(function(e) {
        return !beaconed[e.messageId];
      });
      while (q.length) {
        batch = take(q);
        q = q.slice(batch.length);
        batch.forEach(function(e) {
          beaconed[e.messageId] = 1;
        });
        sent = sent.concat(batch);
        beacon(batch);
      }
      if (healthy) remove(sent);
    },
    // shown is called when the page is visible again: queued events go back
    // to the normal path.
    shown: function() {
      beaconed = {};
      fails = 0;
      if (read().length) schedule(0);
    },
    // persist moves events kept in memory to storage once storage is allowed.
    persist: function() {
      var m = mem, ids = {}, q;
      q = read();
      q.forEach(function(e) {
        ids[e.messageId] = 1;
      });
      write(q.concat(m.filter(function(e) {
        return !ids[e.messageId];
      })));
    },
    clear: function() {
      write([]);
    }
  };
}

// src/args.js
function parseArgs(args, n) {
  var s = [], o = [], f, i = 0, a;
  for (; i < args.length && s.length < n; i++) {
    a = args[i];
    if (a != null && (typeof a == "object" || typeof a == "function")) break;
    s.push(a == null ? null : String(a));
  }
  for (; i < args.length; i++) typeof args[i] == "function" ? f = args[i] : o.push(args[i]);
  return { s, p: Object.assign({}, o[0]), o: o[1] || {}, f };
}
var UTM = { source: 0, medium: 0, campaign: "name", term: 0, content: 0 };
function campaign(search) {
  var q = new URLSearchParams(search), c, k, v;
  for (k in UTM) {
    v = q.get("utm_" + k);
    if (v) (c = c || {})[UTM[k] || k] = v;
  }
  return c;
}

// src/clicks.js
var AUTO = "a,button,[role=button],input[type=submit],input[type=button]";
var ID = /^[A-Za-z][\w-]*$/;
function selector(el) {
  var parts = [], p, n, same, c, tag;
  for (; el && el.nodeType == 1 && parts.length < 6; el = p) {
    tag = el.tagName.toLowerCase();
    if (el.id && ID.test(el.id)) {
      parts.unshift("#" + el.id);
      break;
    }
    if (tag == "body" || tag == "html") {
      parts.unshift(tag);
      break;
    }
    p = el.parentElement;
    n = same = 0;
    if (p) {
      for (c = p.firstElementChild; c; c = c.nextElementSibling) if (c.tagName == el.tagName && (same++, c == el)) n = same;
    }
    parts.unshift(same > 1 ? tag + ":nth-of-type(" + n + ")" : tag);
  }
  return parts.join(">");
}
function text(el) {
  return (el.textContent || el.value || "").replace(/\s+/g, " ").trim().slice(0, 100);
}
function clickEvent(target, auto) {
  var el = target && target.closest && target.closest("[data-herd-event]"), p = {}, a, i, k;
  if (el) {
    for (i = 0; i < el.attributes.length; i++) {
      a = el.attributes[i];
      k = a.name.slice(10);
      if (a.name.slice(0, 10) == "data-herd-" && k != "event") p[k.replace(/-/g, "_")] = a.value;
    }
    return [el.getAttribute("data-herd-event"), p];
  }
  el = auto && target && target.closest && target.closest(AUTO);
  if (el && !el.closest("[data-herd-ignore]")) {
    p = { tag: el.tagName.toLowerCase(), text: text(el), selector: selector(el) };
    if (el.id) p.id = el.id;
    if (el.href) p.href = el.href;
    return ["Element Clicked", p];
  }
}

// src/herd.js
var VERSION = "0.1.0";
var AID = "herd_aid";
var UID = "herd_uid";
var TRAITS = "herd_traits";
var SID = "herd_sid";
var CONSENT = "herd_consent";
function createHerd(options, calls) {
  var o = Object.assign({
    persistence: "cookie",
    trackPages: true,
    trackClicks: true,
    flushAt: 20,
    flushInterval: 1e3,
    maxQueue: 500,
    sessionTimeout: 18e5
  }, options), w = window, d = document, nav = navigator, host = (o.apiHost || "").replace(/\/+$/, ""), ls = localStore(), saved = ls && ls.getItem(CONSENT), consented = saved == "1" || !o.requireConsent && saved != "0", off = o.respectDNT && (nav.doNotTrack == "1" || w.doNotTrack == "1") || o.respectGPC && nav.globalPrivacyControl === true, store = open(), ref = d.referrer, last, at, routeTimer, api;
  if (host && !/^(https?:)?\/\//.test(host)) host = "https://" + host;
  var queue = createQueue(
    { url: host + ("/" + (o.pathPrefix || "")).replace(/\/+$/, "").replace(/^\/+/, "/") + "/v1/batch", writeKey: o.writeKey, flushAt: o.flushAt, flushInterval: o.flushInterval, maxQueue: o.maxQueue },
    function() {
      return consented && store.ls;
    },
    function() {
      return consented && !off;
    }
  );
  function open() {
    return createStore(consented && !off ? o.persistence : "memory", o.cookieDomain);
  }
  function anonymousId() {
    var a = store.get(AID);
    if (!a) store.set(AID, a = uuid(), 1);
    return a;
  }
  function traits() {
    try {
      return JSON.parse(store.get(TRAITS)) || {};
    } catch (e) {
      return {};
    }
  }
  function session(t) {
    var v = (store.get(SID) || "").split("."), id = v[0], seen = +v[1] || 0;
    if (!id || t - seen > o.sessionTimeout) id = uuid();
    store.set(SID, id + "." + Math.max(t, seen), 1);
    return id;
  }
  function pageProps() {
    var l = location;
    return { path: l.pathname, referrer: ref, search: l.search, title: d.title, url: l.href };
  }
  function context(t) {
    var s = w.screen || {}, c = {
      library: { name: "herd-js", version: VERSION },
      page: pageProps(),
      userAgent: nav.userAgent,
      locale: nav.language,
      screen: { width: s.width, height: s.height, density: w.devicePixelRatio },
      sessionId: session(t)
    }, k = campaign(location.search);
    try {
      c.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (e) {
    }
    if (k) c.campaign = k;
    return c;
  }
  function send(type, fields, opts, cb) {
    if (off) return;
    var t = opts.timestamp ? new Date(opts.timestamp) : new Date(at || Date.now()), u = store.get(UID), e = {
      type,
      messageId: uuid(),
      anonymousId: opts.anonymousId || anonymousId(),
      timestamp: t.toISOString(),
      context: Object.assign(context(+t), opts.context)
    };
    if (u) e.userId = u;
    if (opts.integrations) e.integrations = opts.integrations;
    queue.push(Object.assign(e, fields));
    if (cb) setTimeout(cb, 0);
  }
  function page() {
    var a = parseArgs(arguments, 2), s = a.s, name = s[s.length - 1], f = {};
    if (last && last != location.href) ref = last;
    last = location.href;
    if (s.length > 1 && s[0]) f.category = s[0];
    if (name) f.name = name;
    send("page", Object.assign({ properties: Object.assign(pageProps(), f, a.p) }, f), a.o, a.f);
  }
  function route() {
    clearTimeout(routeTimer);
    routeTimer = 0;
    if (o.trackPages && location.href != last) page();
  }
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
    VERSION,
    page,
    track: function() {
      var a = parseArgs(arguments, 1);
      if (a.s[0]) send("track", { event: a.s[0], properties: a.p }, a.o, a.f);
    },
    identify: function() {
      var a = parseArgs(arguments, 1), id = a.s[0], cur = store.get(UID), tr;
      if (id && cur && id != cur) store.del(TRAITS);
      if (id) store.set(UID, id, 1);
      tr = Object.assign(traits(), a.p);
      store.set(TRAITS, JSON.stringify(tr));
      send("identify", { traits: tr }, a.o, a.f);
    },
    group: function() {
      var a = parseArgs(arguments, 1);
      if (a.s[0]) send("group", { groupId: a.s[0], traits: a.p }, a.o, a.f);
    },
    alias: function() {
      var a = parseArgs(arguments, 2);
      if (a.s[0]) send("alias", { userId: a.s[0], previousId: a.s[1] || store.get(UID) || anonymousId() }, a.o, a.f);
    },
    reset: function() {
      [AID, UID, TRAITS, SID].forEach(store.del);
    },
    // consent(true) starts sending what was queued and lets herd store its
    // ids; consent(false) drops what is queued, forgets the ids and stops.
    // The choice is remembered on the device.
    consent: function(yes) {
      var old = store;
      yes = yes !== false;
      if (ls) try {
        ls.setItem(CONSENT, yes ? "1" : "0");
      } catch (e) {
      }
      if (yes == consented) return;
      if (!yes) {
        queue.clear();
        api.reset();
      }
      consented = yes;
      store = open();
      if (yes) {
        [AID, UID, TRAITS, SID].forEach(function(k) {
          var v = old.get(k);
          if (v != null) store.set(k, v, k != TRAITS);
        });
        queue.persist();
        queue.flush();
      }
    },
    ready: function(fn) {
      if (typeof fn == "function") setTimeout(fn, 0);
    },
    flush: function() {
      return queue.flush();
    },
    user: function() {
      return { id: function() {
        return store.get(UID);
      }, anonymousId, traits };
    }
  };
  Object.keys(api).forEach(function(k) {
    var f = api[k];
    if (typeof f == "function") api[k] = function() {
      try {
        return f.apply(api, arguments);
      } catch (e) {
        console.warn("herd: " + k + ": " + e);
      }
    };
  });
  calls = calls || [];
  if (o.trackPages && !calls.some(function(c) {
    return c[0] == "page";
  })) {
    at = calls[0] && calls[0][2];
    api.page();
  }
  calls.forEach(function(c) {
    if (typeof api[c[0]] == "function") {
      at = c[2];
      api[c[0]].apply(api, c[1]);
    }
  });
  at = 0;
  if (o.trackPages) {
    ["pushState", "replaceState"].forEach(function(m) {
      var orig = history[m];
      history[m] = function() {
        var r = orig.apply(this, arguments);
        routeSoon();
        return r;
      };
    });
    w.addEventListener("popstate", routeSoon);
    w.addEventListener("hashchange", routeSoon);
  }
  if (o.trackClicks) d.addEventListener("click", function(e) {
    var c = clickEvent(e.target, o.autocapture);
    if (c) api.track(c[0], c[1]);
  }, true);
  w.addEventListener("pagehide", hidden);
  d.addEventListener("visibilitychange", function() {
    d.visibilityState == "hidden" ? hidden() : queue.shown();
  });
  w.addEventListener("online", queue.shown);
  if (!o.writeKey) console.warn("herd: no writeKey");
  return api;
}
export {
  VERSION,
  createHerd
};
