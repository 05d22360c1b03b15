-- weather_station: part of mini_spider's test split, written for sql-rlvr (original, invented data).
-- Build: python -c "import sqlite3; sqlite3.connect('weather_station.sqlite').executescript(open('weather_station.sql').read())"

CREATE TABLE station (
    Station_ID INTEGER,
    Name TEXT,
    Elevation INTEGER,
    PRIMARY KEY (Station_ID)
);
CREATE TABLE reading (
    Reading_ID INTEGER,
    Station_ID INTEGER,
    Reading_Date DATE,
    Temperature REAL,
    Rainfall REAL,
    PRIMARY KEY (Reading_ID),
    FOREIGN KEY (Station_ID) REFERENCES station(Station_ID)
);
INSERT INTO station VALUES (1, 'Harbour Point', 4);
INSERT INTO station VALUES (2, 'Ridge Top', 1210);
INSERT INTO station VALUES (3, 'Valley Farm', 230);
INSERT INTO reading VALUES (1, 1, '2024-03-01', 11.5, 2.0);
INSERT INTO reading VALUES (2, 1, '2024-03-02', 12.0, 0.0);
INSERT INTO reading VALUES (3, 2, '2024-03-01', -2.5, 8.5);
INSERT INTO reading VALUES (4, 2, '2024-03-02', -1.0, 4.0);
INSERT INTO reading VALUES (5, 3, '2024-03-01', 7.0, 1.5);
INSERT INTO reading VALUES (6, 3, '2024-03-02', 9.5, 0.0);
