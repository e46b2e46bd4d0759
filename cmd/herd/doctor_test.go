package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdhq/herd/doctor"
	"github.com/herdhq/herd/instance"
	"github.com/herdhq/herd/internal/natstest"
	"github.com/herdhq/herd/internal/pgtest"
	"github.com/herdhq/herd/internal/secrets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestDoctorExitsOnFailure: herd doctor prints every check and exits 1
// when one fails (a --geoip-db that does not exist), 0 when only warnings
// remain, and 1 on warnings with --strict.
func TestDoctorExitsOnFailure(t *testing.T) {
	t.Setenv("STRIPE_WEBHOOK_SECRET", "")
	t.Setenv("STRIPE_API_KEY", "")
	dbURL := pgtest.New(t)
	dir := t.TempDir()
	base := []string{"doctor", "--data-dir", filepath.Join(dir, "data"), "--database-url", dbURL}
	doctor := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append(append([]string{}, base...), args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}

	code, out, errOut := doctor("--geoip-db", filepath.Join(dir, "GeoLite2-City.mmdb"))
	if code != 1 || !strings.Contains(out, "FAIL  --geoip-db") || !strings.Contains(errOut, "1 checks failed") {
		t.Errorf("herd doctor with a missing --geoip-db: exit %d, want 1 naming it:\n%s%s", code, out, errOut)
	}
	code, out, errOut = doctor()
	if code != 0 {
		t.Errorf("herd doctor with nothing failing: exit %d\n%s%s", code, out, errOut)
	}
	for _, check := range []string{"Stripe webhooks", "lake", "admin listener", "free disk", "herd up", "max_connections", "pg_stat_statements", "clock", "wal_level"} {
		if !strings.Contains(out, check) {
			t.Errorf("herd doctor does not report %q:\n%s", check, out)
		}
	}
	if strings.Contains(out, "warn") {
		if code, _, errOut := doctor("--strict"); code != 1 || !strings.Contains(errOut, "--strict") {
			t.Errorf("herd doctor --strict with warnings: exit %d, want 1\n%s", code, errOut)
		}
	}
}

// TestDoctorChecksTheRunningHerdUp: with a live connection file and no
// flags, herd doctor checks that herd up's database and NATS; a NATS that
// does not answer fails.
func TestDoctorChecksTheRunningHerdUp(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dataDir, natsTokenName)
	if err := secrets.WriteFile(token, "t0ken-of-the-test"); err != nil {
		t.Fatal(err)
	}
	ns := natstest.Run(t)
	in := instance.Info{PID: os.Getpid(), DataDir: dataDir, DatabaseURL: pgtest.New(t), NATSURL: "nats://127.0.0.1:1", NATSTokenFile: token, Stream: "HERD_DOCTOR"}
	if err := instance.Write(dataDir, in); err != nil {
		t.Fatal(err)
	}
	holdLock(t, dataDir)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"doctor", "--data-dir", dataDir}, &out, &errOut)
	if code != 1 || !strings.Contains(out.String(), "FAIL  nats") || !strings.Contains(out.String(), "max_connections") {
		t.Errorf("herd doctor with herd up's NATS away: exit %d, want 1 with FAIL nats and the database checked:\n%s%s", code, out.String(), errOut.String())
	}

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "HERD_DOCTOR", Subjects: []string{"doctor.>"}}); err != nil {
		t.Fatal(err)
	}
	in.NATSURL, in.NATSTokenFile = ns.ClientURL(), ""
	if err := instance.Write(dataDir, in); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	run(context.Background(), []string{"doctor", "--data-dir", dataDir}, &out, &errOut)
	if !strings.Contains(out.String(), "ok    nats") || !strings.Contains(out.String(), "stream HERD_DOCTOR") {
		t.Errorf("herd doctor with herd up's NATS answering: no ok nats line:\n%s%s", out.String(), errOut.String())
	}
}

// TestSecondUpRefused: herd up on a data directory whose herd up runs
// refuses before touching anything (it would stop the first one's Postgres).
func TestSecondUpRefused(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := instance.Write(dataDir, instance.Info{PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	holdLock(t, dataDir)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"up", "--data-dir", dataDir, "--admin-listen", "127.0.0.1:0"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "herd up already runs on "+dataDir) {
		t.Errorf("a second herd up: exit %d, want 1 saying one runs:\n%s", code, errOut.String())
	}
}

// TestUpWarnsAboutHalfSetups: the checks herd up logs at start name each
// setting that accepts work herd will not finish.
func TestUpWarnsAboutHalfSetups(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		warn string // "" for none
	}{
		{"webhook secret without key", map[string]string{"STRIPE_WEBHOOK_SECRET": "whsec_x"}, nil, "STRIPE_WEBHOOK_SECRET is set but --stripe-api-key or $STRIPE_API_KEY is not"},
		{"webhook secret with key", map[string]string{"STRIPE_WEBHOOK_SECRET": "whsec_x", "STRIPE_API_KEY": "rk_x"}, nil, ""},
		{"missing geo database", nil, []string{"--geoip-db", filepath.Join(dir, "none.mmdb")}, "--geoip-db: " + filepath.Join(dir, "none.mmdb") + " does not exist"},
		{"admin listener beyond loopback", nil, []string{"--admin-listen", "0.0.0.0:8081"}, "admin listener: 0.0.0.0:8081 is reachable beyond this machine"},
		{"disk smaller than the stream", nil, []string{"--stream-max-bytes", "9223372036854775807"}, "less than the stream may hold"},
		{"nothing amiss", nil, nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("STRIPE_WEBHOOK_SECRET", "")
			t.Setenv("STRIPE_API_KEY", "")
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			fs := newFlagSet(commands["up"])
			fs.SetOutput(io.Discard)
			if err := fs.Parse(append([]string{"--data-dir", filepath.Join(dir, "data"), "--stream-max-bytes", "1024"}, c.args...)); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			e := &env{stdout: io.Discard, stderr: io.Discard, log: slog.New(slog.NewTextHandler(&logs, nil))}
			warnSetup(e, setupChecks(config[*upFlags]("up")))
			got := logs.String()
			if c.warn == "" && got != "" {
				t.Errorf("warnings for a sound setup:\n%s", got)
			}
			if c.warn != "" && !strings.Contains(got, c.warn) {
				t.Errorf("no warning %q in:\n%s", c.warn, got)
			}
		})
	}
}

// holdLock holds dir's herd up lock, as a running herd up does, until the
// test ends; closing the returned file releases it sooner.
func holdLock(t *testing.T, dir string) *os.File {
	t.Helper()
	f, err := instance.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestDoctorReportsHerdUpsSetup: with no flags, herd doctor shows the setup
// checks of the herd up running on --data-dir (recorded in herd.json at its
// start), not checks of the defaults; with a flag it checks that setting.
// A stale connection file is a warning, one herd refuses a failure.
func TestDoctorReportsHerdUpsSetup(t *testing.T) {
	for _, v := range []string{"STRIPE_WEBHOOK_SECRET", "STRIPE_API_KEY", "HERD_ADMIN_LISTEN", "DATABASE_URL", "HERD_DATABASE_URL"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	stripe := doctor.Webhooks("Stripe", "STRIPE_WEBHOOK_SECRET", true, "--stripe-api-key or $STRIPE_API_KEY", false)
	admin := doctor.AdminListener("0.0.0.0:8081", "the one in /etc/herd/admin-token")
	in := instance.Info{PID: os.Getpid(), DataDir: dataDir, Stream: "HERD_DOCTOR"}
	for _, r := range []doctor.Result{stripe, admin} {
		in.Setup = append(in.Setup, instance.Check{Level: r.Level.String(), Name: r.Check, Message: r.Message, Fix: r.Fix})
	}
	if err := instance.Write(dataDir, in); err != nil {
		t.Fatal(err)
	}
	lock := holdLock(t, dataDir)
	doctorOut := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		run(context.Background(), append([]string{"doctor", "--data-dir", dataDir}, args...), &out, &errOut)
		return out.String() + errOut.String()
	}

	out := doctorOut()
	for _, want := range []string{stripe.Message, admin.Message, "free disk"} {
		if !strings.Contains(out, want) {
			t.Errorf("herd doctor, herd up live: no %q (herd up's setup) in\n%s", want, out)
		}
	}
	if strings.Contains(out, "not configured") || strings.Contains(out, "127.0.0.1:8081") {
		t.Errorf("herd doctor, herd up live: checked the defaults, not herd up's setup:\n%s", out)
	}
	if out := doctorOut("--admin-listen", "127.0.0.1:0"); strings.Contains(out, stripe.Message) || !strings.Contains(out, "not configured") {
		t.Errorf("herd doctor with a flag: want its own checks of that setting:\n%s", out)
	}

	lock.Close()
	if out := doctorOut(); !strings.Contains(out, "warn  herd up") || !strings.Contains(out, "is stale") {
		t.Errorf("herd doctor, stale herd.json: want a warning:\n%s", out)
	}
	if err := os.Chmod(instance.Path(dataDir), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := doctorOut(); !strings.Contains(out, "FAIL  herd up") {
		t.Errorf("herd doctor, herd.json others may read: want a failure:\n%s", out)
	}
}

func TestWebhookSecretsDropEmpty(t *testing.T) {
	got := webhookSecrets(" s3cret , ,new,")
	if len(got) != 2 || got[0] != "s3cret" || got[1] != "new" {
		t.Fatalf("webhookSecrets = %q, want [s3cret new]", got)
	}
	if got := webhookSecrets(","); len(got) != 0 {
		t.Fatalf("webhookSecrets(\",\") = %q, want none (no webhook endpoint)", got)
	}
}
