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
	fs.IntVar(&f.cfg.MaxViews, "max-views", 200, "event views at most: the event names with the most events in the window get one (names are client input)")
	fs.IntVar(&f.cfg.MinUsers, "min-users", 1, "distinct users (user id, else anonymous id) an event name needs in the window to get a view; raise it on a public site")
}

func init() {
	register(&command{
		name:    "views refresh",
		summary: "create or update one view per track event name (herd.track_<name>) with its properties as columns",
		help: "Reads the track events of the window, and for each event name creates or replaces a view in schema herd " +
			"whose columns are the event's top-level properties, typed from the data (numeric, boolean, text, jsonb). " +
			"Names are derived from the event name (lower case, [a-z0-9_], at most 63 bytes, a hash added when two names would collide) " +
			"and recorded in herd.event_views; a view once named keeps its name. herd up runs this periodically (with the defaults). " +
			"Event names are client input, so at most --max-views names get a view: those with the most events in the window among those " +
			"seen from at least --min-users users. A view whose name is still seen but no longer selected is dropped, unless something depends on it " +
			"(then it is kept and listed); views of names no longer seen stay while there is room. Views are made in transactions of at most 50, " +
			"so that a refresh never fills the server's lock table.",
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
			fmt.Fprintf(e.stdout, "views: %d created, %d replaced, %d unchanged, %d dropped, %d retained, %d failed\n",
				res.Created, res.Replaced, res.Unchanged, res.Dropped, res.Retained, len(res.Failed))
			if n := res.BelowMinUsers + res.OverMaxViews; n > 0 {
				fmt.Fprintf(e.stdout, "  %d event names without a view: %d below --min-users %d, %d over --max-views %d\n",
					n, res.BelowMinUsers, f.cfg.MinUsers, res.OverMaxViews, f.cfg.MaxViews)
			}
			for _, v := range res.Kept {
				fmt.Fprintf(e.stdout, "  kept herd.%s: no longer selected, but something depends on it\n", v)
			}
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
