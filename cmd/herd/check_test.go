package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/internal/herdtest"
)

// Acceptance 3 through the command: herd check exits 0 on a load every
// store took in, and 1, naming both hours, once a row is removed from
// herd.events and a lake file in another hour is deleted. It exits 2 on a
// usage error.
func TestCheckCommand(t *testing.T) {
	p := herdtest.Start(t, herdtest.Options{})
	lakeDir := t.TempDir()
	acfg := archive.Config{Stream: p.Stream, FileMaxRows: 5, FileMaxAge: 500 * time.Millisecond}
	a := archive.New(acfg, archive.NewDir(lakeDir), p.JS, p.Log, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	now := time.Now().UTC().Truncate(time.Hour)
	hours := []time.Time{now.Add(-2 * time.Hour), now.Add(-time.Hour)}
	for h, hour := range hours {
		for req := range 2 { // two messages, two files an hour
			var batch []map[string]any
			for i := range 5 {
				batch = append(batch, map[string]any{"type": "track", "event": "E", "userId": "u",
					"messageId": fmt.Sprintf("c-%d-%d-%d", h, req, i), "timestamp": hour.Add(time.Duration(req*5+i) * time.Minute)})
			}
			body, _ := json.Marshal(map[string]any{"batch": batch})
			hr, _ := http.NewRequest(http.MethodPost, p.URL+"/v1/batch", bytes.NewReader(body))
			hr.Header.Set("Content-Type", "application/json")
			hr.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(p.Server.WriteKey+":")))
			resp, err := http.DefaultClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST /v1/batch: %s", resp.Status)
			}
		}
	}
	if n := p.WaitRows(t, 20, 30*time.Second, `SELECT count(*) FROM herd.events`); n != 20 {
		t.Fatalf("herd.events holds %d rows, want 20", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := archive.Lag(ctx, p.JS, acfg)
		if err == nil && st.Lag == 0 && st.AckFloor == st.StreamLast {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archiver not caught up: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	args := []string{"check", "--database-url", p.DBURL, "--nats-url", p.NATS.ClientURL(), "--stream", p.Stream.Name,
		"--subject-prefix", p.Stream.Prefix, "--sources-bucket", p.Stream.SourcesKV, "--lake", lakeDir, "--since", "6h"}
	herdCheck := func(extra ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append(append([]string{}, args...), extra...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := herdCheck(); code != 0 || !strings.Contains(out, "stores agree: accepted 20, postgres 20, lake 20") {
		t.Fatalf("after the load: exit %d\n%s%s", code, out, errOut)
	}

	if _, err := p.DB.Exec(ctx, `DELETE FROM herd.events WHERE message_id = 'c-0-1-2'`); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(lakeDir, fmt.Sprintf("source=%d", p.Server.ID), "date="+hours[1].Format(time.DateOnly), fmt.Sprintf("hour=%d", hours[1].Hour()), "*.parquet"))
	if len(files) < 2 {
		t.Fatalf("want two lake files in %s, have %v", hours[1], files)
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := herdCheck("--source", p.Server.Name)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{hours[0].Format("2006-01-02 15:00"), hours[1].Format("2006-01-02 15:00"), "postgres misses 1", "lake misses 5", "2 of 2 hours differ"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// herd status shows the newest run.
	var sout, serr bytes.Buffer
	if code := run(context.Background(), []string{"status", "--database-url", p.DBURL, "--nats-url", p.NATS.ClientURL(), "--stream", p.Stream.Name,
		"--subject-prefix", p.Stream.Prefix, "--sources-bucket", p.Stream.SourcesKV}, &sout, &serr); code != 0 {
		t.Fatalf("herd status: exit %d\n%s", code, serr.String())
	}
	if !strings.Contains(sout.String(), "2 of 2 hours differ") {
		t.Errorf("herd status does not show the last check:\n%s", sout.String())
	}

	for _, bad := range [][]string{{"--source", "nope"}, {"--since", "-1h"}, {"extra"}} {
		if code, _, errOut := herdCheck(bad...); code != 2 {
			t.Errorf("herd check %v: exit %d, want 2\n%s", bad, code, errOut)
		}
	}
}
