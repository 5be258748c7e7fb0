-- The sequential state and its history: the link to their experiment checked once per
-- statement instead of once per row (as migration 0008 does for rewards and decisions).
--
-- The foreign keys of sequential_state and sequential_history ran PostgreSQL's
-- referential-integrity check for every inserted row: a look-up of the experiment that also
-- locks it (FOR KEY SHARE). The optimizer's first cycle over 1,000 experiments stores ~10,000
-- p-values and as many history points: ~0.1 s of PostgreSQL time in those checks alone, about
-- half of its merges' time.
--
-- What the foreign keys guaranteed, and how it is kept (the reasoning of 0008):
--
-- - No row of an experiment that does not exist. A statement trigger on each table locks the
--   experiments of the statement's rows FOR KEY SHARE, as the row checks did, and fails the
--   statement with the same error (SQLSTATE 23503) when one of them is missing
--   (`check_event_experiments`, migration 0008). The merges skip experiments deleted before
--   their snapshot (`WHERE EXISTS`) as before; one deleted after it fails the statement, as
--   the row check did.
-- - ON DELETE CASCADE. 0008's row trigger on experiments (`delete_experiment_events`) also
--   deletes the experiment's sequential state and history after the experiment row itself is
--   deleted; its statements take a new snapshot (READ COMMITTED), so they also see the rows
--   of a merge that committed while the delete was waiting for its lock.
--
-- Rows are never moved to another experiment (an update sets only p_value and updated_at), so
-- UPDATE is not checked, as the foreign key skipped it too.

ALTER TABLE sequential_state DROP CONSTRAINT sequential_state_experiment_id_fkey;
ALTER TABLE sequential_history DROP CONSTRAINT sequential_history_experiment_id_fkey;

CREATE TRIGGER sequential_state_experiment_exists AFTER INSERT ON sequential_state
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION check_event_experiments();
CREATE TRIGGER sequential_history_experiment_exists AFTER INSERT ON sequential_history
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION check_event_experiments();

-- 0008's delete trigger on experiments deletes these rows too
CREATE OR REPLACE FUNCTION delete_experiment_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM rewards WHERE experiment_id = OLD.id;
    DELETE FROM decisions WHERE experiment_id = OLD.id;
    DELETE FROM sequential_state WHERE experiment_id = OLD.id;
    DELETE FROM sequential_history WHERE experiment_id = OLD.id;
    RETURN NULL;
END
$$;
