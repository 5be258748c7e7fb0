-- Rewards and decisions: the link to their experiment checked once per statement instead of
-- once per row.
--
-- Their foreign keys to experiments ran PostgreSQL's referential-integrity check for every
-- inserted row: a look-up of the experiment that also locks it (FOR KEY SHARE). The reward
-- group commit inserts thousands of rows per statement and the decision writer hundreds, all of
-- a few experiments; the per-row checks were the largest part of PostgreSQL's time per stored
-- reward (batches of 100 rewards: about 6-10 µs of 15-25 µs per row).
--
-- What the foreign keys guaranteed, and how it is kept:
--
-- - No row of an experiment that does not exist. A statement trigger locks the experiments of
--   the statement's rows (its transition table) FOR KEY SHARE, as the row checks did, and fails
--   the statement with the same error (SQLSTATE 23503, foreign_key_violation) when one of them
--   is missing. An experiment deleted concurrently is handled as before: the delete waits for
--   the inserting transaction, or the insert's lock waits for the delete and then finds the row
--   gone.
-- - ON DELETE CASCADE. A row trigger on experiments deletes the experiment's rewards and
--   decisions after the experiment row itself is deleted. Its statements take a new snapshot
--   (READ COMMITTED), so they also see the rows of an insert that committed while the delete
--   was waiting for its lock.
--
-- Rows are only inserted, never moved to another experiment, so UPDATE is not checked.

ALTER TABLE rewards DROP CONSTRAINT rewards_experiment_id_fkey;
ALTER TABLE decisions DROP CONSTRAINT decisions_experiment_id_fkey;

CREATE FUNCTION check_event_experiments() RETURNS trigger LANGUAGE plpgsql
SET jit = off
AS $$
DECLARE
    ids integer[];
    found integer;
BEGIN
    SELECT array_agg(DISTINCT experiment_id) INTO ids FROM new_rows;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO found
    FROM (SELECT 1 FROM experiments e WHERE e.id = ANY (ids) ORDER BY e.id FOR KEY SHARE) locked;
    IF found < cardinality(ids) THEN
        RAISE EXCEPTION 'insert on table "%" refers to an experiment that does not exist',
            TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER rewards_experiment_exists AFTER INSERT ON rewards
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION check_event_experiments();
CREATE TRIGGER decisions_experiment_exists AFTER INSERT ON decisions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION check_event_experiments();

CREATE FUNCTION delete_experiment_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM rewards WHERE experiment_id = OLD.id;
    DELETE FROM decisions WHERE experiment_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER experiments_delete_events AFTER DELETE ON experiments
    FOR EACH ROW EXECUTE FUNCTION delete_experiment_events();
