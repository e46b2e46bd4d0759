-- The lake's gap repair reads the events of a range of stream sequences
-- back from herd.events (archive.Repair). Rows are appended in stream
-- order, so a BRIN index finds a range for next to nothing in size and
-- write cost.
CREATE INDEX events_stream_seq_brin ON herd.events USING brin (stream_seq);
