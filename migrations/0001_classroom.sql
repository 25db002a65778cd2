-- The classroom's schema, version 1. Portable SQL: the same file migrates SQLite (the default
-- store) and PostgreSQL. Integers are BIGINT (booleans too, 0 or 1), times are Unix
-- milliseconds, ids are random text made by the server: no AUTOINCREMENT/SERIAL, no BOOLEAN,
-- no dialect-specific types.

-- Server-wide values, such as the hash of the instructor's admin token.
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE rooms (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    -- The lesson topics in order, as a JSON array of strings.
    lessons TEXT NOT NULL,
    capacity BIGINT NOT NULL,
    -- Limits that tighten the server's (NULL: the server's own).
    memory_bytes BIGINT,
    pids BIGINT,
    cpu_millis BIGINT,
    opens_at BIGINT,
    closes_at BIGINT,
    created_at BIGINT NOT NULL,
    ended_at BIGINT
);

CREATE TABLE learners (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES rooms (id),
    name TEXT,
    -- The learner's current session (sessions end with the server; the learner stays).
    session_id TEXT,
    joined_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX learners_by_room ON learners (room_id, joined_at);

-- Every check a room's learner ran, passed or not, read by the host from the kernel.
CREATE TABLE check_results (
    learner_id TEXT NOT NULL REFERENCES learners (id),
    room_id TEXT NOT NULL REFERENCES rooms (id),
    lesson TEXT NOT NULL,
    step TEXT NOT NULL,
    passed BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX check_results_by_room ON check_results (room_id, at);

CREATE TABLE room_events (
    room_id TEXT NOT NULL REFERENCES rooms (id),
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    learner_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX room_events_by_room ON room_events (room_id, at);

-- Signed-in instructors: the hash of the cookie's value, never the value.
CREATE TABLE instructor_sessions (
    id_hash TEXT PRIMARY KEY,
    -- The admin token's hash at sign-in: a new token ends every older sign-in.
    token_hash TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
