-- soccer_league: part of mini_spider, written for sql-rlvr (original, invented data).
-- Invented soccer league data. Quirks: a column name with a space is in music_festival, team.Founded declared INTEGER but one row holds text 'N/A', NULL goals.
-- Build: python -c "import sqlite3; sqlite3.connect('soccer_league.sqlite').executescript(open('soccer_league.sql').read())"

CREATE TABLE team (
    Team_ID INTEGER,
    Name TEXT,
    City TEXT,
    Founded INTEGER,
    PRIMARY KEY (Team_ID)
);
CREATE TABLE player (
    Player_ID INTEGER,
    Name TEXT,
    Team_ID INTEGER,
    Position TEXT,
    Age INTEGER,
    Goals INTEGER,
    PRIMARY KEY (Player_ID),
    FOREIGN KEY (Team_ID) REFERENCES team(Team_ID)
);
CREATE TABLE Home_Ground (
    Ground_ID INTEGER,
    Ground_Name TEXT,
    Team_ID INTEGER,
    Capacity INTEGER,
    Opened INTEGER,
    PRIMARY KEY (Ground_ID),
    FOREIGN KEY (Team_ID) REFERENCES team(Team_ID)
);
CREATE TABLE game (
    Game_ID INTEGER,
    Home_Team_ID INTEGER,
    Away_Team_ID INTEGER,
    Home_Goals INTEGER,
    Away_Goals INTEGER,
    Game_Date DATE,
    PRIMARY KEY (Game_ID),
    FOREIGN KEY (Home_Team_ID) REFERENCES team(Team_ID),
    FOREIGN KEY (Away_Team_ID) REFERENCES team(Team_ID)
);

INSERT INTO team VALUES (1, 'Northport Rovers', 'Northport', 1921);
INSERT INTO team VALUES (2, 'Eastbridge United', 'Eastbridge', 1905);
INSERT INTO team VALUES (3, 'Calder Athletic', 'Calder', 1950);
INSERT INTO team VALUES (4, 'Westmere City', 'Westmere', 'N/A');
INSERT INTO team VALUES (5, 'Southvale Wanderers', 'Southvale', 1988);
INSERT INTO team VALUES (6, 'Kingsford Albion', 'Kingsford', 1899);

INSERT INTO player VALUES (1, 'Marcus Hale', 1, 'Forward', 27, 14);
INSERT INTO player VALUES (2, 'Dario Conti', 1, 'Midfielder', 24, 6);
INSERT INTO player VALUES (3, 'Sam Achebe', 2, 'Forward', 22, 18);
INSERT INTO player VALUES (4, 'Tobias Lind', 2, 'Defender', 30, 1);
INSERT INTO player VALUES (5, 'Rui Carvalho', 3, 'Goalkeeper', 33, 0);
INSERT INTO player VALUES (6, 'Owen Price', 3, 'Forward', 25, 9);
INSERT INTO player VALUES (7, 'Felix Brandt', 4, 'Midfielder', 28, 5);
INSERT INTO player VALUES (8, 'Ali Demir', 4, 'Defender', 21, 2);
INSERT INTO player VALUES (9, 'Jack Moran', 5, 'Forward', 29, 11);
INSERT INTO player VALUES (10, 'Theo Nakamura', 5, 'Midfielder', 23, 4);
INSERT INTO player VALUES (11, 'Ivan Petrov', 6, 'Goalkeeper', 31, 0);
INSERT INTO player VALUES (12, 'Luis Ortega', 6, 'Forward', 26, NULL);
INSERT INTO player VALUES (13, 'Kwame Asante', 1, 'Defender', 20, 1);

INSERT INTO Home_Ground VALUES (1, 'Rover Park', 1, 18000, 1923);
INSERT INTO Home_Ground VALUES (2, 'Bridge Road', 2, 25000, 1907);
INSERT INTO Home_Ground VALUES (3, 'Calder Lane', 3, 9000, 1952);
INSERT INTO Home_Ground VALUES (4, 'Mere Stadium', 4, 15000, 1999);
INSERT INTO Home_Ground VALUES (5, 'Southvale Fields', 5, 6500, 1990);
INSERT INTO Home_Ground VALUES (6, 'Albion Grounds', 6, 22000, 1901);

INSERT INTO game VALUES (1, 1, 2, 2, 1, '2023-08-12');
INSERT INTO game VALUES (2, 3, 4, 0, 0, '2023-08-12');
INSERT INTO game VALUES (3, 5, 6, 1, 3, '2023-08-13');
INSERT INTO game VALUES (4, 2, 3, 2, 2, '2023-08-19');
INSERT INTO game VALUES (5, 4, 1, 1, 2, '2023-08-19');
INSERT INTO game VALUES (6, 6, 5, 0, 1, '2023-08-20');
INSERT INTO game VALUES (7, 1, 3, 3, 0, '2023-08-26');
INSERT INTO game VALUES (8, 2, 6, 1, 1, '2023-08-26');
INSERT INTO game VALUES (9, 4, 5, 2, 1, '2023-09-02');
INSERT INTO game VALUES (10, 3, 1, 1, 1, '2023-09-02');
