// Package warehouse is herd's Postgres side outside the write path: opening
// the database, sources and their write keys, partition upkeep, and mirroring
// sources into the collectors' key-value bucket.
package warehouse

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/herdhq/herd"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Open connects a pool to the warehouse and checks it answers.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	if url == "" {
		return nil, errors.New("no database: set DATABASE_URL or --database-url (postgres://user@host:5432/db)")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "herd"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redact(url), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %w", redact(url), err)
	}
	return pool, nil
}

func redact(url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return "the database"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

const keyAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// NewWriteKey returns a random 32-character write key.
func NewWriteKey() string {
	var b strings.Builder
	for range 32 {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(keyAlphabet))))
		b.WriteByte(keyAlphabet[n.Int64()])
	}
	return b.String()
}

// CreateSource inserts a source. An empty write key gets a random one.
func CreateSource(ctx context.Context, db *pgxpool.Pool, s herd.Source) (herd.Source, error) {
	if s.Name == "" {
		return s, herd.Errorf(herd.ErrInvalid, "a source needs a name")
	}
	if s.Kind == "" {
		s.Kind = herd.KindBrowser
	}
	if s.Kind != herd.KindBrowser && s.Kind != herd.KindServer {
		return s, herd.Errorf(herd.ErrInvalid, "source kind %q: want browser or server", s.Kind)
	}
	if s.WriteKey == "" {
		s.WriteKey = NewWriteKey()
	}
	if s.AllowedOrigins == nil {
		s.AllowedOrigins = []string{}
	}
	err := db.QueryRow(ctx, `INSERT INTO herd.sources (name, write_key, kind, allowed_origins, anonymize_ip, rate_limit)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at`,
		s.Name, s.WriteKey, s.Kind, s.AllowedOrigins, s.AnonymizeIP, s.RateLimit).Scan(&s.ID, &s.CreatedAt)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return s, herd.Errorf(herd.ErrInvalid, "a source with that name or write key already exists (%s)", pe.ConstraintName)
	}
	if err != nil {
		return s, fmt.Errorf("create source %s: %w", s.Name, err)
	}
	return s, nil
}

// EnsureSource returns the source of that name, creating it if missing.
func EnsureSource(ctx context.Context, db *pgxpool.Pool, s herd.Source) (herd.Source, bool, error) {
	got, err := SourceByName(ctx, db, s.Name)
	if err == nil {
		return got, false, nil
	}
	if !errors.Is(err, herd.ErrNotFound) {
		return s, false, err
	}
	got, err = CreateSource(ctx, db, s)
	return got, err == nil, err
}

const sourceCols = `id, name, write_key, kind, allowed_origins, anonymize_ip, revoked_at IS NOT NULL, created_at, rate_limit`

func scanSource(row pgx.Row) (herd.Source, error) {
	var s herd.Source
	err := row.Scan(&s.ID, &s.Name, &s.WriteKey, &s.Kind, &s.AllowedOrigins, &s.AnonymizeIP, &s.Revoked, &s.CreatedAt, &s.RateLimit)
	return s, err
}

// SourceByName looks a source up by name.
func SourceByName(ctx context.Context, db *pgxpool.Pool, name string) (herd.Source, error) {
	s, err := scanSource(db.QueryRow(ctx, `SELECT `+sourceCols+` FROM herd.sources WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return s, herd.Errorf(herd.ErrNotFound, "no source named %q", name)
	}
	return s, err
}

// Sources lists every source, revoked ones included.
func Sources(ctx context.Context, db *pgxpool.Pool) ([]herd.Source, error) {
	rows, err := db.Query(ctx, `SELECT `+sourceCols+` FROM herd.sources ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list sources: %w", err)
	}
	defer rows.Close()
	var out []herd.Source
	for rows.Next() {
		s, err := scanSource(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// RevokeSource marks the source's write key revoked; collectors refuse it
// within a second through the mirror.
func RevokeSource(ctx context.Context, db *pgxpool.Pool, name string) error {
	tag, err := db.Exec(ctx, `UPDATE herd.sources SET revoked_at = coalesce(revoked_at, now()) WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("revoke source %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return herd.Errorf(herd.ErrNotFound, "no source named %q", name)
	}
	return nil
}

// SetRateLimit changes a source's rate limit (events/s; nil: the
// collector's default, 0: unlimited). Collectors apply it within a second.
func SetRateLimit(ctx context.Context, db *pgxpool.Pool, name string, limit *float64) error {
	tag, err := db.Exec(ctx, `UPDATE herd.sources SET rate_limit = $2 WHERE name = $1`, name, limit)
	if err != nil {
		return fmt.Errorf("set rate limit of source %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return herd.Errorf(herd.ErrNotFound, "no source named %q", name)
	}
	return nil
}
