-- sequential_history (migration 0005) written once per statement instead of once per row.
--
-- The row trigger of 0005 ran a PL/pgSQL function for every stored p-value: a look-up of the
-- comparison's latest point, then an insert. The optimizer's first cycle over 1,000 experiments
-- stores ~10,000 p-values in one statement and spent ~0.45 s of PostgreSQL time in it (0.6 s of
-- the 1.5 s cycle went to that statement). These statement triggers do the same in one set-based
-- insert over the statement's rows (its transition table), with the same rule and the same
-- values:
--
-- - a point is added for a stored row whose comparison has no point yet, or whose value is below
--   the last point's and either fell by 2 % or more or the last point is a minute old;
-- - its exposures are those of the arm and the control (the arm_stats rows of the arm or of a
--   control arm), read when the statement's triggers run, as before.
--
-- The rows of one statement are different comparisons (the primary key), so adding their points
-- together adds the same points as adding them one by one. The query is planned at each run
-- (EXECUTE) for the number of rows at hand: a few rows from a `/results` evaluation look up
-- their arms by index, a cycle's thousands join them. A trigger with a transition table cannot
-- name columns (0005's was `UPDATE OF p_value`), so the update trigger fires on every UPDATE of
-- the table; the only writers, the `sequential_merge` upserts, always set p_value.

DROP TRIGGER sequential_history_record ON sequential_state;
DROP FUNCTION sequential_history_record();

CREATE FUNCTION sequential_history_record_rows() RETURNS trigger LANGUAGE plpgsql
-- JIT compilation would cost more than the query itself
SET jit = off
AS $$
BEGIN
    EXECUTE $query$
        INSERT INTO sequential_history (experiment_id, metric, arm_index, kind, p_value,
                                        exposures)
        SELECT t.experiment_id, t.metric, t.arm_index, t.kind, t.p_value,
               coalesce(sum(s.exposures), 0)
        FROM (
            SELECT n.experiment_id, n.metric, n.arm_index, n.kind, n.p_value
            FROM stored_rows n
            LEFT JOIN LATERAL (
                SELECT h.p_value, h.at
                FROM sequential_history h
                WHERE h.experiment_id = n.experiment_id AND h.metric = n.metric
                  AND h.arm_index = n.arm_index AND h.kind = n.kind
                ORDER BY h.at DESC
                LIMIT 1
            ) last ON true
            WHERE last.at IS NULL
               OR (n.p_value < last.p_value
                   AND (n.p_value <= last.p_value * 0.98
                        OR last.at < now() - interval '60 seconds'))
        ) t
        LEFT JOIN (arm_stats s
                   JOIN arms a ON a.experiment_id = s.experiment_id AND a.arm_index = s.arm_index)
          ON s.experiment_id = t.experiment_id AND (s.arm_index = t.arm_index OR a.control)
        GROUP BY t.experiment_id, t.metric, t.arm_index, t.kind, t.p_value
    $query$;
    RETURN NULL;
END
$$;

CREATE TRIGGER sequential_history_record_insert
    AFTER INSERT ON sequential_state
    REFERENCING NEW TABLE AS stored_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sequential_history_record_rows();

CREATE TRIGGER sequential_history_record_update
    AFTER UPDATE ON sequential_state
    REFERENCING NEW TABLE AS stored_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sequential_history_record_rows();
