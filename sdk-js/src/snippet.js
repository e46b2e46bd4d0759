// The loader snippet pages paste. It defines window.herd as a queue whose
// methods record each call with its time, then loads sdk.js from the API
// host, which replays the calls in order. The placeholders are replaced with
// JSON strings; the last argument takes further options.
(function (w, d, key, host, opts) {
  var h = (w.herd = w.herd || []);
  if (h.invoked) return;
  h.invoked = 1;
  'page track identify group alias reset consent ready flush'.split(' ').forEach(function (m) {
    h[m] = function () {
      h.push([m, [].slice.call(arguments), Date.now()]);
      return h;
    };
  });
  h.load = function (k, o) {
    var s = d.createElement('script');
    h._options = o = Object.assign({ writeKey: k }, o);
    s.async = true;
    s.src = (o.apiHost || '') + '/sdk.js';
    (d.head || d.documentElement).appendChild(s);
  };
  h.load(key, Object.assign({ apiHost: host }, opts));
})(window, document, '__HERD_WRITE_KEY__', '__HERD_API_HOST__', {});
