package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/herdhq/herd/instance"
)

// A command finds the database, NATS and lake it works on in this order:
// its flags, the HERD_* (and DATABASE_URL) variables, then the connection
// file of the herd up running on --data-dir. It never guesses beyond that:
// with none of them, it says which it tried.

// dataDirUsage documents the --data-dir every command reaching herd gets.
const dataDirUsage = "data directory of the herd up this command belongs to: while herd up runs, its " + instance.FileName +
	" there supplies the database, NATS, stream and lake that no flag or variable gives"

// addDataDir gives a command that reaches the database, NATS or the lake a
// --data-dir flag, unless it has its own.
func addDataDir(fs *flag.FlagSet) {
	if fs.Lookup("data-dir") != nil {
		return
	}
	for _, n := range []string{"database-url", "nats-url", "lake"} {
		if fs.Lookup(n) != nil {
			fs.String("data-dir", "./data", dataDirUsage)
			return
		}
	}
}

// locate fills the flags of fs that neither the command line nor the
// environment set from the connection file of the herd up running on
// --data-dir, and notes in the database and NATS flags what was tried, for
// the error of a command that finds neither.
//
// When a herd up runs there but only one of the database and NATS comes
// from its file (the other from a flag or variable), locate says so on
// stderr: the command may be reporting on two systems at once.
func locate(fs *flag.FlagSet, stderr io.Writer) {
	dd := fs.Lookup("data-dir")
	if dd == nil {
		return
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	dir := dd.Value.String()
	in, err := instance.Find(dir)
	given := map[string]bool{}
	for k := range set {
		given[k] = true
	}
	fill := func(name, v string) {
		if f := fs.Lookup(name); f != nil && !set[name] && v != "" {
			_ = fs.Set(name, v)
			set[name] = true
		}
	}
	if lake := fs.Lookup("lake"); lake != nil && !set["lake"] {
		// herd up's lake is DATA-DIR/lake, running or not.
		fill("lake", filepath.Join(dir, "lake"))
	}
	if err != nil {
		note := err.Error()
		if f := fs.Lookup("database-url"); f != nil {
			if v, ok := f.Value.(*dbURLValue); ok {
				v.d.tried = note
			}
		}
		if f := fs.Lookup("nats-url"); f != nil {
			if v, ok := f.Value.(*natsURLValue); ok {
				v.n.tried = note
			}
		}
		return
	}
	fill("lake", in.Lake)
	fill("database-url", in.DatabaseURL)
	if f := fs.Lookup("nats-url"); f != nil && !set["nats-url"] {
		v, ok := f.Value.(*natsURLValue)
		switch {
		case ok && v.n.explicit:
		case in.NATSURL == "":
			if ok {
				v.n.tried = fmt.Sprintf("the herd up of %s (pid %d) accepts no NATS clients beyond its process: restart it without --nats-listen= (empty)", dir, in.PID)
			}
		default:
			fill("nats-url", in.NATSURL)
			if !set["nats-creds"] && !set["nats-token"] {
				fill("nats-token-file", in.NATSTokenFile)
			}
		}
	}
	fill("stream", in.Stream)
	fill("subject-prefix", in.SubjectPrefix)
	fill("sources-bucket", in.SourcesBucket)
	warnMixed(fs, stderr, dir, given, set)
}

// warnMixed prints one line when the database and NATS come from different
// places: one from a flag or variable, the other from the connection file.
func warnMixed(fs *flag.FlagSet, stderr io.Writer, dir string, given, set map[string]bool) {
	db, nats := fs.Lookup("database-url"), fs.Lookup("nats-url")
	if db == nil || nats == nil || db.Value.String() == "" || nats.Value.String() == "" || given["database-url"] == given["nats-url"] {
		return
	}
	if v, ok := nats.Value.(*natsURLValue); ok && v.n.explicit {
		return
	}
	const flags = "--database-url/$HERD_DATABASE_URL/$DATABASE_URL"
	from := map[bool]string{true: "a flag or variable", false: "the herd up of " + dir + " (" + instance.Path(dir) + ")"}
	which := flags
	if given["nats-url"] {
		which = "--nats-url/$HERD_NATS_URL"
	}
	fmt.Fprintf(stderr, "herd: warning: the database comes from %s, NATS from %s: they may be two different herds; give both (or neither: unset %s)\n",
		from[given["database-url"]], from[given["nats-url"]], which)
}

// dbURLValue is --database-url: a string, with what locate tried beside it.
type dbURLValue struct{ d *dbFlags }

func (v *dbURLValue) String() string {
	if v == nil || v.d == nil {
		return ""
	}
	return v.d.url
}
func (v *dbURLValue) Set(s string) error { v.d.url = s; return nil }

// natsURLValue is --nats-url, likewise.
type natsURLValue struct{ n *natsFlags }

func (v *natsURLValue) String() string {
	if v == nil || v.n == nil {
		return ""
	}
	return v.n.url
}
func (v *natsURLValue) Set(s string) error { v.n.url = s; return nil }

// triedDB is the end of the error of a command that found no database.
func (d *dbFlags) triedDB() string {
	s := "no database: tried --database-url, $HERD_DATABASE_URL, $DATABASE_URL"
	if d.tried != "" {
		s += " and the herd up of --data-dir: " + d.tried
	}
	return s + "; start herd up there, give --data-dir, or set DATABASE_URL (postgres://user@host:5432/db)"
}

// triedNATS is the error of a command that found no NATS server.
func (n *natsFlags) triedNATS() string {
	s := "no NATS server: tried --nats-url, $HERD_NATS_URL"
	if n.tried != "" {
		s += " and the herd up of --data-dir: " + n.tried
	}
	return s + "; start herd up there, give --data-dir, or give --nats-url (nats://127.0.0.1:4222 for a server of your own)"
}
