// Package privacy acts on one person's data across herd's stores: it
// exports, deletes (herd.events, herd.rejects, the identity tables, the
// Parquet lake) and suppresses future events, and records every request in
// herd.privacy_requests.
package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Person names whose data a request is about.
type Person struct {
	UserIDs      []string
	AnonymousIDs []string
	// Sources limits the request to these source ids; empty: every source.
	Sources []int64
}

func (p Person) validate() error {
	if len(p.UserIDs) == 0 && len(p.AnonymousIDs) == 0 {
		return errors.New("no one named: give --user-id or --anonymous-id")
	}
	for _, id := range append(slices.Clone(p.UserIDs), p.AnonymousIDs...) {
		if id == "" {
			return errors.New("an empty id names no one: give the user's or anonymous id")
		}
	}
	return nil
}

func (p Person) sources() any {
	if len(p.Sources) == 0 {
		return nil
	}
	return p.Sources
}

// Counts are rows per store ("events", "rejects", "users", "identities",
// "group_members", "lake_rows", "lake_files").
type Counts map[string]int64

// begin records a request as running and returns its id.
func begin(ctx context.Context, db *pgxpool.Pool, kind string, p Person) (int64, error) {
	var id int64
	err := db.QueryRow(ctx, `INSERT INTO herd.privacy_requests (kind, user_ids, anonymous_ids, source_ids)
		VALUES ($1, $2, $3, $4) RETURNING id`, kind, nonNil(p.UserIDs), nonNil(p.AnonymousIDs), p.sources()).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("record the %s request in herd.privacy_requests: %w (run herd migrate if the table is missing)", kind, err)
	}
	return id, nil
}

// finish records the outcome; the request's own error, if any, is returned
// unchanged (joined with a failure to record it).
func finish(ctx context.Context, db *pgxpool.Pool, id int64, linked []string, counts Counts, runErr error) error {
	status, msg := "done", ""
	if runErr != nil {
		status, msg = "failed", runErr.Error()
	}
	b, _ := json.Marshal(counts)
	_, err := db.Exec(context.WithoutCancel(ctx), `UPDATE herd.privacy_requests
		SET finished_at = now(), status = $2, counts = $3, error = nullif($4, ''), linked_ids = $5 WHERE id = $1`,
		id, status, b, msg, nonNil(linked))
	if err != nil {
		err = fmt.Errorf("record the outcome of privacy request %d: %w", id, err)
	}
	return errors.Join(runErr, err)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// maxLinkRounds bounds following alias chains (user → previous id → its
// own previous ids ...).
const maxLinkRounds = 16

// resolve returns every id whose events belong to the person: the given
// user and anonymous ids, and the ids linked to the users: the anonymous
// ids of their identify calls and of their other events, and the previous
// ids of their alias calls (herd.identities holds both links), followed
// through alias chains. An anonymous id is not followed to other users: on
// a shared computer they are other people.
//
// The ids earlier requests found linked to the same users count too: a
// delete that removed the Postgres rows and then failed at the lake leaves
// nothing in Postgres to find the links by, and its rerun must still reach
// the lake files of those ids (herd.privacy_requests keeps them).
func resolve(ctx context.Context, db *pgxpool.Pool, p Person) (ids, linked []string, err error) {
	seen := map[string]bool{}
	for _, id := range append(slices.Clone(p.UserIDs), p.AnonymousIDs...) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	frontier := slices.Clone(p.UserIDs)
	for round := 0; len(frontier) > 0 && round < maxLinkRounds; round++ {
		rows, err := db.Query(ctx, `
			SELECT anonymous_id FROM herd.identities
			WHERE user_id = ANY($1) AND ($2::bigint[] IS NULL OR source_id = ANY($2))
			UNION
			SELECT anonymous_id FROM herd.events
			WHERE user_id = ANY($1) AND anonymous_id IS NOT NULL AND ($2::bigint[] IS NULL OR source_id = ANY($2))
			UNION
			SELECT previous_id FROM herd.events
			WHERE type = 'alias' AND user_id = ANY($1) AND previous_id IS NOT NULL AND ($2::bigint[] IS NULL OR source_id = ANY($2))
			UNION
			SELECT l FROM herd.privacy_requests r, unnest(r.linked_ids) AS l
			WHERE r.kind IN ('delete', 'suppress') AND r.user_ids && $1::text[]`,
			frontier, p.sources())
		if err != nil {
			return nil, nil, fmt.Errorf("find the ids linked to the user: %w", err)
		}
		var next []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, nil, err
			}
			if !seen[id] {
				seen[id] = true
				ids, linked, next = append(ids, id), append(linked, id), append(next, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, fmt.Errorf("find the ids linked to the user: %w", err)
		}
		// A previous id may itself have been a user id with links of its own.
		frontier = next
	}
	slices.Sort(linked)
	return ids, linked, nil
}
