-- Candlewick schema v1: symbols, raw ticks keyed by idempotency key, 1-minute OHLC and metrics.
-- Times are epoch seconds (double precision), as the API speaks them. Keys and symbols compare
-- bytewise (COLLATE "C"): exact, and several times cheaper in the b-trees than a locale collation.

CREATE TABLE IF NOT EXISTS symbols (
    symbol      text COLLATE "C" PRIMARY KEY,
    base        text NOT NULL DEFAULT '',
    quote       text NOT NULL DEFAULT '',
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ticks_raw (
    idempotency_key text COLLATE "C" PRIMARY KEY,
    symbol          text COLLATE "C" NOT NULL,
    price           double precision NOT NULL,
    ts              double precision NOT NULL,
    volume          double precision NOT NULL,
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    ingested_at     timestamptz NOT NULL DEFAULT now()
);
-- newest-first reads per symbol; seq breaks ties within one trade time so cursor walks are exact
CREATE INDEX IF NOT EXISTS ticks_raw_symbol_ts_seq ON ticks_raw (symbol, ts DESC, seq DESC);

CREATE TABLE IF NOT EXISTS ohlc_1m (
    symbol       text COLLATE "C" NOT NULL,
    bucket_start bigint NOT NULL,
    open         double precision NOT NULL,
    open_ts      double precision NOT NULL,
    high         double precision NOT NULL,
    low          double precision NOT NULL,
    close        double precision NOT NULL,
    close_ts     double precision NOT NULL,
    count        bigint NOT NULL,
    volume       double precision NOT NULL,
    PRIMARY KEY (symbol, bucket_start)
);

CREATE TABLE IF NOT EXISTS metrics_1m (
    symbol       text COLLATE "C" NOT NULL,
    bucket_start bigint NOT NULL,
    count        bigint NOT NULL,
    sum          double precision NOT NULL,
    min          double precision NOT NULL,
    max          double precision NOT NULL,
    last         double precision NOT NULL,
    last_ts      double precision NOT NULL,
    volume_sum   double precision NOT NULL,
    pv_sum       double precision NOT NULL,
    PRIMARY KEY (symbol, bucket_start)
);
