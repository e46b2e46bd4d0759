package privacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/herdhq/herd/stream"
	"github.com/herdhq/herd/warehouse"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// Suppress adds the person's ids to herd.suppressions: collectors then drop
// their future events (answered 200, counted, stored nowhere), and do not
// record their refused events as rejects. A user id brings the anonymous
// ids linked to the user at the time (as Delete finds them; recorded in the
// request's linked_ids): a suppressed user who logs out still sends as
// them. Only hashes of the ids are kept in herd.suppressions
// (stream.SuppressKey); the request in herd.privacy_requests has the ids.
// It returns the request id and how many ids were newly suppressed.
func Suppress(ctx context.Context, db *pgxpool.Pool, p Person) (int64, int64, error) {
	return changeSuppressions(ctx, db, "suppress", p, `INSERT INTO herd.suppressions (key, kind, request_id)
		SELECT k, kd, $3 FROM unnest($1::text[], $2::text[]) AS u(k, kd) ON CONFLICT DO NOTHING`)
}

// Unsuppress removes the person's ids from herd.suppressions, with the
// anonymous ids earlier suppress requests linked to the users.
func Unsuppress(ctx context.Context, db *pgxpool.Pool, p Person) (int64, int64, error) {
	return changeSuppressions(ctx, db, "unsuppress", p, `DELETE FROM herd.suppressions
		WHERE key = ANY($1::text[]) AND cardinality($2::text[]) >= 0 AND $3::bigint IS NOT NULL`)
}

// suppressLinked returns the anonymous ids a suppression of the users
// covers: for suppress, those linked to them now; for unsuppress, those
// earlier suppress requests of the users recorded, so that unsuppressing
// undoes what suppressing did, not more.
func suppressLinked(ctx context.Context, db *pgxpool.Pool, kind string, users []string) ([]string, error) {
	if len(users) == 0 {
		return nil, nil
	}
	if kind == "suppress" {
		_, linked, err := resolve(ctx, db, Person{UserIDs: users})
		return linked, err
	}
	rows, err := db.Query(ctx, `SELECT DISTINCT l FROM herd.privacy_requests r, unnest(r.linked_ids) AS l
		WHERE r.kind = 'suppress' AND r.user_ids && $1::text[] ORDER BY 1`, users)
	if err != nil {
		return nil, fmt.Errorf("find the anonymous ids suppressed with the users: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("find the anonymous ids suppressed with the users: %w", err)
	}
	return ids, nil
}

func changeSuppressions(ctx context.Context, db *pgxpool.Pool, kind string, p Person, sql string) (int64, int64, error) {
	if err := p.validate(); err != nil {
		return 0, 0, err
	}
	if len(p.Sources) > 0 {
		return 0, 0, errors.New("suppression applies to every source: drop --source")
	}
	id, err := begin(ctx, db, kind, p)
	if err != nil {
		return 0, 0, err
	}
	linked, err := suppressLinked(ctx, db, kind, p.UserIDs)
	if err != nil {
		return id, 0, finish(ctx, db, id, nil, Counts{}, err)
	}
	var keys, kinds []string
	for _, u := range p.UserIDs {
		keys, kinds = append(keys, stream.SuppressKey(stream.SuppressUserID, u)), append(kinds, stream.SuppressUserID)
	}
	for _, a := range append(slices.Clone(p.AnonymousIDs), linked...) {
		keys, kinds = append(keys, stream.SuppressKey(stream.SuppressAnonymousID, a)), append(kinds, stream.SuppressAnonymousID)
	}
	tag, err := db.Exec(ctx, sql, keys, kinds, id)
	var n int64
	if err != nil {
		err = fmt.Errorf("%s in herd.suppressions: %w", kind, err)
	} else {
		n = tag.RowsAffected()
	}
	return id, n, finish(ctx, db, id, linked, Counts{"suppressions": n}, err)
}

// SyncSuppressions makes kv hold exactly the keys of herd.suppressions. The
// bucket's keys are listed before the table is read, so an entry put by a
// concurrent mirror after the listing is never deleted on the strength of
// an older snapshot.
func SyncSuppressions(ctx context.Context, db *pgxpool.Pool, kv jetstream.KeyValue) error {
	existing, err := kv.Keys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return fmt.Errorf("list keys of bucket %s: %w", kv.Bucket(), err)
	}
	rows, err := db.Query(ctx, `SELECT key, kind FROM herd.suppressions`)
	if err != nil {
		return fmt.Errorf("read herd.suppressions: %w", err)
	}
	live := map[string]string{}
	for rows.Next() {
		var k, kind string
		if err := rows.Scan(&k, &kind); err != nil {
			rows.Close()
			return err
		}
		live[k] = kind
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read herd.suppressions: %w", err)
	}
	for k, kind := range live {
		if e, err := kv.Get(ctx, k); err == nil && string(e.Value()) == kind {
			continue
		}
		if _, err := kv.Put(ctx, k, []byte(kind)); err != nil {
			return fmt.Errorf("put a suppression into bucket %s: %w", kv.Bucket(), err)
		}
	}
	for _, k := range existing {
		if _, ok := live[k]; ok {
			continue
		}
		if err := kv.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("delete entry %s (no longer suppressed) from bucket %s: %w", k, kv.Bucket(), err)
		}
	}
	return nil
}

// MirrorSuppressions keeps kv in step with herd.suppressions: now, on every
// change (LISTEN herd_suppressions) and every interval as a safety net,
// until ctx ends.
func MirrorSuppressions(ctx context.Context, db *pgxpool.Pool, kv jetstream.KeyValue, interval time.Duration, log *slog.Logger) error {
	return warehouse.Follow(ctx, db, "herd_suppressions", interval, log, "mirror suppressions into NATS", func(ctx context.Context) error {
		return SyncSuppressions(ctx, db, kv)
	})
}
