-- Candlewick schema v4: the ledger of `candlewick import` (candlewick/storage/pg_import.py).
-- One row per file, known by a hash of its content, and one row per chunk applied: a chunk's
-- transaction inserts its row first, so a chunk is applied exactly when its row is committed.
-- IF NOT EXISTS: before v4 the command made these tables itself, so a database may hold them already.

CREATE TABLE IF NOT EXISTS import_files (
    identity    bytea PRIMARY KEY,                -- XXH3-128 of the file's bytes
    file_name   text NOT NULL,
    source      text NOT NULL,                    -- the source of its default keys, kept for a resume
    batch       integer NOT NULL,                 -- rows per chunk, kept for a resume
    rows_total  bigint NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE TABLE IF NOT EXISTS import_chunks (
    identity    bytea NOT NULL,
    chunk       integer NOT NULL,                 -- rows chunk * batch and on
    rows        integer NOT NULL,
    rows_raw    integer NOT NULL,                 -- offered as raw ticks (within raw retention)
    rows_old    integer NOT NULL,                 -- older than raw retention: candles only
    rows_live   integer NOT NULL,                 -- newer than now - lateness: posted to the server
    done_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (identity, chunk)
);
