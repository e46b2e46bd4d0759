package chaos

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// profile sizes a run: the short one fits in make test, the full one is
// make chaos.
type profile struct {
	name            string
	load            loadConfig
	phase           time.Duration // load between two faults
	writerKills     int
	collectorKills  int
	postgresRestart int
	postgresDown    time.Duration // how long Postgres stays down
	natsDown        time.Duration // how long the standalone NATS stays down
	drain           time.Duration // bound on the final drain (covers AckWait redelivery)
}

var shortProfile = profile{
	name:            "short",
	load:            loadConfig{workers: 4, batch: 10, pause: 40 * time.Millisecond, retryFor: 30 * time.Second},
	phase:           1500 * time.Millisecond,
	writerKills:     2,
	collectorKills:  1,
	postgresRestart: 1,
	postgresDown:    3 * time.Second,
	natsDown:        3 * time.Second,
	drain:           75 * time.Second,
}

var fullProfile = profile{
	name:            "full",
	load:            loadConfig{workers: 8, batch: 20, pause: 20 * time.Millisecond, retryFor: 45 * time.Second},
	phase:           4 * time.Second,
	writerKills:     5,
	collectorKills:  3,
	postgresRestart: 3,
	postgresDown:    8 * time.Second,
	natsDown:        6 * time.Second,
	drain:           120 * time.Second,
}

func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos suite: skipped under -short")
	}
	runSuite(t, shortProfile)
}

// runSuite runs every fault in turn, each on a fresh deployment, and prints
// one line per fault.
func runSuite(t *testing.T, p profile) {
	pg := privatePostgres(t)
	var lines []string
	report := func(r result) { lines = append(lines, r.String()) }
	t.Cleanup(func() {
		fmt.Printf("chaos %s summary:\n  %s\n", p.name, strings.Join(lines, "\n  "))
	})
	for _, sc := range []struct {
		name string
		run  func(t *testing.T) result
	}{
		{"writer-sigkill", func(t *testing.T) result {
			return writerKills(t, newLab(t, pg, labConfig{natsNodes: 1, collectors: 1, writers: 2}), p)
		}},
		{"collector-sigkill", func(t *testing.T) result {
			return collectorKills(t, newLab(t, pg, labConfig{natsNodes: 1, collectors: 2, writers: 1}), p)
		}},
		{"postgres-restart", func(t *testing.T) result {
			return postgresRestart(t, newLab(t, pg, labConfig{natsNodes: 1, collectors: 1, writers: 2}), p)
		}},
		{"nats-restart", func(t *testing.T) result {
			return natsRestart(t, newLab(t, pg, labConfig{natsNodes: 1, collectors: 1, writers: 1}), p)
		}},
		{"jetstream-node-loss", func(t *testing.T) result {
			return nodeLoss(t, newLab(t, pg, labConfig{natsNodes: 3, replicas: 3, collectors: 2, writers: 2}), p)
		}},
		{"stream-full", func(t *testing.T) result {
			return streamFull(t, newLab(t, pg, labConfig{natsNodes: 1, collectors: 1, writers: 1, streamMaxBytes: 256 << 10}), p)
		}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			// A fault that stops the scenario early still gets its line.
			r := result{fault: sc.name}
			defer func() {
				r.otherFailed = t.Failed()
				report(r)
			}()
			r = sc.run(t)
			t.Logf("%s took %v", sc.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// writerKills SIGKILLs the writers in turn under load: batches they held
// uncommitted are redelivered, batches they committed but did not ack are
// redelivered too and must not produce a second row.
func writerKills(t *testing.T, l *lab, p profile) result {
	ld := startLoad(t, l, "wk", p.load)
	ld.waitAcked(100, 30*time.Second)
	for i := range p.writerKills {
		w := l.writers[i%len(l.writers)]
		time.Sleep(p.phase)
		l.crash(w)
		time.Sleep(p.phase / 3)
		l.start(w)
		l.waitWriter(i % len(l.writers))
	}
	time.Sleep(p.phase)
	r := verify(t, l, ld, fmt.Sprintf("writer-sigkill×%d", p.writerKills), p.drain)
	l.requireAlive(l.all()...)
	return r
}

// collectorKills SIGKILLs a collector under load: requests in flight lose
// their connection and are retried on the other collector.
func collectorKills(t *testing.T, l *lab, p profile) result {
	ld := startLoad(t, l, "ck", p.load)
	ld.waitAcked(100, 30*time.Second)
	for i := range p.collectorKills {
		c := l.collectors[i%len(l.collectors)]
		time.Sleep(p.phase)
		l.crash(c)
		time.Sleep(p.phase / 2)
		l.start(c)
		l.waitCollector(i % len(l.collectors))
	}
	time.Sleep(p.phase)
	r := verify(t, l, ld, fmt.Sprintf("collector-sigkill×%d", p.collectorKills), p.drain)
	l.requireAlive(l.all()...)
	return r
}

// postgresRestart stops Postgres immediately (a crash: no checkpoint, open
// transactions lost) and starts it again after a while. Meanwhile the
// collectors keep acknowledging (the stream absorbs the backlog) and the
// writers retry; they must resume on their own.
func postgresRestart(t *testing.T, l *lab, p profile) result {
	ctx := context.Background()
	ld := startLoad(t, l, "pg", p.load)
	ld.waitAcked(100, 30*time.Second)
	for range p.postgresRestart {
		time.Sleep(p.phase)
		if err := l.pg.Stop(ctx, "immediate"); err != nil {
			t.Fatal(err)
		}
		before := ld.led.counts().acked
		time.Sleep(p.postgresDown)
		if got := ld.led.counts().acked; got <= before {
			t.Errorf("collectors acknowledged nothing while Postgres was down (%d before, %d after): the stream should absorb the backlog", before, got)
		}
		l.requireAlive(l.writers...)
		if err := l.pg.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Resuming on their own: no restart, the writers must be ready again.
	for i := range l.writers {
		l.waitWriter(i)
	}
	time.Sleep(p.phase)
	r := verify(t, l, ld, fmt.Sprintf("postgres-restart×%d", p.postgresRestart), p.drain)
	l.requireAlive(l.all()...)
	return r
}

// natsRestart SIGKILLs the standalone NATS server and starts it again on the
// same store. While it is down the collector must answer 503 with
// Retry-After, and nothing it acknowledged may be lost.
func natsRestart(t *testing.T, l *lab, p profile) result {
	ld := startLoad(t, l, "nr", p.load)
	ld.waitAcked(100, 30*time.Second)
	time.Sleep(p.phase)
	ns := l.nats[0]
	l.crash(ns)
	// A reply already on its way when the server died may still arrive;
	// after that, nothing may be acknowledged until the server is back.
	time.Sleep(300 * time.Millisecond)
	before := ld.led.counts()
	time.Sleep(p.natsDown)
	during := ld.led.counts()
	if during.acked != before.acked {
		t.Errorf("collector acknowledged %d events while NATS was down: a 200 must mean stored", during.acked-before.acked)
	}
	if during.responses5xx == before.responses5xx {
		t.Errorf("collector gave no 5xx while NATS was down (%+v)", during)
	}
	l.start(ns)
	if err := waitTCP(strings.TrimPrefix(l.natsURLs[0], "nats://"), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	ld.waitAcked(100, 60*time.Second)
	time.Sleep(p.phase)
	r := verify(t, l, ld, "nats-restart", p.drain)
	l.requireAlive(l.all()...)
	return r
}

// nodeLoss SIGKILLs one member of a 3-node JetStream cluster holding a
// replicas-3 stream; the other two keep quorum and the pipeline carries on.
// The member stays down to the end: the check runs on two nodes.
func nodeLoss(t *testing.T, l *lab, p profile) result {
	ld := startLoad(t, l, "nl", p.load)
	ld.waitAcked(100, 60*time.Second)
	time.Sleep(p.phase)
	l.crash(l.nats[0])
	ld.waitAcked(200, 60*time.Second)
	time.Sleep(2 * p.phase)
	r := verify(t, l, ld, "jetstream-node-loss", p.drain)
	l.requireAlive(append(l.collectors, l.writers...)...)
	return r
}

// streamFull takes Postgres away from a deployment whose stream is small, so
// the backlog fills the stream: from then on the collector must answer 503,
// not 200. Once Postgres is back and the writer has drained the backlog, the
// collector must accept events again and the clients' retries succeed.
func streamFull(t *testing.T, l *lab, p profile) result {
	ctx := context.Background()
	ld := startLoad(t, l, "sf", p.load)
	ld.waitAcked(50, 30*time.Second)
	if err := l.pg.Stop(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	before := ld.led.counts()
	deadline := time.Now().Add(30 * time.Second)
	for ld.led.counts().responses5xx == before.responses5xx {
		if time.Now().After(deadline) {
			t.Fatalf("no 503 within 30s of Postgres going down with a %s stream limit (%+v)", "256 KiB", ld.led.counts())
		}
		time.Sleep(50 * time.Millisecond)
	}
	full := ld.led.counts()
	time.Sleep(p.phase)
	if got := ld.led.counts(); got.acked > full.acked+p.load.workers*p.load.batch {
		t.Errorf("collector kept acknowledging with a full stream: %d acked after the first 503, %d more", full.acked, got.acked-full.acked)
	}
	if err := l.pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	l.waitWriter(0)
	// After the drain the stream has room again: new events must get 200s.
	if !ld.tryWaitAcked(200, 45*time.Second) {
		t.Errorf("stream-full: the collector still refuses events 45s after Postgres came back (%+v); %s", ld.led.counts(), l.streamState())
	}
	time.Sleep(p.phase)
	r := verify(t, l, ld, "stream-full", p.drain)
	if r.c.gaveUp > 0 {
		t.Errorf("stream-full: %d events never accepted after Postgres came back and the backlog drained", r.c.gaveUp)
	}
	l.requireAlive(l.all()...)
	return r
}
