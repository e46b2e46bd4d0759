package writer

import "github.com/herdhq/herd"

// identitySQL moves the staged rows whose (source, message id) the ledger
// does not hold yet into herd.events, and keeps herd.users,
// herd.identities, herd.groups and herd.group_members current from the rows
// the statement itself inserted (the RETURNING of the events insert). Rows
// skipped as duplicates are not in it, so a redelivered batch changes
// nothing: the identity tables move exactly once per stored event. It is one
// statement so that the events and the identity they imply commit together.
// The staged rows are unique within the batch (firstOfEach ran first).
//
// Traits merge so that the newest identify wins key by key: a batch's
// identifies fold in timestamp order, and against the stored row an older
// batch (a late event) only fills keys the user does not have yet.
var identitySQL = `WITH ledger AS (
	INSERT INTO herd.message_ids (source_id, message_id, day, hour, stream_seq)
	SELECT source_id, message_id, ("timestamp" AT TIME ZONE 'UTC')::date, date_trunc('hour', "timestamp", 'UTC'), stream_seq FROM herd_stage
	ON CONFLICT DO NOTHING
	RETURNING source_id, message_id
), ins AS (
	INSERT INTO herd.events (` + quotedColumns + `)
	SELECT ` + quotedColumns + ` FROM herd_stage JOIN ledger USING (source_id, message_id)
	RETURNING source_id, type, anonymous_id, user_id, previous_id, group_id, traits, "timestamp"
), users AS (
	INSERT INTO herd.users AS u (source_id, user_id, traits, first_seen, last_seen, traits_at)
	SELECT source_id, user_id,
	       herd.jsonb_merge(traits ORDER BY "timestamp") FILTER (WHERE jsonb_typeof(traits) = 'object'),
	       min("timestamp"), max("timestamp"), max("timestamp")
	FROM ins WHERE type = 'identify' AND user_id IS NOT NULL
	GROUP BY source_id, user_id
	ON CONFLICT (source_id, user_id) DO UPDATE SET
		traits = CASE WHEN excluded.traits_at >= u.traits_at THEN u.traits || excluded.traits ELSE excluded.traits || u.traits END,
		first_seen = least(u.first_seen, excluded.first_seen),
		last_seen = greatest(u.last_seen, excluded.last_seen),
		traits_at = greatest(u.traits_at, excluded.traits_at),
		updated_at = now()
), links AS (
	INSERT INTO herd.identities AS i (source_id, anonymous_id, user_id, first_seen, last_seen)
	SELECT ins.source_id, v.anon, ins.user_id, min(ins."timestamp"), max(ins."timestamp")
	FROM ins CROSS JOIN LATERAL (VALUES (ins.anonymous_id), (CASE WHEN ins.type = 'alias' THEN ins.previous_id END)) v(anon)
	WHERE ins.type IN ('identify', 'alias') AND ins.user_id IS NOT NULL AND v.anon IS NOT NULL AND v.anon <> ins.user_id
	GROUP BY ins.source_id, v.anon, ins.user_id
	ON CONFLICT (source_id, anonymous_id, user_id) DO UPDATE SET
		first_seen = least(i.first_seen, excluded.first_seen),
		last_seen = greatest(i.last_seen, excluded.last_seen)
), grps AS (
	INSERT INTO herd.groups AS g (source_id, group_id, traits, first_seen, last_seen, traits_at)
	SELECT source_id, group_id,
	       herd.jsonb_merge(traits ORDER BY "timestamp") FILTER (WHERE jsonb_typeof(traits) = 'object'),
	       min("timestamp"), max("timestamp"), max("timestamp")
	FROM ins WHERE type = 'group' AND group_id IS NOT NULL
	GROUP BY source_id, group_id
	ON CONFLICT (source_id, group_id) DO UPDATE SET
		traits = CASE WHEN excluded.traits_at >= g.traits_at THEN g.traits || excluded.traits ELSE excluded.traits || g.traits END,
		first_seen = least(g.first_seen, excluded.first_seen),
		last_seen = greatest(g.last_seen, excluded.last_seen),
		traits_at = greatest(g.traits_at, excluded.traits_at),
		updated_at = now()
), members AS (
	INSERT INTO herd.group_members AS m (source_id, group_id, member_id, first_seen, last_seen)
	SELECT source_id, group_id, coalesce(user_id, anonymous_id), min("timestamp"), max("timestamp")
	FROM ins WHERE type = 'group' AND group_id IS NOT NULL AND coalesce(user_id, anonymous_id) IS NOT NULL
	GROUP BY source_id, group_id, coalesce(user_id, anonymous_id)
	ON CONFLICT (source_id, group_id, member_id) DO UPDATE SET
		first_seen = least(m.first_seen, excluded.first_seen),
		last_seen = greatest(m.last_seen, excluded.last_seen)
)
SELECT count(*) FROM ins`

// hasIdentityCalls reports whether the batch needs identitySQL. Most
// batches are tracks and pages: they keep the plain insert.
func hasIdentityCalls(rows []Row) bool {
	for i := range rows {
		switch rows[i].Type {
		case herd.TypeIdentify, herd.TypeAlias, herd.TypeGroup:
			return true
		}
	}
	return false
}
