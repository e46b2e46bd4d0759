// Package rollups turns a directory of SQL files into views and materialized
// views in the warehouse, applied in dependency order, and refreshes the
// materialized ones on their schedule, logging every run in herd.rollup_runs.
package rollups

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind is what a rollup file creates.
type Kind string

const (
	View         Kind = "view"
	Materialized Kind = "materialized"
)

// Rollup is one SQL file: a CREATE VIEW or CREATE MATERIALIZED VIEW,
// optionally followed by statements such as CREATE UNIQUE INDEX.
type Rollup struct {
	Name    string        // schema.relation, as displayed and stored in herd.rollups
	Schema  string        // schema the object lives in
	Relname string        // relation name inside Schema
	Kind    Kind          // view or materialized
	Every   time.Duration // refresh interval of a materialized view; 0 for views
	SQL     string        // the whole file
	File    string        // path it was read from
	Deps    []string      // names of other rollups the SQL reads, found in its text
}

// Config configures applying and refreshing rollups. The zero value works.
type Config struct {
	Dir            string        // directory of *.sql files (default "rollups"); subdirectories are ignored
	Schema         string        // schema for rollups whose name is unqualified (default "rollups")
	DefaultEvery   time.Duration // refresh interval of a materialized view without a header (default 1h)
	RefreshTimeout time.Duration // statement timeout of one refresh (default 30m)
	Tick           time.Duration // how often the scheduler looks for due work (default 30s)
}

func (c Config) withDefaults() Config {
	if c.Dir == "" {
		c.Dir = "rollups"
	}
	if c.Schema == "" {
		c.Schema = "rollups"
	}
	if c.DefaultEvery <= 0 {
		c.DefaultEvery = time.Hour
	}
	if c.RefreshTimeout <= 0 {
		c.RefreshTimeout = 30 * time.Minute
	}
	if c.Tick <= 0 {
		c.Tick = 30 * time.Second
	}
	return c
}

// LoadDir reads every *.sql file directly in cfg.Dir (subdirectories, such
// as examples/, are left alone) and returns the rollups sorted so that each
// comes after the rollups it reads. A dependency cycle is an error that
// names the cycle.
func LoadDir(cfg Config) ([]Rollup, error) {
	cfg = cfg.withDefaults()
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("read rollups directory %s: %w", cfg.Dir, err)
	}
	var rs []Rollup
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		path := filepath.Join(cfg.Dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read rollup %s: %w", path, err)
		}
		r, err := Parse(path, string(b), cfg)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return Order(rs, cfg)
}

// refreshHeader matches "-- refresh: 15m" (also "-- refresh every 1d") in
// the comment lines that open a file.
var refreshHeader = regexp.MustCompile(`(?i)^--\s*refresh(?:\s+every)?\s*[:=]?\s*(\S+)\s*$`)

// Parse reads one rollup file's text.
func Parse(file, sql string, cfg Config) (Rollup, error) {
	cfg = cfg.withDefaults()
	r := Rollup{SQL: sql, File: file}
	for _, line := range strings.Split(sql, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "--") {
			break
		}
		if m := refreshHeader.FindStringSubmatch(line); m != nil {
			d, err := parseEvery(m[1])
			if err != nil {
				return r, fmt.Errorf("rollup %s: refresh header %q: %w", file, line, err)
			}
			r.Every = d
		}
	}
	toks := lex(sql)
	// CREATE [OR REPLACE] [MATERIALIZED] VIEW [IF NOT EXISTS] name
	i := 0
	want := func(words ...string) bool {
		if i+len(words) > len(toks) {
			return false
		}
		for k, w := range words {
			if t := toks[i+k]; t.kind != tokIdent || t.quoted || t.text != w {
				return false
			}
		}
		i += len(words)
		return true
	}
	if !want("create") {
		return r, fmt.Errorf("rollup %s: must start with CREATE VIEW or CREATE MATERIALIZED VIEW", file)
	}
	want("or", "replace")
	r.Kind = View
	if want("materialized") {
		r.Kind = Materialized
	}
	if !want("view") {
		return r, fmt.Errorf("rollup %s: must start with CREATE VIEW or CREATE MATERIALIZED VIEW", file)
	}
	want("if", "not", "exists")
	name, _ := chainAt(toks, i)
	switch len(name) {
	case 1:
		r.Schema, r.Relname = cfg.Schema, name[0]
	case 2:
		r.Schema, r.Relname = name[0], name[1]
	default:
		return r, fmt.Errorf("rollup %s: cannot read the view's name after CREATE ... VIEW", file)
	}
	r.Name = r.Schema + "." + r.Relname
	if r.Kind == Materialized && r.Every == 0 {
		r.Every = cfg.DefaultEvery
	}
	if r.Kind == View {
		r.Every = 0
	}
	return r, nil
}

func parseEvery(s string) (time.Duration, error) {
	// Go durations stop at hours; rollups are often daily.
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return 0, fmt.Errorf("want a positive number of days like 1d")
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want a positive duration like 15m, 1h or 1d")
	}
	return d, nil
}

// Order fills each rollup's Deps from the names its SQL mentions and sorts
// the rollups so that dependencies come first (ties by name, so the order is
// stable). Matching names in the text can over-approximate (a column that
// shares a rollup's name adds an edge), which only constrains the order; it
// never misses a real reference written as name or schema.name.
func Order(rs []Rollup, cfg Config) ([]Rollup, error) {
	cfg = cfg.withDefaults()
	byName := map[string]int{}
	for i, r := range rs {
		if j, dup := byName[r.Name]; dup {
			return nil, fmt.Errorf("rollups %s and %s both create %s", rs[j].File, r.File, r.Name)
		}
		byName[r.Name] = i
	}
	for i := range rs {
		seen := map[string]bool{}
		rs[i].Deps = nil
		toks := lex(rs[i].SQL)
		for k := 0; k < len(toks); {
			chain, next := chainAt(toks, k)
			if len(chain) == 0 {
				k++
				continue
			}
			k = next
			var cands []string
			switch len(chain) {
			case 1:
				// Unqualified names resolve through the search_path apply sets.
				cands = []string{cfg.Schema + "." + chain[0], "public." + chain[0]}
			default:
				cands = []string{chain[0] + "." + chain[1]}
			}
			for _, c := range cands {
				if _, ok := byName[c]; ok && c != rs[i].Name && !seen[c] {
					seen[c] = true
					rs[i].Deps = append(rs[i].Deps, c)
					break
				}
			}
		}
		sort.Strings(rs[i].Deps)
	}
	return topo(rs)
}

// topo sorts rollups so that every Deps entry precedes its dependent.
func topo(rs []Rollup) ([]Rollup, error) {
	byName := map[string]Rollup{}
	names := make([]string, 0, len(rs))
	for _, r := range rs {
		byName[r.Name] = r
		names = append(names, r.Name)
	}
	sort.Strings(names)
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var out []Rollup
	var stack []string
	var visit func(n string) error
	visit = func(n string) error {
		switch state[n] {
		case done:
			return nil
		case visiting:
			start := 0
			for i, s := range stack {
				if s == n {
					start = i
				}
			}
			cycle := append(append([]string{}, stack[start:]...), n)
			return fmt.Errorf("rollups form a dependency cycle: %s; break it by removing one of these references", strings.Join(cycle, " -> "))
		}
		state[n] = visiting
		stack = append(stack, n)
		for _, d := range byName[n].Deps {
			if _, ok := byName[d]; !ok {
				continue
			}
			if err := visit(d); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		out = append(out, byName[n])
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type tokKind int

const (
	tokIdent tokKind = iota
	tokDot
	tokOther
)

type token struct {
	kind   tokKind
	text   string // identifiers: lowercased unless quoted
	quoted bool
}

// lex splits SQL into identifiers, dots and everything else, skipping
// comments, string literals and dollar-quoted bodies, so that names inside
// them are not taken for references.
func lex(s string) []token {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			depth := 0 // Postgres block comments nest
			for i < len(s) {
				if strings.HasPrefix(s[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(s[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		case c == '\'':
			escapes := i > 0 && (s[i-1] == 'e' || s[i-1] == 'E')
			i++
			for i < len(s) {
				if escapes && s[i] == '\\' {
					i += 2
					continue
				}
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						i += 2
						continue
					}
					i++
					break
				}
				i++
			}
			toks = append(toks, token{kind: tokOther})
		case c == '"':
			var b strings.Builder
			i++
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			toks = append(toks, token{kind: tokIdent, text: b.String(), quoted: true})
		case c == '$':
			if m := dollarTag.FindString(s[i:]); m != "" {
				end := strings.Index(s[i+len(m):], m)
				if end < 0 {
					i = len(s)
				} else {
					i += len(m) + end + len(m)
				}
				toks = append(toks, token{kind: tokOther})
			} else {
				i++
				toks = append(toks, token{kind: tokOther})
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentPart(s[j]) {
				j++
			}
			toks = append(toks, token{kind: tokIdent, text: strings.ToLower(s[i:j])})
			i = j
		case c == '.':
			toks = append(toks, token{kind: tokDot})
			i++
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		default:
			toks = append(toks, token{kind: tokOther})
			i++
		}
	}
	return toks
}

var dollarTag = regexp.MustCompile(`^\$([A-Za-z_][A-Za-z0-9_]*)?\$`)

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') || c == '$' }

// chainAt reads a dotted name (a.b.c) starting at toks[i] and returns its
// parts and the index after it; no parts when toks[i] is not an identifier.
func chainAt(toks []token, i int) ([]string, int) {
	var parts []string
	for i < len(toks) && toks[i].kind == tokIdent {
		parts = append(parts, toks[i].text)
		i++
		if i+1 < len(toks) && toks[i].kind == tokDot && toks[i+1].kind == tokIdent {
			i++
			continue
		}
		break
	}
	return parts, i
}
