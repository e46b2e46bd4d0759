// Command naive is the baseline herd is measured against: a net/http handler
// that checks the write key, decodes each event and stores it with one INSERT
// per event before answering, as a first attempt at an event collector would.
// It serves the same paths as the collector so the same load generator drives
// both.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

const schema = `CREATE TABLE IF NOT EXISTS naive_events (
	message_id  text PRIMARY KEY,
	type        text NOT NULL,
	event       text,
	user_id     text,
	anonymous_id text,
	"timestamp" timestamptz NOT NULL,
	received_at timestamptz NOT NULL,
	context     jsonb,
	properties  jsonb
)`

const insertSQL = `INSERT INTO naive_events (message_id, type, event, user_id, anonymous_id, "timestamp", received_at, context, properties)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (message_id) DO NOTHING`

type event struct {
	Type        string          `json:"type"`
	Event       string          `json:"event"`
	MessageID   string          `json:"messageId"`
	UserID      string          `json:"userId"`
	AnonymousID string          `json:"anonymousId"`
	Timestamp   *time.Time      `json:"timestamp"`
	Context     json.RawMessage `json:"context"`
	Properties  json.RawMessage `json:"properties"`
}

type server struct {
	db       *pgxpool.Pool
	writeKey string
	log      *slog.Logger
}

func main() {
	fs := flag.NewFlagSet("naive", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8090", "address to serve /v1/track and /v1/batch on")
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "Postgres to insert into (DATABASE_URL)")
	writeKey := fs.String("write-key", "", "the one accepted write key")
	conns := fs.Int("conns", 16, "Postgres connections")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *dbURL, *writeKey, int32(*conns), log); err != nil {
		fmt.Fprintf(os.Stderr, "naive: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, listen, dbURL, writeKey string, conns int32, log *slog.Logger) error {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return fmt.Errorf("parse database URL %q: %w", dbURL, err)
	}
	cfg.MaxConns = conns
	db, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", cfg.ConnConfig.Host, err)
	}
	defer db.Close()
	if _, err := db.Exec(ctx, schema); err != nil {
		return fmt.Errorf("create naive_events: %w", err)
	}
	s := &server{db: db, writeKey: writeKey, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/track", s.track)
	mux.HandleFunc("POST /v1/batch", s.batch)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	log.Info("naive collector listening", "addr", ln.Addr().String())
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Basic ") {
		return false
	}
	dec, err := base64.StdEncoding.DecodeString(h[6:])
	if err != nil {
		return false
	}
	user, _, _ := strings.Cut(string(dec), ":")
	return user == s.writeKey
}

func (s *server) track(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		http.Error(w, `{"success":false}`, http.StatusUnauthorized)
		return
	}
	var ev event
	if err := json.NewDecoder(io.LimitReader(r.Body, 32<<10)).Decode(&ev); err != nil {
		http.Error(w, `{"success":false,"error":"bad JSON"}`, http.StatusBadRequest)
		return
	}
	if err := s.insert(r.Context(), &ev, time.Now()); err != nil {
		s.log.Warn("insert event", "message_id", ev.MessageID, "err", err)
		http.Error(w, `{"success":false}`, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"success":true}`)
}

func (s *server) batch(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		http.Error(w, `{"success":false}`, http.StatusUnauthorized)
		return
	}
	var b struct {
		Batch []event `json:"batch"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 500<<10)).Decode(&b); err != nil {
		http.Error(w, `{"success":false,"error":"bad JSON"}`, http.StatusBadRequest)
		return
	}
	now := time.Now()
	for i := range b.Batch {
		if err := s.insert(r.Context(), &b.Batch[i], now); err != nil {
			s.log.Warn("insert event", "message_id", b.Batch[i].MessageID, "err", err)
			http.Error(w, `{"success":false}`, http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"success":true}`)
}

func (s *server) insert(ctx context.Context, ev *event, now time.Time) error {
	if ev.MessageID == "" {
		ev.MessageID = uuid.NewString()
	}
	ts := now
	if ev.Timestamp != nil {
		ts = *ev.Timestamp
	}
	_, err := s.db.Exec(ctx, insertSQL, ev.MessageID, ev.Type, ev.Event, ev.UserID, ev.AnonymousID, ts, now, nullJSON(ev.Context), nullJSON(ev.Properties))
	return err
}

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return []byte(b)
}
