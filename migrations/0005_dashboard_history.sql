-- The dashboard's chart of each comparison's always-valid p-value over time.
-- sequential_state keeps only the running minimum. A trigger on it appends the new value to
-- sequential_history whenever a writer (a /results evaluation or an optimizer cycle, whichever
-- code path) stores a value for a comparison that has no history yet, or one that fell by 2 % or
-- more, or fell at all when the last point is a minute old. So the history stays small (about
-- 115 points per decade of p, plus at most one a minute) and a non-increasing series loses
-- nothing a chart needs. Only GET /v1/experiments/{key}/history reads it.
CREATE TABLE sequential_history (
    experiment_id   integer NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    metric          text NOT NULL,
    arm_index       smallint NOT NULL,
    kind            text NOT NULL,        -- 'two_sided' | 'guardrail', as in sequential_state
    at              timestamptz NOT NULL DEFAULT now(),
    p_value         double precision NOT NULL,
    exposures       bigint NOT NULL       -- exposures of the arm and the control at that time
);

-- The trigger (the latest point of a comparison) and the reader (an experiment's points in
-- time order) both use it.
CREATE INDEX sequential_history_lookup
    ON sequential_history (experiment_id, metric, arm_index, kind, at);

CREATE FUNCTION sequential_history_record() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_p  double precision;
    last_at timestamptz;
BEGIN
    SELECT h.p_value, h.at INTO last_p, last_at
    FROM sequential_history h
    WHERE h.experiment_id = NEW.experiment_id AND h.metric = NEW.metric
      AND h.arm_index = NEW.arm_index AND h.kind = NEW.kind
    ORDER BY h.at DESC
    LIMIT 1;
    IF NOT FOUND
       OR (NEW.p_value < last_p
           AND (NEW.p_value <= last_p * 0.98 OR last_at < now() - interval '60 seconds')) THEN
        INSERT INTO sequential_history (experiment_id, metric, arm_index, kind, p_value, exposures)
        SELECT NEW.experiment_id, NEW.metric, NEW.arm_index, NEW.kind, NEW.p_value,
               coalesce(sum(s.exposures), 0)
        FROM arm_stats s
        JOIN arms a ON a.experiment_id = s.experiment_id AND a.arm_index = s.arm_index
        WHERE s.experiment_id = NEW.experiment_id AND (s.arm_index = NEW.arm_index OR a.control);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sequential_history_record
    AFTER INSERT OR UPDATE OF p_value ON sequential_state
    FOR EACH ROW EXECUTE FUNCTION sequential_history_record();
