-- Croupier initial schema.
-- Counts are bigint and values double precision, so asyncpg returns int/float, never Decimal.

-- Every change to an experiment or an API key takes a new number from this sequence. Server
-- processes poll its last value (one tiny query) to learn that their snapshot is stale when
-- Redis pub/sub is unavailable.
CREATE SEQUENCE change_version AS bigint;

-- A per-installation secret used to sign decision ids (HMAC), created once.
CREATE TABLE server_secret (
    id          smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    secret      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE experiments (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key             text NOT NULL UNIQUE,
    name            text,
    description     text,
    policy          text NOT NULL CHECK (policy IN ('thompson', 'fixed', 'rollout')),
    sticky          boolean NOT NULL,
    status          text NOT NULL DEFAULT 'draft'
                    CHECK (status IN ('draft', 'running', 'paused', 'completed', 'rolled_back', 'archived')),
    salt            text NOT NULL,
    -- the immutable-after-draft definition (metrics, targeting, thresholds, stages...) as JSON
    settings        jsonb NOT NULL,
    winner_index    smallint,
    stage_index     smallint,
    stage_started_at timestamptz,
    status_reason   text,
    -- 'completed' or 'rolled_back' once the experiment has ended (kept when archived)
    ended_status    text,
    version         bigint NOT NULL DEFAULT nextval('change_version'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    ended_at        timestamptz
);
CREATE INDEX experiments_status ON experiments (status);

CREATE TABLE arms (
    experiment_id   integer NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    arm_index       smallint NOT NULL,
    key             text NOT NULL,
    config          jsonb NOT NULL DEFAULT '{}'::jsonb,
    control         boolean NOT NULL,
    PRIMARY KEY (experiment_id, arm_index),
    UNIQUE (experiment_id, key)
);

-- Allocation history: one row per change of weights (or of what is served). The newest row of
-- an experiment is the allocation in force. Decisions point at the row they were made under,
-- which is what makes expected_exposures exact under adaptive allocation.
CREATE TABLE allocations (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    experiment_id   integer NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    weights         double precision[] NOT NULL,
    reason          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX allocations_experiment ON allocations (experiment_id, id);

-- The decision log, written behind in batches. decision_id is unique: a sticky unit's repeat
-- decisions share one id and are stored (and counted as an exposure) once.
CREATE TABLE decisions (
    decision_id     text PRIMARY KEY,
    experiment_id   integer NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    arm_index       smallint NOT NULL,
    allocation_id   bigint NOT NULL,
    unit_id         text NOT NULL,
    counted         boolean NOT NULL,
    reason          text NOT NULL,
    decided_at      timestamptz NOT NULL
);
CREATE INDEX decisions_experiment ON decisions (experiment_id, arm_index);

CREATE TABLE rewards (
    decision_id     text NOT NULL,
    metric          text NOT NULL,
    experiment_id   integer NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    arm_index       smallint NOT NULL,
    counted         boolean NOT NULL,
    value           double precision NOT NULL,
    idempotency_key text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (decision_id, metric)
);
CREATE INDEX rewards_experiment ON rewards (experiment_id, metric, arm_index);

-- Per-arm sufficient statistics, updated in the same transaction as the events they count.
CREATE TABLE arm_stats (
    experiment_id       integer NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    arm_index           smallint NOT NULL,
    exposures           bigint NOT NULL DEFAULT 0,
    expected_exposures  double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, arm_index)
);

CREATE TABLE metric_stats (
    experiment_id   integer NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    arm_index       smallint NOT NULL,
    metric          text NOT NULL,
    n               bigint NOT NULL DEFAULT 0,
    sum             double precision NOT NULL DEFAULT 0,
    sum_sq          double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, metric, arm_index)
);

-- Sequential-test state (the running minimum of the always-valid p-value) per comparison.
CREATE TABLE sequential_state (
    experiment_id   integer NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    metric          text NOT NULL,
    arm_index       smallint NOT NULL,
    kind            text NOT NULL,        -- 'two_sided' | 'guardrail'
    p_value         double precision NOT NULL DEFAULT 1.0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment_id, metric, arm_index, kind)
);

CREATE TABLE api_keys (
    id              text PRIMARY KEY,     -- the public part of the key, e.g. 'k3f9a0c1d2e4'
    name            text,
    scope           text NOT NULL CHECK (scope IN ('decide', 'admin')),
    secret_hash     bytea NOT NULL,       -- sha256 of the whole key; the key itself is never stored
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    version         bigint NOT NULL DEFAULT nextval('change_version')
);

CREATE TABLE audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor           text NOT NULL,        -- 'key:<id>', 'optimizer', 'cli'
    experiment_key  text,
    action          text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_experiment ON audit_log (experiment_key, id);
