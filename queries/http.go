package queries

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Handler serves saved query snapshots:
//
//	GET /q/              the saved queries, linked
//	GET /q/NAME          latest successful snapshot as an HTML page (?run=ID for an earlier one)
//	GET /q/NAME.csv      the same as CSV (header row, then the values)
//	GET /q/NAME.json     the same as JSON
//
// Mount it on the admin listener: mux.Handle("/q/", queries.Handler(db, log)).
// Anyone who reaches the listener can read every snapshot, which is why the
// admin listener binds to localhost by default.
func Handler(db *pgxpool.Pool, log *slog.Logger) http.Handler {
	h := &handler{db: db, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /q/{$}", h.index)
	mux.HandleFunc("GET /q/{name}", h.snapshot)
	return mux
}

type handler struct {
	db  *pgxpool.Pool
	log *slog.Logger
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	qs, err := New(h.db, h.log, Config{}).List(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := indexPage.Execute(w, qs); err != nil {
		h.log.Warn("render query index", "error", err)
	}
}

func (h *handler) snapshot(w http.ResponseWriter, r *http.Request) {
	name, format := r.PathValue("name"), "html"
	for _, ext := range []string{"csv", "json"} {
		if n, ok := strings.CutSuffix(name, "."+ext); ok {
			name, format = n, ext
		}
	}
	if ValidName(name) != nil {
		http.Error(w, "no such query", http.StatusNotFound)
		return
	}
	var id int64
	if s := r.URL.Query().Get("run"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v <= 0 {
			http.Error(w, "run must be a snapshot id", http.StatusBadRequest)
			return
		}
		id = v
	}
	run, err := Snapshot(r.Context(), h.db, name, id)
	if errors.Is(err, ErrNotFound) {
		http.Error(w, "query "+name+" has no successful run yet (herd queries run "+name+")", http.StatusNotFound)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	// Snapshots never change: an explicit run can be cached forever, the
	// latest only briefly.
	if id > 0 {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	switch format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
		cw := csv.NewWriter(w)
		_ = cw.Write(run.Columns)
		rec := make([]string, len(run.Columns))
		for _, row := range run.Rows {
			for i := range rec {
				rec[i] = ""
				if i < len(row) && row[i] != nil {
					rec[i] = *row[i]
				}
			}
			_ = cw.Write(rec)
		}
		cw.Flush()
	case "json":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"query": run.Query, "run_id": run.ID, "ran_at": run.Started.UTC().Format(time.RFC3339Nano),
			"duration_ms": run.Duration.Milliseconds(), "sql": run.SQL, "columns": run.Columns,
			"rows": nonNil(run.Rows), "row_count": run.RowCount, "truncated": run.Truncated,
		})
	default:
		hist, err := History(r.Context(), h.db, name, 20)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		var failing *RunSummary
		if len(hist) > 0 && hist[0].Error != "" && id == 0 {
			failing = &hist[0]
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		err = page.Execute(w, map[string]any{"Run": run, "History": hist, "Failing": failing, "Pinned": id > 0})
		if err != nil {
			h.log.Warn("render query page", "query", name, "error", err)
		}
	}
}

func nonNil(rows [][]*string) [][]*string {
	if rows == nil {
		return [][]*string{}
	}
	return rows
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Error("query page", "path", r.URL.Path, "error", err)
	http.Error(w, "could not read the snapshot; see the herd log", http.StatusInternalServerError)
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"val": func(v *string) string {
		if v == nil {
			return "NULL"
		}
		return *v
	},
}

// html/template escapes every value; SQL and results are user data.
var page = template.Must(template.New("page").Funcs(funcs).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Run.Query}} · herd</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}pre{background:#f7f7f7;padding:1em;overflow:auto}.null{color:#999}.warn{color:#a00}
</style></head><body>
<h1>{{.Run.Query}}</h1>
<p>Ran {{when .Run.Started}} in {{.Run.Duration}} · {{.Run.RowCount}} rows{{if .Run.Truncated}} (first {{len .Run.Rows}} kept){{end}}
· <a href="{{.Run.Query}}.csv?run={{.Run.ID}}">CSV</a> · <a href="{{.Run.Query}}.json?run={{.Run.ID}}">JSON</a>
{{if .Pinned}} · <a href="{{.Run.Query}}">latest</a>{{end}}</p>
{{with .Failing}}<p class="warn">The latest run ({{when .Started}}) failed: {{.Error}}. Showing the last successful one.</p>{{end}}
<pre>{{.Run.SQL}}</pre>
<table><thead><tr>{{range .Run.Columns}}<th>{{.}}</th>{{end}}</tr></thead><tbody>
{{range .Run.Rows}}<tr>{{range .}}{{if .}}<td>{{val .}}</td>{{else}}<td class="null">NULL</td>{{end}}{{end}}</tr>
{{end}}</tbody></table>
<h2>Runs</h2><ul>
{{range .History}}<li>{{if .Error}}{{when .Started}} <span class="warn">failed: {{.Error}}</span>{{else}}<a href="?run={{.ID}}">{{when .Started}}</a> · {{.RowCount}} rows{{end}}</li>
{{end}}</ul>
</body></html>
`))

var indexPage = template.Must(template.New("index").Funcs(funcs).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Saved queries · herd</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}</style></head><body>
<h1>Saved queries</h1><ul>
{{range .}}<li><a href="{{.Name}}">{{.Name}}</a>{{if .Every}} · every {{.Every}}{{end}}{{with .LastRun}} · last run {{when .}}{{end}}</li>
{{else}}<li>None yet: herd queries save NAME --file query.sql</li>{{end}}
</ul></body></html>
`))
