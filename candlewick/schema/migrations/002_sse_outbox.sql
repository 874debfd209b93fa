-- Candlewick schema v2: the SSE outbox (used only when Redis carries the fan-out).
-- A flush's events are written here in the flush's own transaction, so events exist if and only if
-- their ticks were committed. The publisher deletes a row once Redis has it; a row still here after a
-- grace period (its process died between commit and publish) is published by another process.
-- Redis remembers which rows it published (RedisBus.publish), so no row goes out twice.

CREATE TABLE IF NOT EXISTS sse_outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rows       bytea NOT NULL,  -- the events as bus rows: a JSON array (candlewick.domain.event_row)
    created_at timestamptz NOT NULL DEFAULT now()
);
