-- The classroom's schema, version 3: the image a room's sessions start on (NULL: its first
-- lesson's image, else the server's default). Portable as version 1.
ALTER TABLE rooms ADD COLUMN image TEXT;
