-- library_loans: part of mini_spider's test split, written for sql-rlvr (original, invented data).
-- Build: python -c "import sqlite3; sqlite3.connect('library_loans.sqlite').executescript(open('library_loans.sql').read())"

CREATE TABLE member (
    Member_ID INTEGER,
    Name TEXT,
    Joined_Year INTEGER,
    PRIMARY KEY (Member_ID)
);
CREATE TABLE item (
    Item_ID INTEGER,
    Title TEXT,
    Kind TEXT,
    Shelf TEXT,
    PRIMARY KEY (Item_ID)
);
CREATE TABLE loan (
    Loan_ID INTEGER,
    Member_ID INTEGER,
    Item_ID INTEGER,
    Days INTEGER,
    PRIMARY KEY (Loan_ID),
    FOREIGN KEY (Member_ID) REFERENCES member(Member_ID),
    FOREIGN KEY (Item_ID) REFERENCES item(Item_ID)
);
INSERT INTO member VALUES (1, 'Ines Hart', 2015);
INSERT INTO member VALUES (2, 'Oskar Lind', 2019);
INSERT INTO member VALUES (3, 'Priya Nair', 2021);
INSERT INTO member VALUES (4, 'Bruno Salt', 2019);
INSERT INTO item VALUES (1, 'Tides of Glass', 'book', 'A1');
INSERT INTO item VALUES (2, 'Night Orchard', 'book', 'A2');
INSERT INTO item VALUES (3, 'Low Frequencies', 'album', 'M1');
INSERT INTO item VALUES (4, 'The Quiet Map', 'film', 'F1');
INSERT INTO item VALUES (5, 'Paper Harbour', 'book', 'A1');
INSERT INTO loan VALUES (1, 1, 1, 14);
INSERT INTO loan VALUES (2, 1, 3, 7);
INSERT INTO loan VALUES (3, 2, 2, 21);
INSERT INTO loan VALUES (4, 3, 1, 10);
INSERT INTO loan VALUES (5, 3, 4, 3);
INSERT INTO loan VALUES (6, 3, 5, 14);
INSERT INTO loan VALUES (7, 4, 2, 28);
