package salesforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/herdhq/herd/saas"
)

// recordID is what a Salesforce Id looks like; only such ids go in a query.
var recordID = regexp.MustCompile(`^[A-Za-z0-9]{15,18}$`)

// soqlTime is t as a SOQL datetime literal. A fraction of a second is
// dropped: a lower bound then reads a little more, never less.
func soqlTime(t time.Time) string { return t.UTC().Format(sfTimeLayout) }

// selectSOQL is SELECT <every field> FROM object WHERE where.
func selectSOQL(o *objectTable, where []string, ordered bool) string {
	q := "SELECT " + strings.Join(o.Fields, ", ") + " FROM " + o.Object
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if ordered {
		// Many records share one SystemModstamp (imports, mass updates):
		// Id orders them, so that a read resumes exactly where it stopped.
		q += " ORDER BY SystemModstamp, Id"
	}
	return q
}

// backfill reads every record up to until, resuming an interrupted
// backfill where its cursor or bulk job stopped. synced_until then becomes
// the instant the backfill started from (the bulk job's bound, or when the
// REST read first started), never later than it was: deletions between an
// earlier pass, or an interruption, and now are still to be read from
// getDeleted by the next incremental pass.
func (s *Syncer) backfill(ctx context.Context, o *objectTable, st state, until time.Time, restart bool) error {
	if st.Phase != "backfill" || restart {
		s.log.Info("backfilling Salesforce object", "object", o.Object)
		prev := st.SyncedUntil
		st = state{Phase: "backfill", SyncedUntil: prev}
		if err := s.setState(ctx, o.Object, map[string]any{"phase": "backfill", "backfill_started_at": until, "backfill_finished_at": nil,
			"backfill_rows": 0, "cursor_modstamp": nil, "cursor_id": nil, "bulk_job_id": nil, "bulk_locator": nil}); err != nil {
			return err
		}
		st.BackfillStarted = &until
	} else {
		s.log.Info("resuming the interrupted backfill of Salesforce object", "object", o.Object, "rows_so_far", st.BackfillRows)
	}
	total, err := s.api.count(ctx, o.Object)
	if err != nil {
		return fmt.Errorf("count %s: %w", o.Object, err)
	}
	p := saas.NewProgress(s.plog, "salesforce", o.Object, total, st.BackfillRows)
	bulk := st.BulkJobID != nil || (st.CursorModstamp == nil && s.cfg.BulkThreshold > 0 && total >= s.cfg.BulkThreshold)
	bound := until
	if st.BackfillStarted != nil && st.BackfillStarted.Before(bound) {
		bound = *st.BackfillStarted
	}
	if bulk {
		var jobBound time.Time
		jobBound, err = s.bulkRead(ctx, o, st, until, p)
		if jobBound.Before(bound) {
			bound = jobBound
		}
	} else {
		err = s.restRead(ctx, o, st.CursorModstamp, st.CursorID, false, until, p)
	}
	if err != nil {
		return err
	}
	p.Done()
	if st.SyncedUntil != nil && st.SyncedUntil.Before(bound) {
		bound = *st.SyncedUntil
	}
	return s.setState(ctx, o.Object, map[string]any{"phase": "incremental", "backfill_finished_at": s.now(), "synced_until": bound,
		"cursor_modstamp": nil, "cursor_id": nil, "bulk_job_id": nil, "bulk_locator": nil})
}

// restRead reads through /query (or /queryAll where deleted records show)
// the records changed up to until, from a lower bound: after (from, fromID)
// when resuming, from from inclusive when incremental, or from the start.
// With p (a backfill), the cursor is saved after every page.
func (s *Syncer) restRead(ctx context.Context, o *objectTable, from *time.Time, fromID *string, inclusive bool, until time.Time, p *saas.Progress) error {
	where := []string{"SystemModstamp <= " + soqlTime(until)}
	switch {
	case from != nil && inclusive:
		where = append(where, "SystemModstamp >= "+soqlTime(*from))
	case from != nil && fromID != nil:
		if !recordID.MatchString(*fromID) {
			return fmt.Errorf("salesforce.sync_state cursor for %s holds %q, not a record Id", o.Object, *fromID)
		}
		ts := soqlTime(*from)
		where = append(where, fmt.Sprintf("(SystemModstamp > %s OR (SystemModstamp = %s AND Id > '%s'))", ts, ts, *fromID))
	case from != nil:
		where = append(where, "SystemModstamp > "+soqlTime(*from))
	}
	soql := selectSOQL(o, where, true)
	return s.api.query(ctx, soql, o.HasDelete, s.cfg.BatchSize, func(page *queryPage) error {
		recs := make([]record, 0, len(page.Records))
		for _, raw := range page.Records {
			r, err := fromREST(raw)
			if err != nil {
				return fmt.Errorf("%s: %w", o.Object, err)
			}
			recs = append(recs, r)
		}
		if _, err := s.write(ctx, o, recs); err != nil {
			return err
		}
		if p == nil || len(recs) == 0 {
			return nil
		}
		p.Add(len(recs))
		last := recs[len(recs)-1]
		return s.setState(ctx, o.Object, map[string]any{"cursor_modstamp": last.modstamp, "cursor_id": last.id, "backfill_rows": p.Rows()})
	})
}

// bulkRead backfills through a Bulk API 2.0 query job: it creates the job
// (or takes up the one an interrupted run left), waits for it, and writes
// its results page by page, saving the locator of the next page after each.
// It returns the job's upper bound on SystemModstamp.
func (s *Syncer) bulkRead(ctx context.Context, o *objectTable, st state, until time.Time, p *saas.Progress) (time.Time, error) {
	var jobID, locator string
	if st.BulkJobID != nil && st.CursorModstamp != nil {
		jobID, until = *st.BulkJobID, *st.CursorModstamp
		if st.BulkLocator != nil {
			locator = *st.BulkLocator
		}
		if _, err := s.api.waitBulkJob(ctx, jobID, s.cfg.BulkPoll); err != nil {
			var ae *apiError
			if !errors.Is(err, errJobFailed) && (!errors.As(err, &ae) || ae.Status != http.StatusNotFound) {
				return until, err
			}
			s.log.Warn("the interrupted bulk query job is gone or failed; starting a new one", "object", o.Object, "job", jobID, "err", err)
			jobID, locator = "", ""
		}
	}
	if jobID == "" {
		soql := selectSOQL(o, []string{"SystemModstamp <= " + soqlTime(until)}, false)
		job, err := s.api.createBulkJob(ctx, soql, o.HasDelete)
		if err != nil {
			return until, fmt.Errorf("bulk query job for %s: %w", o.Object, err)
		}
		jobID = job.ID
		if err := s.setState(ctx, o.Object, map[string]any{"bulk_job_id": jobID, "bulk_locator": nil, "cursor_modstamp": until}); err != nil {
			return until, err
		}
		s.log.Info("Bulk API 2.0 query job created", "object", o.Object, "job", jobID)
		if _, err := s.api.waitBulkJob(ctx, jobID, s.cfg.BulkPoll); err != nil {
			if errors.Is(err, errJobFailed) {
				// The next pass starts a new job rather than wait on this one.
				_ = s.setState(ctx, o.Object, map[string]any{"bulk_job_id": nil, "bulk_locator": nil, "cursor_modstamp": nil})
			}
			return until, err
		}
	}
	for {
		body, next, err := s.api.bulkResults(ctx, jobID, locator, s.cfg.BulkPageSize)
		if err != nil {
			return until, err
		}
		recs, err := csvRecords(body, o.Types)
		if err != nil {
			return until, fmt.Errorf("%s bulk job %s: %w", o.Object, jobID, err)
		}
		if _, err := s.write(ctx, o, recs); err != nil {
			return until, err
		}
		p.Add(len(recs))
		if err := s.setState(ctx, o.Object, map[string]any{"bulk_locator": next, "backfill_rows": p.Rows()}); err != nil {
			return until, err
		}
		if next == "" {
			return until, nil
		}
		locator = next
	}
}

// incremental reads what changed since synced_until minus the lookback,
// then the deletions getDeleted reports since deleted_until (the
// latestDateCovered of its last answer).
func (s *Syncer) incremental(ctx context.Context, o *objectTable, st state, until time.Time) error {
	start := until.Add(-s.cfg.Lookback)
	if st.SyncedUntil != nil {
		start = st.SyncedUntil.Add(-s.cfg.Lookback)
	}
	if err := s.restRead(ctx, o, &start, nil, true, until, nil); err != nil {
		return err
	}
	done := map[string]any{"synced_until": until}
	if o.Replicate {
		from := start
		if st.DeletedUntil != nil {
			from = *st.DeletedUntil
		}
		covered, err := s.deletions(ctx, o, from, until)
		if err != nil {
			return err
		}
		if !covered.IsZero() {
			done["deleted_until"] = covered
		}
	}
	return s.setState(ctx, o.Object, done)
}

// errReplicationDate is getDeleted's answer to a window starting before
// the delete log: Salesforce no longer knows what was deleted then.
const errReplicationDate = "INVALID_REPLICATION_DATE"

// deletions marks the records getDeleted lists as deleted in [from, until]
// and returns how far its answer covers (the next call's start), or zero
// when the object refuses getDeleted. When the delete log no longer reaches
// back to from, an Id sweep stands in for it.
func (s *Syncer) deletions(ctx context.Context, o *objectTable, from, until time.Time) (time.Time, error) {
	// getDeleted rounds to the minute and wants a window of at least one.
	from = from.Truncate(time.Minute)
	to := until.Add(time.Minute).Truncate(time.Minute)
	dl, err := s.api.getDeleted(ctx, o.Object, from, to)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Code == errReplicationDate:
		s.log.Warn("Salesforce's delete log no longer reaches back to the sync's cursor; comparing every Id instead",
			"object", o.Object, "since", from, "err", err)
		return s.idSweep(ctx, o)
	case errors.As(err, &ae) && ae.Status == http.StatusBadRequest:
		// Some objects say replicateable yet refuse getDeleted; their
		// deletions still show through queryAll while in the recycle bin.
		s.log.Warn("Salesforce refused getDeleted; following deletions through queryAll only", "object", o.Object, "err", err)
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("deleted %s records: %w", o.Object, err)
	}
	if dl.EarliestDateAvailable != "" {
		if earliest, err := parseTime(dl.EarliestDateAvailable); err == nil && earliest.After(from) {
			s.log.Warn("Salesforce no longer lists deletions as old as the sync's cursor; comparing every Id instead",
				"object", o.Object, "since", from, "earliest_available", earliest)
			return s.idSweep(ctx, o)
		}
	}
	ids := make([]string, 0, len(dl.DeletedRecords))
	when := make([]time.Time, 0, len(dl.DeletedRecords))
	for _, d := range dl.DeletedRecords {
		t, err := parseTime(d.DeletedDate)
		if err != nil {
			return time.Time{}, fmt.Errorf("deleted %s record %s: %w", o.Object, d.ID, err)
		}
		ids, when = append(ids, d.ID), append(when, t)
	}
	if _, err := s.markDeleted(ctx, o, ids, when); err != nil {
		return time.Time{}, err
	}
	covered := to
	if dl.LatestDateCovered != "" {
		t, err := parseTime(dl.LatestDateCovered)
		if err != nil {
			return time.Time{}, fmt.Errorf("deleted %s records: latestDateCovered: %w", o.Object, err)
		}
		// Salesforce says to start the next call there, to catch deletions
		// that began before it but were not complete when it answered.
		if t.Before(covered) {
			covered = t
		}
	}
	if covered.Before(from) {
		covered = from
	}
	return covered, nil
}

// idSweep reads every live Id of the object and marks deleted the rows
// Salesforce no longer has, for when the delete log cannot tell. It
// records the sweep in sync_state and returns its start, from which the
// next getDeleted call reads.
func (s *Syncer) idSweep(ctx context.Context, o *objectTable) (time.Time, error) {
	started := s.now().UTC().Truncate(time.Second)
	var ids []string
	err := s.api.query(ctx, "SELECT Id FROM "+o.Object, false, s.cfg.BatchSize, func(p *queryPage) error {
		for _, raw := range p.Records {
			var r struct {
				ID string `json:"Id"`
			}
			if err := json.Unmarshal(raw, &r); err != nil || r.ID == "" {
				return fmt.Errorf("%s Id sweep: a record without an Id: %.200s", o.Object, raw)
			}
			ids = append(ids, r.ID)
		}
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("%s Id sweep: %w", o.Object, err)
	}
	// Rows changed after the sweep began may be records created since;
	// only older ones missing from Salesforce's list are gone.
	tag, err := s.db.Exec(ctx, `UPDATE `+o.qualified()+` AS t SET is_deleted = true, synced_at = now()
		WHERE NOT t.is_deleted AND (t.system_modstamp IS NULL OR t.system_modstamp < $2)
		AND NOT EXISTS (SELECT 1 FROM unnest($1::text[]) AS l(id) WHERE l.id = t.id)`, ids, started)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s Id sweep: mark deleted: %w", o.Object, err)
	}
	n := tag.RowsAffected()
	s.log.Warn("Id sweep done: rows no longer in Salesforce marked deleted", "object", o.Object, "live_ids", len(ids), "marked_deleted", n)
	if err := s.setState(ctx, o.Object, map[string]any{"id_sweep_at": started, "id_sweep_rows": n}); err != nil {
		return time.Time{}, err
	}
	return started, nil
}
