// uuid returns a random (version 4) UUID. getRandomValues is used rather than
// randomUUID because the latter exists only in secure contexts, and sites
// served over plain http must still get ids that do not collide.
export function uuid() {
  var b = crypto.getRandomValues(new Uint8Array(16)), s = '', i = 0;
  b[6] = (b[6] & 15) | 64;
  b[8] = (b[8] & 63) | 128;
  for (; i < 16; i++) s += (i == 4 || i == 6 || i == 8 || i == 10 ? '-' : '') + (b[i] + 256).toString(16).slice(1);
  return s;
}
