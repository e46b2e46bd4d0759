// Command herdbench is `make bench`: it starts herd on a private Postgres
// cluster, loads it from a separate load-generator process, measures the raw
// COPY ceiling and a naive baseline in the same run, prints one markdown table
// and writes every figure as JSON.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herdhq/herd/bench/internal/harness"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("herdbench", flag.ContinueOnError)
	quick := fs.Bool("quick", os.Getenv("BENCH_QUICK") != "", "a run of about two minutes: smaller backlog, shorter phases (BENCH_QUICK)")
	jsonPath := fs.String("json", "", "write the report as JSON to this path")
	workDir := fs.String("work-dir", "", "keep the cluster, data and logs here (default: a temporary directory, removed)")
	binDir := fs.String("bin-dir", "", "prebuilt herd, loadgen and naive binaries (default: built with go build)")
	profileDir := fs.String("profile-dir", "", "write CPU profiles of herd under each load here")
	backlog := fs.Int("backlog", 0, "events in the backlog the writer drains (default 500,000; 100,000 with --quick)")
	backlogFrame := fs.Int("backlog-frame", 16, "events per stream message in the backlog (the collector packs concurrent requests' events into frames; 1 is one message per event)")
	phase := fs.Duration("phase", 0, "length of each load phase (default 8s; 4s with --quick; the enrichment-off closed loops take two halves)")
	rates := fs.String("rates", "5000,10000,20000", "open-loop offered rates, events/s, comma-separated")
	singleConns := fs.Int("single-conns", 64, "closed loop, 1-event requests: connections")
	batchConns := fs.Int("batch-conns", 16, "closed loop, batches: connections")
	batchSize := fs.Int("batch-size", 50, "events per batch request")
	onlyCgroup := fs.Bool("only-cgroup", os.Getenv("BENCH_ONLY_CGROUP") != "", "run only the phase under a 512 MB cgroup memory limit, after a backlog of 10,000 (BENCH_ONLY_CGROUP)")
	writers := fs.Int("writers", 2, "herd --writers")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	o := harness.Options{}
	if *quick {
		o = harness.Quick()
	}
	if *onlyCgroup {
		o.OnlyCgroup, o.Backlog = true, 10_000
	}
	if *backlog > 0 {
		o.Backlog = *backlog
	}
	o.BacklogFrame = *backlogFrame
	if *phase > 0 {
		o.Phase = *phase
	}
	for _, s := range strings.Split(*rates, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			fmt.Fprintf(os.Stderr, "herdbench: --rates: %q is not a positive number\n", s)
			return 2
		}
		o.Rates = append(o.Rates, v)
	}
	o.WorkDir, o.Keep, o.BinDir, o.ProfileDir = *workDir, *workDir != "", *binDir, *profileDir
	o.SingleConns, o.BatchConns, o.BatchSize, o.Writers = *singleConns, *batchConns, *batchSize, *writers
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))

	// Bounded whatever happens: a stuck phase ends the run.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	rep, err := harness.Run(ctx, o)
	if rep == nil {
		fmt.Fprintf(os.Stderr, "herdbench: %v\n", err)
		return 1
	}
	code := 0
	if err != nil { // the run finished, and lost or duplicated events
		fmt.Fprintf(os.Stderr, "herdbench: %v\n", err)
		code = 1
	}
	if err := rep.Markdown(os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "herdbench: %v\n", err)
		return 1
	}
	if *jsonPath != "" {
		if err := rep.WriteJSON(*jsonPath); err != nil {
			fmt.Fprintf(os.Stderr, "herdbench: %v\n", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "herdbench: report written to %s\n", *jsonPath)
	}
	return code
}
