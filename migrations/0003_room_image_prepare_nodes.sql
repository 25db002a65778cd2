-- The classroom's schema, version 3: the image a room's sessions start on (NULL: its first
-- lesson's image, else the server's default); the sessions the instructor asked to have built
-- ahead for the room, on all nodes together (NULL: none asked); and the nodes that share this
-- database, with when each last swept (so each builds its share). Portable as version 1.
ALTER TABLE rooms ADD COLUMN image TEXT;
ALTER TABLE rooms ADD COLUMN prepare_expected BIGINT;

CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
