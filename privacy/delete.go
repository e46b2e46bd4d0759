package privacy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/herdhq/herd"
	"github.com/herdhq/herd/archive"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DeleteOptions configure Delete.
type DeleteOptions struct {
	// Lake, when set, is rewritten without the person's events. It must be
	// herd's lake: a directory that does not exist is refused, and so is a
	// lake with no source= directory unless LakeEmptyOK (see CheckLake).
	Lake        archive.Lake
	LakeEmptyOK bool
	// Drain, when set, runs before anything is removed and must return once
	// every event already on the stream at the time of the request is
	// stored in Postgres and the lake (see WaitConsumers): an event still in
	// flight would otherwise land after the deletion.
	Drain func(ctx context.Context) error
	// Remote, when set, asks the running archiver to erase the person's
	// events from its lake (archive.RequestErase): it does so between its
	// own writes, which a direct rewrite beside it would race. When it
	// returns archive.ErrNoArchiver, Lake is erased directly, unless an
	// archiver's lease on it is fresh (archive.EraseDirect).
	Remote func(ctx context.Context, req archive.EraseRequest) (archive.EraseResult, string, error)
	// Progress, when set, is called after each lake file examined (direct
	// erasure only).
	Progress func(archive.EraseProgress)
	Log      *slog.Logger
}

// DeleteResult reports a deletion.
type DeleteResult struct {
	RequestID int64
	IDs       []string // every id whose events were removed
	Linked    []string // the ids found linked to the users
	Counts    Counts
	Lake      string // the lake erased (the archiver's, when it was asked)
}

// Delete removes the person's events, and those of every id linked to the
// users, from herd.events, herd.rejects, herd.users, herd.identities,
// herd.group_members and the lake; the sessions views follow herd.events.
// The message ids of removed events stay in the ledger (herd.message_ids),
// kept by herd.privacy_erased, so a redelivery is still a duplicate; the
// lake is rewritten, so a replay does not bring them back. Postgres is
// changed in one transaction, then the lake file by file; a run that fails
// half-way is safe to run again. The request, with what each store lost, is
// recorded in herd.privacy_requests and, per source and hour, in
// herd.privacy_removed.
func Delete(ctx context.Context, db *pgxpool.Pool, p Person, opt DeleteOptions) (DeleteResult, error) {
	var res DeleteResult
	if err := p.validate(); err != nil {
		return res, err
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id, err := begin(ctx, db, "delete", p)
	if err != nil {
		return res, err
	}
	res.RequestID, res.Counts = id, Counts{}
	err = func() error {
		// A wrong lake path must not let the request end as done while
		// the real lake keeps the events: refuse before anything changes.
		if opt.Lake != nil {
			if err := CheckLake(ctx, opt.Lake, opt.LakeEmptyOK); err != nil {
				return err
			}
		}
		if opt.Drain != nil {
			log.Info("privacy delete: waiting for the stream's events to be stored first", "request", id)
			if err := opt.Drain(ctx); err != nil {
				return err
			}
		}
		ids, linked, err := resolve(ctx, db, p)
		if err != nil {
			return err
		}
		res.IDs, res.Linked = ids, linked
		log.Info("privacy delete: removing from Postgres", "request", id, "ids", len(ids), "linked", len(linked))
		if err := deletePostgres(ctx, db, id, ids, linked, p.sources(), res.Counts); err != nil {
			return err
		}
		var (
			er   archive.EraseResult
			done bool
		)
		if opt.Remote != nil {
			log.Info("privacy delete: asking the archiver to rewrite its lake", "request", id)
			var lake string
			er, lake, err = opt.Remote(ctx, archive.EraseRequest{IDs: ids, Sources: p.Sources})
			if done = !errors.Is(err, archive.ErrNoArchiver); done {
				res.Lake = lake
			} else {
				log.Info("privacy delete: no archiver answered; rewriting the lake directly", "request", id)
			}
		}
		if !done {
			if opt.Lake == nil {
				return nil
			}
			log.Info("privacy delete: rewriting the lake", "request", id, "lake", opt.Lake.String())
			res.Lake = opt.Lake.String()
			er, err = archive.EraseDirect(ctx, opt.Lake, archive.EraseOptions{Sources: p.Sources, Match: archive.MatchIDs(ids), Progress: opt.Progress})
		}
		res.Counts["lake_rows"] += er.Removed
		res.Counts["lake_files"] += int64(er.Rewritten)
		if rerr := recordLake(ctx, db, id, er.ByHour); rerr != nil && err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("%w; the Postgres rows are gone, run the same herd privacy delete again to finish the lake", err)
		}
		return nil
	}()
	return res, finish(ctx, db, id, res.Linked, res.Counts, err)
}

// matcher selects the events of ids, by user or anonymous id.
func matcher(ids []string) func(e *herd.Event) bool { return archive.MatchIDs(ids) }

// deletePostgres removes the rows of ids in one transaction and counts
// them into c and herd.privacy_removed. The linked ids are recorded on the
// request in the same transaction: once the rows that linked them are gone,
// a rerun (after this process died before the lake was rewritten) finds
// them only there.
func deletePostgres(ctx context.Context, db *pgxpool.Pool, req int64, ids, linked []string, sources any, c Counts) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE herd.privacy_requests SET linked_ids = $2 WHERE id = $1`, req, nonNil(linked)); err != nil {
			return fmt.Errorf("record the linked ids of privacy request %d: %w", req, err)
		}
		steps := []struct {
			store, sql string
		}{
			{"events", `WITH gone AS (
				DELETE FROM herd.events e
				WHERE (e.user_id = ANY($1) OR e.anonymous_id = ANY($1)) AND ($2::bigint[] IS NULL OR e.source_id = ANY($2))
				RETURNING e.source_id, e.message_id, e."timestamp"
			), erased AS (
				INSERT INTO herd.privacy_erased (source_id, message_id, request_id)
				SELECT DISTINCT source_id, message_id, $3::bigint FROM gone
				ON CONFLICT DO NOTHING
			), hours AS (
				INSERT INTO herd.privacy_removed AS r (request_id, source_id, hour, events)
				SELECT $3::bigint, source_id, date_trunc('hour', "timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', count(*)
				FROM gone GROUP BY 1, 2, 3
				ON CONFLICT (request_id, source_id, hour) DO UPDATE SET events = r.events + excluded.events
			)
			SELECT count(*) FROM gone`},
			{"rejects", `WITH gone AS (
				DELETE FROM herd.rejects j
				WHERE ($2::bigint[] IS NULL OR j.source_id = ANY($2)) AND herd.raw_has_id(j.raw, $1)
				RETURNING j.source_id, j.received_at
			), hours AS (
				INSERT INTO herd.privacy_removed AS r (request_id, source_id, hour, rejects)
				SELECT $3::bigint, coalesce(source_id, 0), date_trunc('hour', received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', count(*)
				FROM gone GROUP BY 1, 2, 3
				ON CONFLICT (request_id, source_id, hour) DO UPDATE SET rejects = r.rejects + excluded.rejects
			)
			SELECT count(*) FROM gone`},
			{"users", `WITH gone AS (DELETE FROM herd.users WHERE user_id = ANY($1) AND ($2::bigint[] IS NULL OR source_id = ANY($2)) AND $3::bigint IS NOT NULL RETURNING 1)
				SELECT count(*) FROM gone`},
			{"identities", `WITH gone AS (DELETE FROM herd.identities WHERE (user_id = ANY($1) OR anonymous_id = ANY($1)) AND ($2::bigint[] IS NULL OR source_id = ANY($2)) AND $3::bigint IS NOT NULL RETURNING 1)
				SELECT count(*) FROM gone`},
			{"group_members", `WITH gone AS (DELETE FROM herd.group_members WHERE member_id = ANY($1) AND ($2::bigint[] IS NULL OR source_id = ANY($2)) AND $3::bigint IS NOT NULL RETURNING 1)
				SELECT count(*) FROM gone`},
		}
		for _, s := range steps {
			var n int64
			if err := tx.QueryRow(ctx, s.sql, ids, sources, req).Scan(&n); err != nil {
				return fmt.Errorf("delete the person's rows from herd.%s: %w", s.store, err)
			}
			c[s.store] += n
		}
		return nil
	})
}

// recordLake adds the lake rows removed per source and hour to
// herd.privacy_removed.
func recordLake(ctx context.Context, db *pgxpool.Pool, req int64, byHour map[archive.HourKey]int64) error {
	if len(byHour) == 0 {
		return nil
	}
	keys := make([]archive.HourKey, 0, len(byHour))
	for k := range byHour {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b archive.HourKey) int {
		if c := cmp.Compare(a.SourceID, b.SourceID); c != 0 {
			return c
		}
		return a.Hour.Compare(b.Hour)
	})
	var (
		srcs  []int64
		hours []time.Time
		rows  []int64
	)
	for _, k := range keys {
		srcs, hours, rows = append(srcs, k.SourceID), append(hours, k.Hour), append(rows, byHour[k])
	}
	_, err := db.Exec(context.WithoutCancel(ctx), `INSERT INTO herd.privacy_removed AS r (request_id, source_id, hour, lake_rows)
		SELECT $1, s, h, n FROM unnest($2::bigint[], $3::timestamptz[], $4::bigint[]) AS u(s, h, n)
		ON CONFLICT (request_id, source_id, hour) DO UPDATE SET lake_rows = r.lake_rows + excluded.lake_rows`,
		req, srcs, hours, rows)
	if err != nil {
		return fmt.Errorf("record the lake rows removed in herd.privacy_removed: %w", err)
	}
	return nil
}

// CheckLake refuses a lake that cannot be herd's: a directory that does not
// exist (herd privacy run from another directory finds no ./data/lake), or,
// unless emptyOK, a lake with no source= directory, which an archiver
// creates with its first file.
func CheckLake(ctx context.Context, lake archive.Lake, emptyOK bool) error {
	if d, ok := lake.(*archive.Dir); ok {
		if _, err := os.Stat(d.String()); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("lake directory %s does not exist: give --data-dir (herd up's data directory) or --lake with herd's lake, or --no-lake if there is none", d.String())
		} else if err != nil {
			return fmt.Errorf("lake directory %s: %w", d.String(), err)
		}
	}
	children, err := lake.Children(ctx, "")
	if err != nil {
		return fmt.Errorf("list the lake %s: %w", lake.String(), err)
	}
	for _, c := range children {
		if strings.HasPrefix(c, "source=") {
			return nil
		}
	}
	if emptyOK {
		return nil
	}
	return fmt.Errorf("lake %s holds no source= directory, so it is not herd's lake or nothing was archived yet: give --data-dir (herd up's data directory) or --lake with herd's lake; if this is herd's lake and it is empty, add --lake-empty-ok", lake.String())
}
