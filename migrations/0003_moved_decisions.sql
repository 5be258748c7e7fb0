-- A counted decision of a sticky experiment whose unit was already counted on another arm
-- (a rollout unit moving control → candidate as the share grows, or a unit leaving an arm whose
-- weight a guardrail set to 0) is "moved". It is an exposure of its new arm, but not a fresh
-- draw from the allocation: of all returning units only the movers produce a counted decision,
-- and each of them lands on its new arm with certainty. Its expected exposure is therefore one
-- on the arm it got, which keeps the sample-ratio test exact for sticky experiments whose
-- weights change.
ALTER TABLE decisions ADD COLUMN moved boolean NOT NULL DEFAULT false;

-- Finding a unit's earlier counted decisions when a batch is written.
CREATE INDEX decisions_unit ON decisions (experiment_id, unit_id) WHERE counted;
