-- Named queries. Each starts with `-- name: <name>`; storage/queries.py loads them once.

-- name: secret_get
SELECT secret FROM server_secret WHERE id = 1;

-- name: secret_init
INSERT INTO server_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING;

-- name: change_version
SELECT last_value FROM change_version;

-- name: experiment_versions
SELECT id, key, version FROM experiments;

-- name: policy_rows
-- Everything a process needs to decide for the given experiments (NULL = all).
SELECT e.id, e.key, e.version, e.status, e.ended_status, e.policy, e.sticky, e.salt,
       e.winner_index, e.settings::text AS settings,
       a.id AS allocation_id, a.weights
FROM experiments e
JOIN LATERAL (
    SELECT id, weights FROM allocations WHERE experiment_id = e.id ORDER BY id DESC LIMIT 1
) a ON true
WHERE $1::int[] IS NULL OR e.id = ANY($1::int[]);

-- name: experiment_insert
INSERT INTO experiments (key, name, description, policy, sticky, salt, settings, stage_index)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
RETURNING id;

-- name: arm_insert_many
INSERT INTO arms (experiment_id, arm_index, key, config, control)
SELECT $1, i - 1, k, c::jsonb, ctl
FROM unnest($2::text[], $3::text[], $4::boolean[]) WITH ORDINALITY AS t(k, c, ctl, i);

-- name: arm_stats_init
INSERT INTO arm_stats (experiment_id, arm_index)
SELECT $1, g FROM generate_series(0, $2 - 1) AS g
ON CONFLICT DO NOTHING;

-- name: metric_stats_init
INSERT INTO metric_stats (experiment_id, arm_index, metric)
SELECT $1, g, m FROM generate_series(0, $2 - 1) AS g, unnest($3::text[]) AS m
ON CONFLICT DO NOTHING;

-- name: stats_reset
-- Used when a draft's arms or metrics are redefined: no events can exist yet in draft
-- except non-counted ones, which never touch the statistics.
DELETE FROM arm_stats WHERE experiment_id = $1;

-- name: metric_stats_reset
DELETE FROM metric_stats WHERE experiment_id = $1;

-- name: arms_delete
DELETE FROM arms WHERE experiment_id = $1;

-- name: allocation_insert
INSERT INTO allocations (experiment_id, weights, reason) VALUES ($1, $2::float8[], $3)
RETURNING id, created_at;

-- name: allocation_history
SELECT created_at, weights, reason FROM allocations WHERE experiment_id = $1 ORDER BY id;

-- name: allocation_current
SELECT id, weights FROM allocations WHERE experiment_id = $1 ORDER BY id DESC LIMIT 1;

-- name: experiment_get
SELECT id, key, status, ended_status, policy, sticky, salt, winner_index, stage_index,
       stage_started_at, status_reason, settings::text AS settings, version,
       created_at, updated_at, started_at, ended_at
FROM experiments WHERE key = $1;

-- name: experiment_get_for_update
SELECT id, key, status, ended_status, policy, sticky, salt, winner_index, stage_index,
       stage_started_at, status_reason, settings::text AS settings, version,
       created_at, updated_at, started_at, ended_at
FROM experiments WHERE key = $1 FOR UPDATE;

-- name: experiment_list
SELECT e.id, e.key, e.status, e.ended_status, e.policy, e.sticky, e.salt, e.winner_index,
       e.stage_index, e.stage_started_at, e.status_reason, e.settings::text AS settings,
       e.version, e.created_at, e.updated_at, e.started_at, e.ended_at
FROM experiments e
WHERE $1::text IS NULL OR e.status = $1
ORDER BY e.id;

-- name: current_weights_many
SELECT DISTINCT ON (experiment_id) experiment_id, weights
FROM allocations WHERE experiment_id = ANY($1::int[])
ORDER BY experiment_id, id DESC;

-- name: experiment_update_definition
UPDATE experiments
SET name = $2, description = $3, policy = $4, sticky = $5, settings = $6::jsonb,
    version = nextval('change_version'), updated_at = now()
WHERE id = $1;

-- name: experiment_set_status
UPDATE experiments
SET status = $2, ended_status = $3, winner_index = $4, status_reason = $5,
    started_at = CASE WHEN $2 = 'running' AND started_at IS NULL THEN now() ELSE started_at END,
    stage_started_at = CASE WHEN $2 = 'running' AND stage_started_at IS NULL THEN now()
                            ELSE stage_started_at END,
    ended_at = CASE WHEN $2 IN ('completed', 'rolled_back') THEN now() ELSE ended_at END,
    version = nextval('change_version'), updated_at = now()
WHERE id = $1;

-- name: experiment_touch
UPDATE experiments SET version = nextval('change_version'), updated_at = now() WHERE id = $1;

-- name: experiment_delete
DELETE FROM experiments WHERE id = $1;

-- name: audit_insert
INSERT INTO audit_log (actor, experiment_key, action, details) VALUES ($1, $2, $3, $4::jsonb);

-- name: audit_list
SELECT id, at, actor, experiment_key, action, details::text AS details
FROM audit_log
WHERE ($1::text IS NULL OR experiment_key = $1)
ORDER BY id DESC
LIMIT $2;

-- name: stats_arms
SELECT arm_index, exposures, expected_exposures FROM arm_stats
WHERE experiment_id = $1 ORDER BY arm_index;

-- name: stats_metrics
SELECT metric, arm_index, n, sum, sum_sq FROM metric_stats
WHERE experiment_id = $1 ORDER BY metric, arm_index;

-- name: recount_arms
-- A full recount of exposures from the decision log (the oracle for arm_stats).
SELECT arm_index, count(*) AS exposures FROM decisions
WHERE experiment_id = $1 AND counted GROUP BY arm_index ORDER BY arm_index;

-- name: recount_metrics
SELECT metric, arm_index, count(*) AS n, sum(value) AS sum, sum(value * value) AS sum_sq
FROM rewards WHERE experiment_id = $1 AND counted
GROUP BY metric, arm_index ORDER BY metric, arm_index;

-- name: decision_stage_create
CREATE TEMP TABLE IF NOT EXISTS decision_stage_v3 (
    decision_id text, experiment_id integer, arm_index smallint, allocation_id bigint,
    unit_id text, counted boolean, reason text, decided_epoch float8, sticky boolean,
    moved boolean NOT NULL DEFAULT false
) ON COMMIT DELETE ROWS;

-- name: decision_stage_mark_moved
-- A counted decision of a sticky experiment whose unit is already counted on another arm, in
-- the log or earlier in this batch, is a move (see migrations/0003_moved_decisions.sql).
-- Earlier rows of the batch are found with a window (linear), the log through decisions_unit.
UPDATE decision_stage_v3 s SET moved = true
FROM (
    SELECT ctid AS row_id, experiment_id, unit_id, arm_index,
           min(arm_index) OVER w AS min_before, max(arm_index) OVER w AS max_before
    FROM decision_stage_v3
    WHERE counted AND sticky
    WINDOW w AS (PARTITION BY experiment_id, unit_id ORDER BY decided_epoch
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
) x
WHERE s.ctid = x.row_id AND (
    (x.min_before IS NOT NULL AND (x.min_before <> x.arm_index OR x.max_before <> x.arm_index))
    OR EXISTS (SELECT 1 FROM decisions d
               WHERE d.experiment_id = x.experiment_id AND d.unit_id = x.unit_id
                 AND d.counted AND d.arm_index <> x.arm_index));

-- name: decision_insert_from_stage
-- Store the staged batch and add its exposures to arm_stats, in one statement; returns the
-- number of rows newly stored. Sticky repeats share a decision_id: only the first row is
-- stored and counted. Decisions of experiments deleted meanwhile are dropped. Each newly
-- counted decision adds one exposure on its arm and, to expected_exposures, the weight of
-- every arm in the allocation it was made under — or, for a sticky unit that moved, one on
-- the arm it moved to (docs/statistics.md, SRM). A deadlock with another process's batch on
-- arm_stats rows rolls the whole transaction back; the writer retries it.
WITH ins AS (
    INSERT INTO decisions (decision_id, experiment_id, arm_index, allocation_id, unit_id,
                           counted, reason, decided_at, moved)
    SELECT DISTINCT ON (s.decision_id) s.decision_id, s.experiment_id, s.arm_index,
           s.allocation_id, s.unit_id, s.counted, s.reason, to_timestamp(s.decided_epoch),
           s.moved
    FROM decision_stage_v3 s
    WHERE EXISTS (SELECT 1 FROM experiments e WHERE e.id = s.experiment_id)
    ORDER BY s.decision_id, s.decided_epoch
    ON CONFLICT (decision_id) DO NOTHING
    RETURNING experiment_id, arm_index, allocation_id, counted, moved
),
groups AS (
    SELECT experiment_id, arm_index, allocation_id, moved, count(*) AS n
    FROM ins WHERE counted GROUP BY 1, 2, 3, 4
),
deltas AS (
    SELECT experiment_id, arm_index, n, CASE WHEN moved THEN n ELSE 0 END::float8 AS e
    FROM groups
    UNION ALL
    SELECT g.experiment_id, (w.ord - 1)::smallint, 0, g.n * w.weight
    FROM groups g JOIN allocations a ON a.id = g.allocation_id,
         unnest(a.weights) WITH ORDINALITY AS w(weight, ord)
    WHERE NOT g.moved
),
added AS (
    UPDATE arm_stats s
    SET exposures = s.exposures + d.n, expected_exposures = s.expected_exposures + d.e
    FROM (SELECT experiment_id, arm_index, sum(n)::bigint AS n, sum(e) AS e FROM deltas
          GROUP BY 1, 2) d
    WHERE s.experiment_id = d.experiment_id AND s.arm_index = d.arm_index
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM added) AS updated;

-- name: reward_insert
INSERT INTO rewards (decision_id, metric, experiment_id, arm_index, counted, value, idempotency_key)
SELECT v.decision_id, v.metric, v.experiment_id, v.arm_index, v.counted, v.value, v.idem
FROM unnest($1::text[], $2::text[], $3::int[], $4::smallint[], $5::boolean[], $6::float8[], $7::text[])
     AS v(decision_id, metric, experiment_id, arm_index, counted, value, idem)
WHERE EXISTS (SELECT 1 FROM experiments e WHERE e.id = v.experiment_id)
ON CONFLICT (decision_id, metric) DO NOTHING
RETURNING decision_id, metric;

-- name: reward_existing
SELECT r.decision_id, r.metric, r.value
FROM rewards r
JOIN unnest($1::text[], $2::text[]) AS v(decision_id, metric)
  ON r.decision_id = v.decision_id AND r.metric = v.metric;

-- name: reward_delete
DELETE FROM rewards r
USING unnest($1::text[], $2::text[]) AS v(decision_id, metric)
WHERE r.decision_id = v.decision_id AND r.metric = v.metric;

-- name: metric_stats_add
-- Add aggregated rewards ($1…$6, in key order) to their statistics rows. The rows are locked in
-- that order first: an UPDATE … FROM locks rows in whatever order its join plan visits them
-- (a hash join: the table's physical order, which updates keep changing), so two commits
-- sharing rows could lock them in opposite orders and deadlock (PostgreSQL detects that only
-- after deadlock_timeout, 1 s). Locked in key order, one waits for the other instead.
WITH locked AS MATERIALIZED (
    SELECT v.experiment_id, v.metric, v.arm_index, v.n, v.sum, v.sum_sq
    FROM unnest($1::int[], $2::text[], $3::smallint[], $4::bigint[], $5::float8[], $6::float8[])
         WITH ORDINALITY AS v(experiment_id, metric, arm_index, n, sum, sum_sq, ord)
    JOIN metric_stats s ON s.experiment_id = v.experiment_id AND s.metric = v.metric
                       AND s.arm_index = v.arm_index
    ORDER BY v.ord
    FOR NO KEY UPDATE OF s
)
UPDATE metric_stats s
SET n = s.n + l.n, sum = s.sum + l.sum, sum_sq = s.sum_sq + l.sum_sq
FROM locked l
WHERE s.experiment_id = l.experiment_id AND s.metric = l.metric AND s.arm_index = l.arm_index;

-- name: key_insert
INSERT INTO api_keys (id, name, scope, secret_hash) VALUES ($1, $2, $3, $4);

-- name: key_list
SELECT id, name, scope, created_at, revoked_at FROM api_keys ORDER BY created_at, id;

-- name: key_revoke
UPDATE api_keys SET revoked_at = now(), version = nextval('change_version')
WHERE id = $1 AND revoked_at IS NULL
RETURNING id;

-- name: key_count
SELECT count(*) FROM api_keys;

-- name: key_all
SELECT id, scope, secret_hash, revoked_at IS NOT NULL AS revoked FROM api_keys;

-- name: experiments_existing
SELECT id FROM experiments WHERE id = ANY($1::int[]);

-- name: feed_fingerprint
-- Changes whenever a committed experiment or API key row is inserted, updated or deleted.
SELECT (SELECT count(*) FROM experiments) AS n_exp,
       (SELECT coalesce(sum(version), 0) FROM experiments) AS sum_exp,
       (SELECT count(*) FROM api_keys) AS n_keys,
       (SELECT coalesce(sum(version), 0) FROM api_keys) AS sum_keys;

-- name: change_version_next
SELECT nextval('change_version');

-- optimizer

-- name: optimizer_try_lock
-- Leader election: a session advisory lock held on the leader's dedicated connection.
SELECT pg_try_advisory_lock($1::bigint);

-- name: optimizer_unlock
SELECT pg_advisory_unlock($1::bigint);

-- name: optimizer_lock_experiment
-- Re-check, inside the change's transaction, that the experiment is still running as it was
-- when the change was computed (an admin action racing the optimizer wins).
SELECT e.id, e.status, e.stage_index, e.disabled_arms,
       (SELECT a.id FROM allocations a WHERE a.experiment_id = e.id ORDER BY a.id DESC LIMIT 1)
           AS allocation_id
FROM experiments e WHERE e.id = $1 FOR UPDATE;

-- name: optimizer_set_stage
UPDATE experiments
SET stage_index = $2, stage_started_at = $3, stage_exposures_base = $4,
    version = nextval('change_version'), updated_at = now()
WHERE id = $1;

-- name: optimizer_set_disabled
UPDATE experiments
SET disabled_arms = $2::smallint[], status_reason = $3,
    version = nextval('change_version'), updated_at = now()
WHERE id = $1;

-- name: optimizer_total_exposures
SELECT coalesce(sum(exposures), 0)::bigint FROM arm_stats WHERE experiment_id = $1;

-- results/sequential (statistics wiring)

-- name: sequential_states
-- The stored always-valid p-values (running minima) of every comparison of an experiment.
SELECT metric, arm_index, kind, p_value FROM sequential_state WHERE experiment_id = $1;

-- name: sequential_merge
-- Fold new p-values into the running minima and return the merged values. Rows are written in
-- key order so concurrent merges lock them in the same order; an experiment deleted meanwhile
-- is skipped.
INSERT INTO sequential_state (experiment_id, metric, arm_index, kind, p_value)
SELECT $1, v.metric, v.arm_index, v.kind, v.p_value
FROM unnest($2::text[], $3::smallint[], $4::text[], $5::float8[])
     AS v(metric, arm_index, kind, p_value)
WHERE EXISTS (SELECT 1 FROM experiments e WHERE e.id = $1)
ORDER BY v.metric, v.arm_index, v.kind
ON CONFLICT (experiment_id, metric, arm_index, kind) DO UPDATE
SET p_value = LEAST(sequential_state.p_value, EXCLUDED.p_value),
    updated_at = CASE WHEN EXCLUDED.p_value < sequential_state.p_value THEN now()
                      ELSE sequential_state.updated_at END
RETURNING metric, arm_index, kind, p_value;

-- name: results_experiment
-- The experiment row as the statistics need it, with the optimizer's state (migration 0002).
SELECT id, status, settings::text AS settings, stage_index, stage_started_at, started_at,
       stage_exposures_base, disabled_arms
FROM experiments WHERE key = $1;

-- dashboard (migration 0005: sequential_history, written by a trigger on sequential_state)

-- name: sequential_history
-- An experiment's sequential p-value history, per comparison in time order.
SELECT metric, arm_index, kind, at, p_value, exposures
FROM sequential_history WHERE experiment_id = $1
ORDER BY metric, kind, arm_index, at;

-- name: dashboard_experiment
-- The experiment's id and definition, for the dashboard's history endpoint.
SELECT id, settings::text AS settings FROM experiments WHERE key = $1;

-- optimizer cycle: every running experiment's statistics in a few set-based reads

-- name: optimizer_running_stats
-- Every running experiment with its allocation in force (read in the cycle's snapshot).
SELECT e.id, e.status, e.settings::text AS settings, e.stage_index, e.stage_started_at,
       e.started_at, e.stage_exposures_base, e.disabled_arms,
       a.id AS allocation_id, a.weights
FROM experiments e
JOIN LATERAL (
    SELECT id, weights FROM allocations WHERE experiment_id = e.id ORDER BY id DESC LIMIT 1
) a ON true
WHERE e.status = 'running'
ORDER BY e.id;

-- name: stats_arms_many
SELECT experiment_id, arm_index, exposures, expected_exposures FROM arm_stats
WHERE experiment_id = ANY($1::int[]);

-- name: stats_metrics_many
SELECT experiment_id, metric, arm_index, n, sum, sum_sq FROM metric_stats
WHERE experiment_id = ANY($1::int[]);

-- name: sequential_states_many
SELECT experiment_id, metric, arm_index, kind, p_value FROM sequential_state
WHERE experiment_id = ANY($1::int[]);

-- name: sequential_merge_many
-- sequential_merge for many experiments in one statement (one optimizer cycle): rows are
-- written in key order, so concurrent merges lock them in the same order.
INSERT INTO sequential_state (experiment_id, metric, arm_index, kind, p_value)
SELECT v.experiment_id, v.metric, v.arm_index, v.kind, v.p_value
FROM unnest($1::int[], $2::text[], $3::smallint[], $4::text[], $5::float8[])
     AS v(experiment_id, metric, arm_index, kind, p_value)
WHERE EXISTS (SELECT 1 FROM experiments e WHERE e.id = v.experiment_id)
ORDER BY v.experiment_id, v.metric, v.arm_index, v.kind
ON CONFLICT (experiment_id, metric, arm_index, kind) DO UPDATE
SET p_value = LEAST(sequential_state.p_value, EXCLUDED.p_value),
    updated_at = CASE WHEN EXCLUDED.p_value < sequential_state.p_value THEN now()
                      ELSE sequential_state.updated_at END
RETURNING experiment_id, metric, arm_index, kind, p_value;

-- name: reward_commit_fresh
-- The common case of a reward group commit as one statement (autocommit, one round trip):
-- insert every reward and add the counted ones ($8…$13, aggregated by the caller in key order)
-- to metric_stats. The constraints decide whether the common case holds: a (decision_id,
-- metric) key already stored (or inserted meanwhile by another commit) is a unique violation,
-- a deleted experiment a foreign-key violation. Either fails the whole statement, nothing is
-- written, and the caller takes the general path, which sorts out duplicates, conflicts and
-- deleted experiments. Checking first, in the statement, had PostgreSQL spend 2-3 times the
-- CPU per reward (64 clients sending single rewards: 4,700 -> 7,200 rewards/s without it).
WITH ins AS (
    INSERT INTO rewards (decision_id, metric, experiment_id, arm_index, counted, value,
                         idempotency_key)
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::smallint[], $5::boolean[],
                         $6::float8[], $7::text[])
    RETURNING 1
),
-- the statistics rows, locked in the caller's (key) order before they are updated: see
-- metric_stats_add
locked AS MATERIALIZED (
    SELECT a.experiment_id, a.metric, a.arm_index, a.n, a.sum, a.sum_sq
    FROM unnest($8::int[], $9::text[], $10::smallint[], $11::bigint[], $12::float8[],
                $13::float8[]) WITH ORDINALITY AS a(experiment_id, metric, arm_index, n, sum,
                                                     sum_sq, ord)
    JOIN metric_stats s ON s.experiment_id = a.experiment_id AND s.metric = a.metric
                       AND s.arm_index = a.arm_index
    ORDER BY a.ord
    FOR NO KEY UPDATE OF s
),
upd AS (
    UPDATE metric_stats s
    SET n = s.n + l.n, sum = s.sum + l.sum, sum_sq = s.sum_sq + l.sum_sq
    FROM locked l
    WHERE s.experiment_id = l.experiment_id AND s.metric = l.metric
      AND s.arm_index = l.arm_index
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS inserted;

-- optimizer: a cycle's changes written in one transaction (the batch forms of the statements
-- of one change: optimizer_lock_experiment, allocation_insert, experiment_touch, audit_insert)

-- name: optimizer_lock_experiments
-- optimizer_lock_experiment for every experiment a cycle changes, locked in id order. FOR NO KEY
-- UPDATE still serialises the optimizer with admin actions (FOR UPDATE, UPDATE, DELETE) but,
-- unlike FOR UPDATE, not with the foreign-key checks of the decision and reward writers, which
-- lock many experiments in no particular order and could otherwise deadlock with the batch.
SELECT e.id, e.status, e.stage_index, e.disabled_arms,
       (SELECT a.id FROM allocations a WHERE a.experiment_id = e.id ORDER BY a.id DESC LIMIT 1)
           AS allocation_id
FROM experiments e WHERE e.id = ANY($1::int[]) ORDER BY e.id FOR NO KEY UPDATE OF e;

-- name: allocation_insert_many
-- allocation_insert for many experiments: row i gets the weights $2[$3[i]:$4[i]] (one flat
-- array, 1-based inclusive bounds) and the reason $5[i]; ids are given in row order.
INSERT INTO allocations (experiment_id, weights, reason)
SELECT v.experiment_id, ($2::float8[])[v.first:v.last], v.reason
FROM unnest($1::int[], $3::int[], $4::int[], $5::text[]) WITH ORDINALITY
     AS v(experiment_id, first, last, reason, i)
ORDER BY v.i;

-- name: experiment_touch_many
UPDATE experiments SET version = nextval('change_version'), updated_at = now()
WHERE id = ANY($1::int[]);

-- name: audit_insert_many
-- audit_insert for many entries of one actor, in row order.
INSERT INTO audit_log (actor, experiment_key, action, details)
SELECT $1, v.experiment_key, v.action, v.details::jsonb
FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY
     AS v(experiment_key, action, details, i)
ORDER BY v.i;
