package salesforce

import (
	"context"
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
// backfill where its cursor or bulk job stopped.
func (s *Syncer) backfill(ctx context.Context, o *objectTable, st state, until time.Time, restart bool) error {
	if st.Phase != "backfill" || restart {
		s.log.Info("backfilling Salesforce object", "object", o.Object)
		st = state{Phase: "backfill"}
		if err := s.setState(ctx, o.Object, map[string]any{"phase": "backfill", "backfill_started_at": s.now(), "backfill_finished_at": nil,
			"backfill_rows": 0, "cursor_modstamp": nil, "cursor_id": nil, "bulk_job_id": nil, "bulk_locator": nil}); err != nil {
			return err
		}
	} else {
		s.log.Info("resuming the interrupted backfill of Salesforce object", "object", o.Object, "rows_so_far", st.BackfillRows)
	}
	total, err := s.api.count(ctx, o.Object)
	if err != nil {
		return fmt.Errorf("count %s: %w", o.Object, err)
	}
	p := saas.NewProgress(s.plog, "salesforce", o.Object, total, st.BackfillRows)
	bulk := st.BulkJobID != nil || (st.CursorModstamp == nil && s.cfg.BulkThreshold > 0 && total >= s.cfg.BulkThreshold)
	if bulk {
		until, err = s.bulkRead(ctx, o, st, until, p)
	} else {
		err = s.restRead(ctx, o, st.CursorModstamp, st.CursorID, false, until, p)
	}
	if err != nil {
		return err
	}
	p.Done()
	return s.setState(ctx, o.Object, map[string]any{"phase": "incremental", "backfill_finished_at": s.now(), "synced_until": until,
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
// then the deletions getDeleted reports for the same window.
func (s *Syncer) incremental(ctx context.Context, o *objectTable, st state, until time.Time) error {
	start := until.Add(-s.cfg.Lookback)
	if st.SyncedUntil != nil {
		start = st.SyncedUntil.Add(-s.cfg.Lookback)
	}
	if err := s.restRead(ctx, o, &start, nil, true, until, nil); err != nil {
		return err
	}
	if o.Replicate {
		// getDeleted rounds to the minute and wants a window of at least one.
		from := start.Truncate(time.Minute)
		to := until.Add(time.Minute).Truncate(time.Minute)
		dl, err := s.api.getDeleted(ctx, o.Object, from, to)
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
			// Some objects say replicateable yet refuse getDeleted; their
			// deletions still show through queryAll while in the recycle bin.
			s.log.Warn("Salesforce refused getDeleted; following deletions through queryAll only", "object", o.Object, "err", err)
			dl, err = &deletedList{}, nil
		}
		if err != nil {
			return fmt.Errorf("deleted %s records: %w", o.Object, err)
		}
		if dl.EarliestDateAvailable != "" {
			if earliest, err := parseTime(dl.EarliestDateAvailable); err == nil && earliest.After(from) {
				s.log.Warn("Salesforce no longer lists deletions as old as the sync's cursor: records deleted before it may still show as live; a full re-read fixes that (clear the object's row in salesforce.sync_state)",
					"object", o.Object, "since", from, "earliest_available", earliest)
			}
		}
		ids := make([]string, 0, len(dl.DeletedRecords))
		when := make([]time.Time, 0, len(dl.DeletedRecords))
		for _, d := range dl.DeletedRecords {
			t, err := parseTime(d.DeletedDate)
			if err != nil {
				return fmt.Errorf("deleted %s record %s: %w", o.Object, d.ID, err)
			}
			ids, when = append(ids, d.ID), append(when, t)
		}
		if _, err := s.markDeleted(ctx, o, ids, when); err != nil {
			return err
		}
	}
	return s.setState(ctx, o.Object, map[string]any{"synced_until": until})
}
