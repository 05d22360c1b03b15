-- music_festival: part of mini_spider, written for sql-rlvr (original, invented data).
-- Invented music/concert data. Quirks: mixed-case table names (Artist, Song), column with a space ("Release Year"), NULL attendance.
-- Build: python -c "import sqlite3; sqlite3.connect('music_festival.sqlite').executescript(open('music_festival.sql').read())"

CREATE TABLE Artist (
    Artist_ID INTEGER,
    Name TEXT,
    Country TEXT,
    Debut_Year INTEGER,
    PRIMARY KEY (Artist_ID)
);
CREATE TABLE Song (
    Song_ID INTEGER,
    Title TEXT,
    Artist_ID INTEGER,
    "Release Year" INTEGER,
    Duration_Sec INTEGER,
    Genre TEXT,
    PRIMARY KEY (Song_ID),
    FOREIGN KEY (Artist_ID) REFERENCES Artist(Artist_ID)
);
CREATE TABLE venue (
    Venue_ID INTEGER,
    Name TEXT,
    City TEXT,
    Capacity INTEGER,
    PRIMARY KEY (Venue_ID)
);
CREATE TABLE concert (
    Concert_ID INTEGER,
    Artist_ID INTEGER,
    Venue_ID INTEGER,
    Concert_Date DATE,
    Attendance INTEGER,
    PRIMARY KEY (Concert_ID),
    FOREIGN KEY (Artist_ID) REFERENCES Artist(Artist_ID),
    FOREIGN KEY (Venue_ID) REFERENCES venue(Venue_ID)
);

INSERT INTO Artist VALUES (1, 'The Velvet Foxes', 'UK', 2008);
INSERT INTO Artist VALUES (2, 'Luna Park', 'USA', 2012);
INSERT INTO Artist VALUES (3, 'Sora Blue', 'Japan', 2015);
INSERT INTO Artist VALUES (4, 'Marisol', 'Mexico', 2010);
INSERT INTO Artist VALUES (5, 'Iron Meadow', 'Canada', 2005);
INSERT INTO Artist VALUES (6, 'Kofi Mensah', 'Ghana', 2018);
INSERT INTO Artist VALUES (7, 'Nora Vale', 'UK', 2019);

INSERT INTO Song VALUES (1, 'Neon Rain', 1, 2010, 215, 'Rock');
INSERT INTO Song VALUES (2, 'Paper Moon', 1, 2014, 198, 'Rock');
INSERT INTO Song VALUES (3, 'Summer Static', 2, 2013, 240, 'Pop');
INSERT INTO Song VALUES (4, 'Midnight Ferry', 2, 2016, 185, 'Pop');
INSERT INTO Song VALUES (5, 'Cherry Signal', 3, 2017, 202, 'Pop');
INSERT INTO Song VALUES (6, 'Desert Bloom', 4, 2011, 260, 'Latin');
INSERT INTO Song VALUES (7, 'Corazon de Hierro', 4, 2018, 230, 'Latin');
INSERT INTO Song VALUES (8, 'Old Pines', 5, 2006, 305, 'Folk');
INSERT INTO Song VALUES (9, 'Stone River', 5, 2009, 290, 'Folk');
INSERT INTO Song VALUES (10, 'Accra Nights', 6, 2020, 222, 'Afrobeat');
INSERT INTO Song VALUES (11, 'Glass Houses', 2, 2021, 210, 'Pop');
INSERT INTO Song VALUES (12, 'Velvet Hours', 1, 2022, 250, 'Rock');

INSERT INTO venue VALUES (1, 'Riverside Arena', 'Manchester', 12000);
INSERT INTO venue VALUES (2, 'Blue Hall', 'Chicago', 3500);
INSERT INTO venue VALUES (3, 'Harbor Stage', 'Toronto', 8000);
INSERT INTO venue VALUES (4, 'The Lantern', 'Austin', 1200);
INSERT INTO venue VALUES (5, 'Plaza Verde', 'Guadalajara', 15000);

INSERT INTO concert VALUES (1, 1, 1, '2022-06-10', 11000);
INSERT INTO concert VALUES (2, 2, 2, '2022-07-02', 3400);
INSERT INTO concert VALUES (3, 3, 4, '2022-07-15', 1100);
INSERT INTO concert VALUES (4, 4, 5, '2022-08-20', 14500);
INSERT INTO concert VALUES (5, 5, 3, '2022-09-03', 7600);
INSERT INTO concert VALUES (6, 1, 3, '2023-03-12', 7900);
INSERT INTO concert VALUES (7, 2, 1, '2023-04-22', NULL);
INSERT INTO concert VALUES (8, 3, 4, '2023-05-05', 1150);
INSERT INTO concert VALUES (9, 4, 2, '2023-06-18', 3000);
INSERT INTO concert VALUES (10, 1, 5, '2023-08-01', 13800);
