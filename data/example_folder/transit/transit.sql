-- transit: part of data/example_folder, written for sql-rlvr (original, invented data).
-- line_stop declares foreign keys but no primary key.

CREATE TABLE line (
    line_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    mode TEXT,
    opened INTEGER
);
CREATE TABLE stop (
    stop_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    zone INTEGER
);
CREATE TABLE line_stop (
    line_id INTEGER,
    stop_id INTEGER,
    position INTEGER,
    FOREIGN KEY (line_id) REFERENCES line(line_id),
    FOREIGN KEY (stop_id) REFERENCES stop(stop_id)
);

INSERT INTO line VALUES (1, 'Red', 'tram', 1998);
INSERT INTO line VALUES (2, 'Blue', 'metro', 2005);
INSERT INTO line VALUES (3, 'Harbour', 'ferry', 1987);
INSERT INTO line VALUES (4, 'Green', 'tram', 2012);

INSERT INTO stop VALUES (1, 'Central Station', 1);
INSERT INTO stop VALUES (2, 'Market Square', 1);
INSERT INTO stop VALUES (3, 'University', 2);
INSERT INTO stop VALUES (4, 'Old Pier', 2);
INSERT INTO stop VALUES (5, 'Airport', 3);
INSERT INTO stop VALUES (6, 'Riverside', 2);
INSERT INTO stop VALUES (7, 'Zoo', 3);

INSERT INTO line_stop VALUES (1, 1, 1);
INSERT INTO line_stop VALUES (1, 2, 2);
INSERT INTO line_stop VALUES (1, 3, 3);
INSERT INTO line_stop VALUES (2, 1, 1);
INSERT INTO line_stop VALUES (2, 6, 2);
INSERT INTO line_stop VALUES (2, 5, 3);
INSERT INTO line_stop VALUES (3, 4, 1);
INSERT INTO line_stop VALUES (3, 6, 2);
INSERT INTO line_stop VALUES (4, 2, 1);
INSERT INTO line_stop VALUES (4, 7, 2);
