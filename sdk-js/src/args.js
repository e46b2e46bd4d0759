// Argument shapes follow analytics.js, so that a site can switch by renaming
// the global: up to n leading ids or names (strings, numbers, or null to skip
// one), then properties or traits, then options, with a callback anywhere
// after them.
export function parseArgs(args, n) {
  var s = [], o = [], f, i = 0, a;
  for (; i < args.length && s.length < n; i++) {
    a = args[i];
    if (a != null && (typeof a == 'object' || typeof a == 'function')) break;
    s.push(a == null ? null : String(a));
  }
  for (; i < args.length; i++) typeof args[i] == 'function' ? (f = args[i]) : o.push(args[i]);
  return { s: s, p: Object.assign({}, o[0]), o: o[1] || {}, f: f };
}

var UTM = { source: 0, medium: 0, campaign: 'name', term: 0, content: 0 };

// campaign reads the UTM parameters of a query string into the shape of
// Segment's context.campaign (utm_campaign becomes name).
export function campaign(search) {
  var q = new URLSearchParams(search), c, k, v;
  for (k in UTM) {
    v = q.get('utm_' + k);
    if (v) (c = c || {})[UTM[k] || k] = v;
  }
  return c;
}
