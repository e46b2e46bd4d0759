package main

import (
	"flag"
	"io"
	"testing"
	"time"
)

// In herd sync NAME, a connector's flags are read from variables named
// after the connector: $HERD_RATE (meant for another command) sets
// nothing, $HERD_FRONT_RATE does, and the short flags still work.
func TestSyncConnectorFlagsReadTheirOwnVariables(t *testing.T) {
	t.Setenv("HERD_RATE", "7")
	t.Setenv("HERD_TOKEN_FILE", "/elsewhere/token")
	t.Setenv("HERD_FRONT_LOOKBACK", "1m")
	t.Setenv("HERD_LOOKBACK", "1h")
	fs := flag.NewFlagSet("sync front", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := &frontFlags{}
	bindConnectorFlags(fs, "front", f)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	if f.rate != 0.8 || f.tokenFile != "" || f.lookback != time.Minute {
		t.Errorf("rate %v token file %q lookback %v; want 0.8, none, 1m ($HERD_FRONT_LOOKBACK only)", f.rate, f.tokenFile, f.lookback)
	}

	fs = flag.NewFlagSet("sync front", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f = &frontFlags{}
	bindConnectorFlags(fs, "front", f)
	if err := fs.Parse([]string{"--rate", "3", "--front-token-file", "/t"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	if f.rate != 3 || f.tokenFile != "/t" || f.lookback != time.Minute {
		t.Errorf("from the command line: rate %v token file %q lookback %v", f.rate, f.tokenFile, f.lookback)
	}
}
