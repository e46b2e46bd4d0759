package main

import (
	"context"
	"flag"
	"time"

	"github.com/herdhq/herd/status"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type statusFlags struct {
	dbFlags
	streamFlags
	nats    natsFlags
	timeout time.Duration
}

func init() {
	register(&command{
		name:    "status",
		summary: "show pipeline health: stream depth, consumer lag, last commit, recent events and rejects",
		help: `herd status reads the stream and its consumers from NATS and counts from the
warehouse: stream depth against its limit, each consumer's pending and
unacknowledged messages, when the writer last committed, events per source in
the last hour and in total, and the most frequent reject reasons of the last
hour. The counts scan herd.events. It exits 1 when NATS or Postgres cannot be
reached.

` + natsHelp,
		flags: func(fs *flag.FlagSet) any {
			var f statusFlags
			f.dbFlags.bind(fs)
			f.streamFlags.bind(fs)
			f.nats.bind(fs, nats.DefaultURL, "NATS server URL(s), comma-separated")
			fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")
			return &f
		},
		run: runStatus,
	})
}

func runStatus(ctx context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return usagef("status takes no arguments")
	}
	f := config[*statusFlags]("status")
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	// A status check must fail fast rather than wait for a server to appear,
	// so no retrying connection here.
	nc, err := f.nats.connectOnce("herd-status", 5*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	db, err := f.dbFlags.open(dctx)
	dcancel()
	if err != nil {
		return err
	}
	defer db.Close()
	r, err := status.Gather(ctx, db, js, f.streamFlags.config(), time.Now())
	if err != nil {
		return err
	}
	return r.Write(e.stdout)
}
