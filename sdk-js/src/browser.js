// The script served at /sdk.js. It takes over window.herd from the snippet's
// stub, replaying the calls the page made before it loaded, in order. Without
// a stub it reads its settings from its own tag:
//   <script src="https://collect.example.com/sdk.js" data-write-key="KEY"></script>
import { createHerd } from './herd.js';

(function (w) {
  var stub = w.herd, tag = document.currentScript, o;
  if (stub && stub.loaded) return; // this file was included twice
  try {
    o = Object.assign({ writeKey: tag && tag.getAttribute('data-write-key'), apiHost: tag && tag.getAttribute('data-api-host') }, stub && stub._options);
    // By default events go where this script came from, path included, so
    // that serving herd under a site's own /herd/ prefix needs no setting.
    if (!o.apiHost && tag && tag.src) o.apiHost = tag.src.replace(/\/[^/]*$/, '');
    w.herd = createHerd(o, stub && stub.slice ? stub.slice() : []);
  } catch (e) {
    console.warn('herd: ' + e);
  }
})(window);
