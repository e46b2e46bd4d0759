package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/herdhq/herd/views"
)

type viewsFlags struct {
	dbFlags
	cfg views.Config
}

func (f *viewsFlags) bind(fs *flag.FlagSet) {
	f.dbFlags.bind(fs)
	durationFlag(fs, &f.cfg.Window, "window", 7*24*time.Hour, "how far back track events are read for names and property types")
	fs.IntVar(&f.cfg.MaxColumns, "max-columns", 200, "property columns per view at most (the most frequent are kept)")
}

func init() {
	register(&command{
		name:    "views refresh",
		summary: "create or update one view per track event name (herd.track_<name>) with its properties as columns",
		help: "Reads the track events of the window, and for each event name creates or replaces a view in schema herd " +
			"whose columns are the event's top-level properties, typed from the data (numeric, boolean, text, jsonb). " +
			"Names are derived from the event name (lower case, [a-z0-9_], at most 63 bytes, a hash added when two names would collide) " +
			"and recorded in herd.event_views; a view once named keeps its name. herd up runs this periodically.",
		flags: func(fs *flag.FlagSet) any {
			var f viewsFlags
			f.bind(fs)
			return &f
		},
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) != 0 {
				return usagef("views refresh takes no arguments")
			}
			f := config[*viewsFlags]("views refresh")
			db, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			res, err := views.Refresh(ctx, db, f.cfg, e.log)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "views: %d created, %d replaced, %d unchanged, %d failed\n", res.Created, res.Replaced, res.Unchanged, len(res.Failed))
			failed := make([]string, 0, len(res.Failed))
			for ev := range res.Failed {
				failed = append(failed, ev)
			}
			sort.Strings(failed)
			for _, ev := range failed {
				fmt.Fprintf(e.stdout, "  %q: %v\n", ev, res.Failed[ev])
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d event views could not be refreshed (see above); drop what depends on them, then run herd views refresh again", len(failed))
			}
			return nil
		},
	})
}
