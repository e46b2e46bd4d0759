// Click capture. An element with data-herd-event is always tracked under that
// name, with its other data-herd-* attributes as properties. With
// autocapture, links and buttons are tracked too as "Element Clicked", with
// their text and a selector that survives restyling (ids and element
// positions, never class names, which build tools rename).

var AUTO = 'a,button,[role=button],input[type=submit],input[type=button]';
var ID = /^[A-Za-z][\w-]*$/;

export function selector(el) {
  var parts = [], p, n, same, c, tag;
  for (; el && el.nodeType == 1 && parts.length < 6; el = p) {
    tag = el.tagName.toLowerCase();
    if (el.id && ID.test(el.id)) {
      parts.unshift('#' + el.id);
      break;
    }
    if (tag == 'body' || tag == 'html') {
      parts.unshift(tag);
      break;
    }
    p = el.parentElement;
    n = same = 0;
    if (p) for (c = p.firstElementChild; c; c = c.nextElementSibling) if (c.tagName == el.tagName && (same++, c == el)) n = same;
    parts.unshift(same > 1 ? tag + ':nth-of-type(' + n + ')' : tag);
  }
  return parts.join('>');
}

function text(el) {
  return (el.textContent || el.value || '').replace(/\s+/g, ' ').trim().slice(0, 100);
}

// clickEvent returns [event name, properties] for a click on target, or
// undefined when the click is not one herd records.
export function clickEvent(target, auto) {
  var el = target && target.closest && target.closest('[data-herd-event]'), p = {}, a, i, k;
  if (el) {
    for (i = 0; i < el.attributes.length; i++) {
      a = el.attributes[i];
      k = a.name.slice(10);
      if (a.name.slice(0, 10) == 'data-herd-' && k != 'event') p[k.replace(/-/g, '_')] = a.value;
    }
    return [el.getAttribute('data-herd-event'), p];
  }
  el = auto && target && target.closest && target.closest(AUTO);
  if (el && !el.closest('[data-herd-ignore]')) {
    p = { tag: el.tagName.toLowerCase(), text: text(el), selector: selector(el) };
    if (el.id) p.id = el.id;
    if (el.href) p.href = el.href;
    return ['Element Clicked', p];
  }
}
