package archive

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Why ledgerFilter drops a row from a partition.
const (
	dropErased    = "erased"   // herd.privacy_erased lists its message id
	dropElsewhere = "ledger"   // herd.message_ids names another copy of it
	dropRejected  = "rejected" // the writer refused it (herd.rejects) and stored no copy
)

// ledgerVerdict is what Postgres says of one (source, message id).
type ledgerVerdict struct {
	erased   bool
	hasEntry bool
	seq      *int64     // the stored copy's stream sequence (NULL before migration 0010)
	hour     *time.Time // the stored copy's hour
}

// ledgerFilter removes from a partition's rows, with the warehouse as
// judge:
//   - events a privacy request erased (herd.privacy_erased): a client's
//     retry after the deletion put them on the stream again;
//   - copies of a message id other than the one the writer stored, when the
//     stored copy (herd.message_ids' stream_seq) is in this partition or
//     its hour is another partition's: a retry whose corrected timestamp
//     fell in another hour than the first copy;
//   - events the writer refused (herd.rejects, same stream sequence and
//     message id) and never stored: they are not accepted events.
//
// Rows Postgres knows nothing of yet (the writer behind) stay. With
// erasedOnly (the archiver's files as it writes them, whose other copies
// may not be archived yet), only erased events are dropped. It returns the
// rows kept and how many it dropped per reason.
func ledgerFilter(ctx context.Context, db *pgxpool.Pool, p partition, recs []record, erasedOnly bool) ([]record, map[string]int, error) {
	if db == nil || len(recs) == 0 {
		return recs, nil, nil
	}
	type key struct {
		src int64
		id  string
	}
	srcs := make([]int64, 0, len(recs))
	ids := make([]string, 0, len(recs))
	seqs := make([]int64, 0, len(recs))
	inPart := map[key]map[int64]bool{}
	for i := range recs {
		k := key{recs[i].SourceID, recs[i].MessageID}
		if inPart[k] == nil {
			inPart[k] = map[int64]bool{}
			srcs, ids = append(srcs, k.src), append(ids, k.id)
		}
		inPart[k][recs[i].StreamSeq] = true
		seqs = append(seqs, recs[i].StreamSeq)
	}
	verdicts := make(map[key]ledgerVerdict, len(inPart))
	rows, err := db.Query(ctx, `SELECT c.source_id, c.message_id,
			e.message_id IS NOT NULL, m.message_id IS NOT NULL, m.stream_seq, m.hour
		FROM unnest($1::bigint[], $2::text[]) AS c(source_id, message_id)
		LEFT JOIN herd.message_ids m USING (source_id, message_id)
		LEFT JOIN herd.privacy_erased e USING (source_id, message_id)`, srcs, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("read the ledger (herd.message_ids, herd.privacy_erased) for partition %s: %w", p.String(), err)
	}
	var (
		k key
		v ledgerVerdict
	)
	if _, err := pgx.ForEachRow(rows, []any{&k.src, &k.id, &v.erased, &v.hasEntry, &v.seq, &v.hour}, func() error {
		verdicts[k] = v
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("read the ledger for partition %s: %w", p.String(), err)
	}
	// Refused events: a reject of the row's own stream sequence and id
	// (herd.rejects is indexed by stream_seq).
	rejected := map[key]map[int64]bool{}
	if erasedOnly {
		seqs = nil
	}
	rows, err = db.Query(ctx, `SELECT DISTINCT r.source_id, r.message_id, r.stream_seq FROM herd.rejects r
		WHERE r.stream_seq = ANY($1::bigint[]) AND r.message_id IS NOT NULL AND r.source_id IS NOT NULL`, seqs)
	if err != nil {
		return nil, nil, fmt.Errorf("read herd.rejects for partition %s: %w", p.String(), err)
	}
	var seq int64
	if _, err := pgx.ForEachRow(rows, []any{&k.src, &k.id, &seq}, func() error {
		if rejected[k] == nil {
			rejected[k] = map[int64]bool{}
		}
		rejected[k][seq] = true
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("read herd.rejects for partition %s: %w", p.String(), err)
	}
	dropped := map[string]int{}
	out := recs[:0]
	for i := range recs {
		k := key{recs[i].SourceID, recs[i].MessageID}
		v := verdicts[k]
		switch {
		case v.erased:
			dropped[dropErased]++
			continue
		case erasedOnly:
		case v.hasEntry && v.seq != nil && *v.seq != recs[i].StreamSeq &&
			(inPart[k][*v.seq] || (v.hour != nil && !p.holds(*v.hour))):
			dropped[dropElsewhere]++
			continue
		case !v.hasEntry && rejected[k][recs[i].StreamSeq]:
			dropped[dropRejected]++
			continue
		}
		out = append(out, recs[i])
	}
	return out, dropped, nil
}
