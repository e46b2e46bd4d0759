// The few values herd keeps on the device: anonymous id, user id and traits,
// session, consent and the unsent queue. In 'cookie' mode the ids go to
// first-party cookies and everything is mirrored to localStorage, so losing
// either one loses nothing; 'localStorage' mode sets no cookie; 'memory' mode
// keeps values for the life of the page only.

var YEAR = 31536000;

// localStore returns window.localStorage when it can be written (it throws in
// some private modes and when storage is blocked), else undefined.
export function localStore() {
  try {
    var s = localStorage;
    s.setItem('herd_t', '1');
    s.removeItem('herd_t');
    return s;
  } catch (e) {}
}

// cookieDomain finds the widest domain the browser lets this page set a
// cookie on, so that www.example.com and app.example.com share one anonymous
// id. Public suffixes (co.uk) are refused by the browser, which is the test.
export function cookieDomain(host) {
  var parts = host.split('.'), i = parts.length - 2, d;
  if (i < 0 || /^[\d.]+$/.test(host)) return '';
  for (; i >= 0; i--) {
    d = parts.slice(i).join('.');
    document.cookie = 'herd_t=1; path=/; domain=' + d;
    if (document.cookie.indexOf('herd_t=1') > -1) {
      document.cookie = 'herd_t=; path=/; max-age=0; domain=' + d;
      return d;
    }
  }
  return '';
}

export function createStore(mode, domain) {
  var mem = {}, ls = mode != 'memory' && localStore(), jar = mode == 'cookie' && navigator.cookieEnabled;
  if (jar && domain == null) domain = cookieDomain(location.hostname);

  function cookie(k, v, age) {
    document.cookie = k + '=' + encodeURIComponent(v) + '; path=/; max-age=' + age + '; SameSite=Lax' +
      (domain ? '; domain=' + domain : '') + (location.protocol == 'https:' ? '; Secure' : '');
  }

  return {
    ls: ls,
    get: function (k) {
      var m = jar && document.cookie.match(new RegExp('(?:^|; )' + k + '=([^;]*)')), v = m ? decodeURIComponent(m[1]) : null;
      if (v == null && ls) try { v = ls.getItem(k); } catch (e) {}
      return v == null ? (k in mem ? mem[k] : null) : v;
    },
    // set stores v under k; c asks for a cookie too (small values only).
    set: function (k, v, c) {
      mem[k] = v;
      if (c && jar) cookie(k, v, YEAR);
      if (ls) try { ls.setItem(k, v); } catch (e) {}
    },
    del: function (k) {
      delete mem[k];
      if (jar) cookie(k, '', 0);
      if (ls) try { ls.removeItem(k); } catch (e) {}
    },
  };
}
