// The outbox. Every event is written to localStorage before anything is sent
// and removed only when the collector has answered, so events survive a
// failed request, a closed tab and a reload. Each keeps the messageId it was
// given when it was made: a resend after an unknown outcome is a duplicate
// the collector drops, never a second row.

var KEY = 'herd_queue';

// cfg: url, writeKey, flushAt, flushInterval, maxQueue. storage() returns the
// localStorage to persist to, or nothing to keep events in memory (no
// consent yet, memory mode). canSend() says whether sending is allowed.
export function createQueue(cfg, storage, canSend) {
  var mem = [], broken, busy, timer, fails = 0, healthy = 0, beaconed = {};

  function disk() {
    return !broken && storage();
  }

  function read() {
    var s = disk();
    if (s) try { return JSON.parse(s.getItem(KEY)) || []; } catch (e) {}
    return mem.slice();
  }

  function write(q) {
    var s = disk();
    mem = q;
    if (s) try {
      q.length ? s.setItem(KEY, JSON.stringify(q)) : s.removeItem(KEY);
    } catch (e) {
      broken = 1; // quota or blocked: carry on in memory with what we have
    }
  }

  function remove(batch) {
    var ids = {};
    batch.forEach(function (e) { ids[e.messageId] = 1; });
    write(read().filter(function (e) { return !ids[e.messageId]; }));
  }

  function schedule(ms) {
    if (!timer) timer = setTimeout(function () { timer = 0; flush(); }, ms);
  }

  // take returns the head of q that fits one request: at most 100 events and
  // about 50 KB, under the 64 KB that browsers allow a beacon or keepalive
  // request in flight (one event always goes, even if larger).
  function take(q) {
    for (var n = 0, bytes = 0; n < q.length && n < 100; n++) {
      bytes += new TextEncoder().encode(JSON.stringify(q[n])).length;
      if (n && bytes > 5e4) break;
    }
    return q.slice(0, n);
  }

  function body(batch) {
    var t = new Date().toISOString();
    return JSON.stringify({
      batch: batch.map(function (e) { return Object.assign({}, e, { sentAt: t }); }),
      sentAt: t,
      writeKey: cfg.writeKey,
    });
  }

  // post sends a batch as text/plain (a CORS-safelisted type: no preflight)
  // and resolves true when the batch is done with: accepted, or refused in a
  // way that retrying cannot change (4xx other than 408 and 429).
  // A request that hangs (a black-holed network) is abandoned after 15 s so
  // that the queue moves on to its retry.
  function post(batch, keepalive) {
    var c = typeof AbortController == 'function' && new AbortController(), t = c && setTimeout(function () { c.abort(); }, 15e3);
    return fetch(cfg.url, { method: 'POST', body: body(batch), credentials: 'omit', keepalive: keepalive, signal: c && c.signal }).then(
      function (r) {
        var s = r.status;
        clearTimeout(t);
        if (s > 399 && s < 500 && s != 408 && s != 429) console.warn('herd: collector refused ' + batch.length + ' events: HTTP ' + s);
        return s < 300 || s < 500 && s != 408 && s != 429;
      },
      function () {
        clearTimeout(t);
        return false;
      }
    );
  }

  function beacon(batch) {
    try {
      if (navigator.sendBeacon(cfg.url, body(batch))) return;
    } catch (e) {}
    post(batch, true).then(function (ok) { if (ok) remove(batch); });
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
    return post(batch).then(function (ok) {
      busy = 0;
      healthy = ok;
      fails = ok ? 0 : fails + 1;
      if (ok) remove(batch);
      q = read().length;
      // Backoff doubles from 1 s to a minute, with jitter so that a
      // recovering collector is not hit by every page at once.
      if (q) schedule(fails ? Math.min(6e4, 1e3 * Math.pow(2, fails - 1)) * (0.5 + Math.random() / 2) : q >= cfg.flushAt ? 0 : cfg.flushInterval);
    });
  }

  return {
    read: read,
    flush: flush,

    // push queues an event; false when the queue is full (the oldest events
    // are kept: they are dropped last).
    push: function (e) {
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
    unload: function () {
      var q, batch, sent = [];
      if (!canSend()) return;
      q = read().filter(function (e) { return !beaconed[e.messageId]; });
      while (q.length) {
        batch = take(q);
        q = q.slice(batch.length);
        batch.forEach(function (e) { beaconed[e.messageId] = 1; });
        sent = sent.concat(batch);
        beacon(batch);
      }
      if (healthy) remove(sent);
    },

    // shown is called when the page is visible again: queued events go back
    // to the normal path.
    shown: function () {
      beaconed = {};
      fails = 0;
      if (read().length) schedule(0);
    },

    // persist moves events kept in memory to storage once storage is allowed.
    persist: function () {
      var m = mem, ids = {}, q;
      q = read();
      q.forEach(function (e) { ids[e.messageId] = 1; });
      write(q.concat(m.filter(function (e) { return !ids[e.messageId]; })));
    },

    clear: function () {
      write([]);
    },
  };
}
