package main

import (
	"flag"
	"strings"
)

// bindConnectorFlags binds a connector's flags for herd sync NAME and herd
// sync NAME check: each under its herd up name (--front-rate, read from
// $HERD_FRONT_RATE), so that a variable set for one connector never
// configures another; the short names (--rate) stay as command-line
// aliases that no variable sets.
func bindConnectorFlags(fs *flag.FlagSet, name string, conn connectorFlags) {
	short := flag.NewFlagSet(name, flag.ContinueOnError)
	conn.bind(short, false)
	long := flag.NewFlagSet(name, flag.ContinueOnError)
	conn.bind(long, true) // the same fields, under herd up's names
	short.VisitAll(func(f *flag.Flag) {
		full := f.Name
		if !strings.HasPrefix(full, name+"-") {
			full = name + "-" + f.Name
		}
		lf := long.Lookup(full)
		if lf == nil { // herd up has no such flag: kept as it is
			if fs.Lookup(f.Name) == nil {
				fs.Var(f.Value, f.Name, f.Usage)
			}
			return
		}
		if fs.Lookup(full) == nil {
			fs.Var(lf.Value, full, lf.Usage)
		}
		if f.Name != full && fs.Lookup(f.Name) == nil {
			fs.Var(aliasValue{f.Value}, f.Name, "same as --"+full+" (its variable is $"+envName(full)+")")
		}
	})
}

// aliasValue marks a flag that is another's short name: applyEnv leaves
// it alone, so that its generic variable ($HERD_RATE) sets nothing.
type aliasValue struct{ flag.Value }

func (a aliasValue) IsBoolFlag() bool {
	b, ok := a.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
