// The SQL workspace: schema browser, editor, run/cancel, results table and
// chart, downloads, and saving a query under a name.
import { get, post, session } from './api.js';
import { clear, download, errorBox, fmtMs, fmtNum, h } from './dom.js';
import { sqlEditor } from './editor.js';
import { resultTable, toCSV, toJSON } from './table.js';
import { chartView } from './chart.js';
import { navigate, onLeave } from './main.js';

const isMac = /Mac|iPhone|iPad/.test(navigator.platform);
export const MOD = isMac ? '⌘' : 'Ctrl';

// uuid makes a query id; crypto.randomUUID exists only in secure contexts
// (https or localhost), and the console may be served over plain http on a
// LAN address.
function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// handoff lets another page open a query in the workspace.
let handoff = null;
// kept is the last result and its status line, shown again when the reader
// comes back to the workspace from another page.
let kept = null;

// forget drops what the workspace keeps of the signed-in person, when the
// session ends: the next person at this browser must not see it.
export function forget() {
  kept = null;
  handoff = null;
}

const draftKey = () => 'herd.console.draft.' + session.user;
export function openInWorkspace(sql) {
  handoff = sql;
  navigate('/sql');
}

export function workspacePage() {
  document.title = 'SQL — herd console';
  let running = null; // {id, controller}
  let result = null;
  let chartKind = 'auto';

  const status = h('span', { class: 'status', role: 'status', 'aria-live': 'polite' }, 'Ready.');
  const readOnly = h('input', { type: 'checkbox', id: 'read-only', checked: true });
  const runBtn = h('button', { type: 'button', class: 'primary', id: 'run', title: `Run (${MOD}+Enter); runs the selection when there is one`, onclick: () => run() }, 'Run ', h('kbd', {}, `${MOD}+Enter`));
  const cancelBtn = h('button', { type: 'button', id: 'cancel', disabled: true, title: 'Cancel the running query (Esc)', onclick: () => cancel() }, 'Cancel');
  const saveBtn = h('button', { type: 'button', id: 'save', title: `Save (${MOD}+S)`, onclick: () => openSave() }, 'Save…');
  const csvBtn = h('button', { type: 'button', id: 'download-csv', disabled: true, onclick: () => result && download('result.csv', 'text/csv', toCSV(result.columns, result.rows)) }, 'CSV');
  const jsonBtn = h('button', { type: 'button', id: 'download-json', disabled: true, onclick: () => result && download('result.json', 'application/json', toJSON(result.columns, result.rows)) }, 'JSON');
  const out = h('section', { class: 'results', id: 'results', 'aria-label': 'Results' },
    h('p', { class: 'empty' }, `Write a query and press Run (${MOD}+Enter). Tables you can read are listed on the left; click a name to insert it.`));
  const saveBox = h('div', { class: 'save-box', hidden: true });
  const editorHost = h('div', { class: 'editor' });
  const schemaTree = h('div', { class: 'schema-tree', 'aria-label': 'Schemas' }, h('p', { class: 'empty' }, 'Loading schemas…'));
  const filter = h('input', { type: 'search', placeholder: 'Filter tables', 'aria-label': 'Filter tables', oninput: () => renderSchema() });
  let schemas = [];

  const editor = sqlEditor(editorHost, {
    doc: handoff ?? localStorage.getItem(draftKey()) ?? 'select type, count(*)\nfrom herd.events\ngroup by type\norder by 2 desc',
    onRun: () => run(),
    onSave: () => openSave(),
    onChange: (v) => localStorage.setItem(draftKey(), v),
  });
  const handoffUsed = handoff !== null;
  handoff = null;

  async function run() {
    if (running) return;
    const { text, from } = editor.selection();
    if (!text.trim()) return;
    const id = uuid();
    const controller = new AbortController();
    running = { id, controller };
    runBtn.disabled = true;
    cancelBtn.disabled = false;
    const started = performance.now();
    status.textContent = 'Running…';
    const tick = setInterval(() => (status.textContent = `Running… ${fmtMs(performance.now() - started)}`), 250);
    try {
      const r = await post('/api/query', { sql: text, write: !readOnly.checked }, { headers: { 'X-Query-Id': id }, signal: controller.signal });
      r.columns ||= [];
      r.rows ||= [];
      result = r;
      kept = { result: r, status: '' };
      status.textContent = `${fmtNum(r.row_count ?? r.rows.length)} row${(r.row_count ?? r.rows.length) === 1 ? '' : 's'} in ${fmtMs(r.duration_ms)}${r.truncated ? ` — truncated to the first ${fmtNum(r.rows.length)}` : ''}`;
      kept.status = status.textContent;
      showResult(r);
    } catch (err) {
      if (err.name === 'AbortError') {
        status.textContent = 'Cancelled.';
      } else {
        result = kept = null;
        status.textContent = 'Failed.';
        clear(out, errorBox(err));
        // Postgres counts characters from 1 in the text it was sent
        if (err.position > 0) editor.mark(from + [...text].slice(0, err.position - 1).join('').length);
      }
    } finally {
      clearInterval(tick);
      running = null;
      runBtn.disabled = false;
      cancelBtn.disabled = true;
      csvBtn.disabled = jsonBtn.disabled = !result;
    }
  }

  async function cancel() {
    if (!running) return;
    const { id, controller } = running;
    status.textContent = 'Cancelling…';
    try {
      await post('/api/query/cancel', { id });
    } catch {}
    // the server answers the query with Postgres's "canceling statement" error;
    // give it a moment, then stop waiting
    setTimeout(() => running && running.id === id && controller.abort(), 3000);
  }

  function showResult(r) {
    if (!r.columns || !r.columns.length) {
      clear(out, h('p', { class: 'empty' }, 'The statement ran; it returned no columns.'));
      return;
    }
    clear(out,
      chartView(r.columns, r.rows, { kind: chartKind, onKind: (k) => (chartKind = k) }),
      resultTable(r.columns, r.rows));
  }

  function openSave() {
    const name = h('input', { id: 'save-name', required: true, pattern: '[a-z0-9_\\-]+', placeholder: 'signups_per_day', title: 'lower-case letters, digits, _ and -', spellcheck: false });
    const every = h('input', { id: 'save-every', placeholder: 'e.g. 1h, 24h; empty: run only when asked', spellcheck: false });
    const msg = h('div');
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Save and run');
    clear(saveBox, h('form', {
      onsubmit: async (e) => {
        e.preventDefault();
        submit.disabled = true;
        try {
          const r = await post('/api/queries', { name: name.value.trim(), sql: editor.value, every: every.value.trim() });
          saveBox.hidden = true;
          navigate('/q/' + encodeURIComponent(r.name || name.value.trim()));
        } catch (err) {
          clear(msg, errorBox(err));
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('h2', {}, 'Save query'),
    h('p', { class: 'hint' }, 'The query is saved as your role and run once now; its link shows the latest result to signed-in colleagues, computed with your permissions.'),
    h('label', { for: 'save-name' }, 'Name'), name,
    h('label', { for: 'save-every' }, 'Schedule (optional)'), every,
    msg,
    h('div', { class: 'buttons' }, submit, h('button', { type: 'button', onclick: () => (saveBox.hidden = true) }, 'Close'))));
    saveBox.hidden = false;
    name.focus();
  }

  function renderSchema() {
    const q = filter.value.trim().toLowerCase();
    const items = [];
    for (const s of schemas) {
      const tables = (s.tables || []).filter((t) => !q || `${s.name}.${t.name}`.toLowerCase().includes(q) || (t.columns || []).some((c) => c.name.toLowerCase().includes(q)));
      if (!tables.length) continue;
      items.push(h('details', { open: !!q || s.name === 'herd' || schemas.length < 4 },
        h('summary', { title: s.comment || '' }, h('span', { class: 'schema-name' }, s.name), s.comment ? h('small', {}, s.comment) : null),
        tables.map((t) => h('details', { class: 'table-node' },
          h('summary', { title: t.comment || '' },
            h('button', { type: 'button', class: 'ins', title: 'Insert into the editor', onclick: (e) => (e.preventDefault(), editor.insert(`${s.name}.${t.name}`)) }, t.name),
            t.kind && t.kind !== 'table' ? h('span', { class: 'kind' }, t.kind) : null),
          t.comment ? h('p', { class: 'comment' }, t.comment) : null,
          h('ul', { class: 'columns' }, (t.columns || []).map((c) => h('li', { title: c.comment || '' },
            h('button', { type: 'button', class: 'ins', onclick: () => editor.insert(c.name) }, c.name),
            h('span', { class: 'type' }, c.type),
            c.comment ? h('div', { class: 'comment' }, c.comment) : null)))))));
    }
    clear(schemaTree, items.length ? items : h('p', { class: 'empty' }, q ? 'No table matches.' : 'Your role cannot read any table yet. Ask an administrator for grants.'));
  }

  get('/api/schema').then((r) => {
    schemas = r.schemas || [];
    editor.setSchema(schemas);
    renderSchema();
  }).catch((err) => clear(schemaTree, errorBox(err)));

  const onEsc = (e) => {
    if (e.key === 'Escape' && running && !document.querySelector('.cm-tooltip-autocomplete')) cancel();
  };
  document.addEventListener('keydown', onEsc);
  if (kept && !handoffUsed) {
    result = kept.result;
    status.textContent = kept.status;
    csvBtn.disabled = jsonBtn.disabled = false;
    showResult(result);
  }
  onLeave(() => {
    document.removeEventListener('keydown', onEsc);
    running?.controller.abort();
  });

  const page = h('div', { class: 'workspace' },
    h('aside', { class: 'schema' }, h('h2', {}, 'Schemas'), filter, schemaTree),
    h('div', { class: 'work' },
      editorHost,
      h('div', { class: 'toolbar' },
        runBtn, cancelBtn,
        h('label', { class: 'toggle', title: 'Read-only runs in a read-only transaction; untick to run INSERT/UPDATE/DDL as your role' }, readOnly, ' Read-only'),
        h('span', { class: 'sep' }),
        saveBtn,
        h('span', { class: 'sep' }),
        h('span', { class: 'label' }, 'Download'), csvBtn, jsonBtn,
        status),
      saveBox,
      out));
  setTimeout(() => editor.focus(), 0);
  return page;
}
