-- The classroom's schema, version 3: the image a room's sessions start on (NULL: its first
-- lesson's image, else the server's default); the sessions the instructor asked to have built
-- ahead for the room, on all nodes together (NULL: none asked); the nodes that share this
-- database, with when each last swept (so each builds its share); and what each has built.
-- Portable as version 1.
ALTER TABLE rooms ADD COLUMN image TEXT;
ALTER TABLE rooms ADD COLUMN prepare_expected BIGINT;

CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);

-- What each node has built ahead for a room (its reserve), as its sweep last saw it: a
-- dashboard on any node adds up the fresh rows.
CREATE TABLE reserves (
    room_id TEXT NOT NULL,
    node TEXT NOT NULL,
    ready BIGINT NOT NULL,
    wanted BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (room_id, node)
);
