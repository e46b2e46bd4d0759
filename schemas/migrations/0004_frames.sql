-- A stream message may carry several events (a frame). A refused event is
-- identified by its message's stream sequence and its place in the frame,
-- so that a redelivered message records each refusal once.
ALTER TABLE herd.rejects ADD COLUMN stream_pos integer NOT NULL DEFAULT 0;
ALTER TABLE herd.rejects DROP CONSTRAINT rejects_stream_seq_key;
ALTER TABLE herd.rejects ADD CONSTRAINT rejects_stream_seq_pos_key UNIQUE (stream_seq, stream_pos);
