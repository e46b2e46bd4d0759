package privacy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/archive"
	"github.com/herdhq/herd/stream"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ExportOptions configure Export.
type ExportOptions struct {
	// Lake, when set, is searched too: it keeps events longer than the
	// warehouse. Every file of the selected sources is read.
	Lake     archive.Lake
	Progress func(archive.EraseProgress)
}

// exportLine is one line of an export: which store, and the row as that
// store holds it.
type exportLine struct {
	Store string          `json:"store"`
	File  string          `json:"file,omitempty"`
	Row   json.RawMessage `json:"row"`
}

// exports are the Postgres stores an export reads, each row as JSON.
var exports = []struct{ store, sql string }{
	{"events", `SELECT to_jsonb(e) FROM herd.events e
		WHERE (e.user_id = ANY($1) OR e.anonymous_id = ANY($1)) AND ($2::bigint[] IS NULL OR e.source_id = ANY($2))
		ORDER BY e."timestamp", e.message_id`},
	{"users", `SELECT to_jsonb(u) FROM herd.users u
		WHERE u.user_id = ANY($1) AND ($2::bigint[] IS NULL OR u.source_id = ANY($2)) ORDER BY u.source_id, u.user_id`},
	{"identities", `SELECT to_jsonb(i) FROM herd.identities i
		WHERE (i.user_id = ANY($1) OR i.anonymous_id = ANY($1)) AND ($2::bigint[] IS NULL OR i.source_id = ANY($2))
		ORDER BY i.source_id, i.user_id, i.anonymous_id`},
	{"group_members", `SELECT to_jsonb(m) FROM herd.group_members m
		WHERE m.member_id = ANY($1) AND ($2::bigint[] IS NULL OR m.source_id = ANY($2)) ORDER BY m.source_id, m.group_id`},
	{"rejects", `SELECT to_jsonb(r) FROM herd.rejects r
		WHERE ($2::bigint[] IS NULL OR r.source_id = ANY($2)) AND herd.raw_has_id(r.raw, $1) ORDER BY r.id`},
	{"suppressions", `SELECT jsonb_build_object('kind', s.kind, 'since', s.created_at) FROM herd.suppressions s
		WHERE s.key = ANY($1) ORDER BY s.created_at`},
}

// Export writes everything herd holds about the person, and every id linked
// to the users, to w as JSON lines {"store": ..., "row": {...}}: events,
// traits (herd.users), identities, group memberships, rejects, whether they
// are suppressed, and, with a lake, the lake's copies of their events
// ("file" names the file). The request is recorded in
// herd.privacy_requests with the count of each store.
func Export(ctx context.Context, db *pgxpool.Pool, p Person, w io.Writer, opt ExportOptions) (Counts, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	id, err := begin(ctx, db, "export", p)
	if err != nil {
		return nil, err
	}
	counts := Counts{}
	var linked []string
	err = func() error {
		ids, l, err := resolve(ctx, db, p)
		if err != nil {
			return err
		}
		linked = l
		var keys []string
		for _, u := range p.UserIDs {
			keys = append(keys, stream.SuppressKey(stream.SuppressUserID, u))
		}
		for _, a := range p.AnonymousIDs {
			keys = append(keys, stream.SuppressKey(stream.SuppressAnonymousID, a))
		}
		bw := bufio.NewWriter(w)
		enc := json.NewEncoder(bw)
		for _, x := range exports {
			args := []any{ids, p.sources()}
			if x.store == "suppressions" {
				args = []any{keys} // by hash: the table has no ids
			}
			rows, err := db.Query(ctx, x.sql, args...)
			if err != nil {
				return fmt.Errorf("export from herd.%s: %w", x.store, err)
			}
			for rows.Next() {
				var row json.RawMessage
				if err := rows.Scan(&row); err != nil {
					rows.Close()
					return fmt.Errorf("export from herd.%s: %w", x.store, err)
				}
				if err := enc.Encode(exportLine{Store: x.store, Row: row}); err != nil {
					rows.Close()
					return fmt.Errorf("write the export: %w", err)
				}
				counts[x.store]++
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("export from herd.%s: %w", x.store, err)
			}
		}
		if opt.Lake != nil {
			var werr error
			_, err := archive.Erase(ctx, opt.Lake, archive.EraseOptions{
				Sources: p.Sources, Match: matcher(ids), DryRun: true, Progress: opt.Progress,
				Found: func(key string, e *herd.Event) {
					b, err := json.Marshal(e)
					if err == nil {
						err = enc.Encode(exportLine{Store: "lake", File: key, Row: b})
					}
					if err != nil && werr == nil {
						werr = fmt.Errorf("write the export: %w", err)
					}
					counts["lake_rows"]++
				},
			})
			if err != nil {
				return fmt.Errorf("export from the lake: %w", err)
			}
			if werr != nil {
				return werr
			}
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("write the export: %w", err)
		}
		return nil
	}()
	return counts, finish(ctx, db, id, linked, counts, err)
}
