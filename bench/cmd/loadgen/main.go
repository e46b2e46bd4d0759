// Command loadgen sends Segment-style track requests to a collector, closed
// loop (most accepted) or open loop (fixed offered rate, latency from the
// scheduled send), and prints what it measured as JSON on stdout. With
// --database-url it also times reply-to-row latency on a sample of events.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/herdhq/herd/bench/internal/load"
)

func main() {
	var cfg load.Config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "collector base URL")
	fs.StringVar(&cfg.WriteKey, "write-key", os.Getenv("HERD_WRITE_KEY"), "write key sent as HTTP Basic user (HERD_WRITE_KEY)")
	mode := fs.String("mode", "closed", "closed (connections send back to back) or open (fixed rate)")
	fs.Float64Var(&cfg.Rate, "rate", 5000, "open loop: offered events per second")
	fs.IntVar(&cfg.Batch, "batch", 1, "events per request: 1 posts /v1/track, more post /v1/batch")
	fs.IntVar(&cfg.Conns, "conns", 64, "connections")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	fs.Int64Var(&cfg.MaxEvents, "max-events", 5_000_000, "send at most this many events")
	fs.StringVar(&cfg.IDPrefix, "id-prefix", "", "prefix of every messageId (default: unique per run)")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "warehouse to poll for reply-to-row latency (optional)")
	fs.IntVar(&cfg.SampleEvery, "sample-every", 20, "reply-to-row: watch one event in this many")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", 5*time.Millisecond, "reply-to-row: how often the warehouse is polled")
	fs.DurationVar(&cfg.RowTimeout, "row-timeout", 15*time.Second, "reply-to-row: how long to wait for the last sampled rows")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	switch *mode {
	case "open":
		cfg.Open = true
	case "closed":
	default:
		fmt.Fprintf(os.Stderr, "loadgen: --mode %q: want open or closed\n", *mode)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := load.Run(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: write result: %v\n", err)
		os.Exit(1)
	}
}
