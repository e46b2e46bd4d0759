// The SQL editor: CodeMirror 6 with Postgres highlighting and completion of
// the schema, table and column names the signed-in role can read.
import { EditorView, drawSelection, highlightActiveLine, highlightSpecialChars, keymap, lineNumbers, placeholder } from '@codemirror/view';
import { Compartment, EditorState, Prec } from '@codemirror/state';
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import { bracketMatching, defaultHighlightStyle, indentOnInput, syntaxHighlighting } from '@codemirror/language';
import { autocompletion, closeBrackets, closeBracketsKeymap, closeCompletion, completionKeymap } from '@codemirror/autocomplete';
import { sql, PostgreSQL } from '@codemirror/lang-sql';

// setup is CodeMirror's basic setup without search, lint and folding, which
// a query editor does not need and which would grow the bundle.
const setup = [
  lineNumbers(),
  highlightSpecialChars(),
  history(),
  drawSelection(),
  indentOnInput(),
  syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
  bracketMatching(),
  closeBrackets(),
  autocompletion({ activateOnTyping: true }),
  highlightActiveLine(),
  keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, ...completionKeymap, indentWithTab]),
];

// completionSchema turns /api/schema into lang-sql's schema option: keys
// "schema.table" with column completions carrying their type and comment.
export function completionSchema(schemas) {
  const out = {};
  for (const s of schemas || []) {
    for (const t of s.tables || []) {
      out[`${s.name}.${t.name}`] = (t.columns || []).map((c) => ({ label: c.name, type: 'property', detail: c.type, info: c.comment || undefined }));
    }
  }
  return out;
}

export function sqlEditor(parent, { doc = '', onRun, onSave, onChange, readOnly = false } = {}) {
  const lang = new Compartment();
  const keys = Prec.highest(keymap.of([
    { key: 'Mod-Enter', run: (v) => (closeCompletion(v), onRun?.(), true) },
    { key: 'Mod-s', run: () => (onSave?.(), true), preventDefault: true },
  ]));
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        keys,
        setup,
        lang.of(sql({ dialect: PostgreSQL, upperCaseKeywords: false })),
        placeholder('select * from herd.events order by received_at desc limit 100'),
        EditorView.lineWrapping,
        EditorState.readOnly.of(readOnly),
        EditorView.editable.of(!readOnly),
        EditorView.updateListener.of((u) => u.docChanged && onChange?.(u.state.doc.toString())),
        EditorView.contentAttributes.of({ 'aria-label': 'SQL' }),
      ],
    }),
  });
  return {
    view,
    get value() {
      return view.state.doc.toString();
    },
    set value(s) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: s } });
    },
    // selection returns the selected text and where it starts, or the
    // whole document when nothing is selected
    selection() {
      const r = view.state.selection.main;
      return r.empty ? { text: view.state.doc.toString(), from: 0 } : { text: view.state.sliceDoc(r.from, r.to), from: r.from };
    },
    // mark puts the cursor on the word at offset (Postgres's error position)
    mark(offset) {
      const pos = Math.max(0, Math.min(offset, view.state.doc.length));
      const word = view.state.wordAt(pos);
      view.dispatch({ selection: word ? { anchor: word.from, head: word.to } : { anchor: pos }, scrollIntoView: true });
    },
    insert(text) {
      const r = view.state.selection.main;
      view.dispatch({ changes: { from: r.from, to: r.to, insert: text }, selection: { anchor: r.from + text.length } });
      view.focus();
    },
    setSchema(schemas) {
      view.dispatch({ effects: lang.reconfigure(sql({ dialect: PostgreSQL, upperCaseKeywords: false, schema: completionSchema(schemas) })) });
    },
    focus: () => view.focus(),
  };
}
