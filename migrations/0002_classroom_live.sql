-- The classroom's schema, version 2: what each node reports of its learners' sessions (so a
-- dashboard on any node shows every learner), and the instructor's request to end a learner's
-- session (carried out by the node that holds it). Portable as version 1: BIGINT, one column
-- per ALTER TABLE.

-- When the node holding the learner's session last reported on it, and what it saw.
ALTER TABLE learners ADD COLUMN reported_at BIGINT;
ALTER TABLE learners ADD COLUMN last_input_at BIGINT;
ALTER TABLE learners ADD COLUMN memory_bytes BIGINT;
ALTER TABLE learners ADD COLUMN pids BIGINT;
-- The instructor asked to end the learner's current session (cleared when a new one starts).
ALTER TABLE learners ADD COLUMN end_requested_at BIGINT;
