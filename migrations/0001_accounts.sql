-- groxy's accounts: keys made at run time, a change counter every replica polls, and the usage
-- ledger per key, model and hour. One portable set for SQLite and PostgreSQL: BIGINT, TEXT and
-- INSERT ... ON CONFLICT mean the same in both. Times are Unix milliseconds (keys) or the Unix
-- second an hour starts at (usage); money is in nanodollars (1e-9 USD), so sums are exact.

CREATE TABLE IF NOT EXISTS groxy_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    limits TEXT NOT NULL DEFAULT '{}',
    daily_budget_nanos BIGINT,
    monthly_budget_nanos BIGINT,
    allowed_models TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS groxy_meta (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

INSERT INTO groxy_meta (name, value) VALUES ('keys_version', 0) ON CONFLICT (name) DO NOTHING;

CREATE TABLE IF NOT EXISTS groxy_usage (
    key TEXT NOT NULL,
    model TEXT NOT NULL,
    hour BIGINT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens BIGINT NOT NULL DEFAULT 0,
    refusals BIGINT NOT NULL DEFAULT 0,
    cost_nanos BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key, model, hour)
);

CREATE INDEX IF NOT EXISTS groxy_usage_by_hour ON groxy_usage (hour);
