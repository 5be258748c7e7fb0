-- Optimizer state kept on the experiment row.

-- Arms whose guardrail was breached: the optimizer keeps their weight at 0 for the rest of the
-- experiment (thompson reallocates among the others).
ALTER TABLE experiments ADD COLUMN disabled_arms smallint[] NOT NULL DEFAULT '{}';

-- rollout: the experiment's total exposures when the current stage began, so that a stage's
-- `min_exposures` counts only the exposures made during that stage.
ALTER TABLE experiments ADD COLUMN stage_exposures_base bigint NOT NULL DEFAULT 0;

-- The optimizer lists running experiments every cycle (experiments_status covers it); its
-- evaluation reads allocations, arm_stats and metric_stats by their primary keys.
