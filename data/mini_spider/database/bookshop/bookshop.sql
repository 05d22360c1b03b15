-- bookshop: part of mini_spider, written for sql-rlvr (original, invented data).
-- Invented bookshop data. Quirks: customer.City of one row holds Latin-1 bytes (invalid UTF-8) via a BLOB->TEXT cast; BOOLEAN column with a NULL.
-- Build: python -c "import sqlite3; sqlite3.connect('bookshop.sqlite').executescript(open('bookshop.sql').read())"

CREATE TABLE author (
    Author_ID INTEGER,
    Name TEXT,
    Country TEXT,
    Birth_Year INTEGER,
    PRIMARY KEY (Author_ID)
);
CREATE TABLE book (
    Book_ID INTEGER,
    Title TEXT,
    Author_ID INTEGER,
    Genre TEXT,
    Price REAL,
    Pages INTEGER,
    Publish_Year INTEGER,
    PRIMARY KEY (Book_ID),
    FOREIGN KEY (Author_ID) REFERENCES author(Author_ID)
);
CREATE TABLE customer (
    Customer_ID INTEGER,
    Name TEXT,
    City TEXT,
    Is_Member BOOLEAN,
    PRIMARY KEY (Customer_ID)
);
CREATE TABLE purchase (
    Purchase_ID INTEGER,
    Customer_ID INTEGER,
    Book_ID INTEGER,
    Quantity INTEGER,
    Purchase_Date DATE,
    PRIMARY KEY (Purchase_ID),
    FOREIGN KEY (Customer_ID) REFERENCES customer(Customer_ID),
    FOREIGN KEY (Book_ID) REFERENCES book(Book_ID)
);

INSERT INTO author VALUES (1, 'Mara Quill', 'UK', 1965);
INSERT INTO author VALUES (2, 'Tomas Verde', 'Spain', 1978);
INSERT INTO author VALUES (3, 'Anika Holm', 'Sweden', 1982);
INSERT INTO author VALUES (4, 'Jun Arai', 'Japan', 1970);
INSERT INTO author VALUES (5, 'Rosa Delgado', 'Mexico', 1990);
INSERT INTO author VALUES (6, 'Peter Lowe', 'UK', 1958);

INSERT INTO book VALUES (1, 'The Glass Orchard', 1, 'Fiction', 14.99, 320, 2005);
INSERT INTO book VALUES (2, 'Salt and Silence', 1, 'Fiction', 12.5, 280, 2011);
INSERT INTO book VALUES (3, 'Harbor of Lanterns', 2, 'Mystery', 9.99, 240, 2015);
INSERT INTO book VALUES (4, 'Northern Ledger', 3, 'Mystery', 11.0, 410, 2018);
INSERT INTO book VALUES (5, 'Quiet Algorithms', 4, 'Science', 24.0, 360, 2019);
INSERT INTO book VALUES (6, 'Paper Cranes at Dawn', 4, 'Fiction', 13.25, 198, 2008);
INSERT INTO book VALUES (7, 'The Copper Map', 5, 'Fantasy', 16.75, 450, 2021);
INSERT INTO book VALUES (8, 'Rivers Remember', 6, 'History', 19.9, 512, 1999);
INSERT INTO book VALUES (9, 'Small Hours', 6, 'Fiction', 8.99, 150, 2003);
INSERT INTO book VALUES (10, 'Tides of the Mind', 3, 'Science', 21.5, 300, 2022);

INSERT INTO customer VALUES (1, 'Olivia Grant', 'London', 1);
INSERT INTO customer VALUES (2, 'Samuel Price', 'Madrid', 0);
INSERT INTO customer VALUES (3, 'Nadia Kovac', 'Berlin', 1);
INSERT INTO customer VALUES (4, 'Ethan Brooks', 'London', 0);
INSERT INTO customer VALUES (5, 'Lucia Ferreira', CAST(X'4D6F6E7472E9616C' AS TEXT), 1);
INSERT INTO customer VALUES (6, 'Marco Bellini', 'Rome', 1);
INSERT INTO customer VALUES (7, 'Yuki Mori', 'Tokyo', 0);
INSERT INTO customer VALUES (8, 'Hannah Stone', 'Berlin', NULL);

INSERT INTO purchase VALUES (1, 1, 1, 1, '2023-01-15');
INSERT INTO purchase VALUES (2, 1, 5, 2, '2023-02-03');
INSERT INTO purchase VALUES (3, 2, 3, 1, '2023-02-10');
INSERT INTO purchase VALUES (4, 3, 4, 1, '2023-03-01');
INSERT INTO purchase VALUES (5, 3, 1, 1, '2023-03-05');
INSERT INTO purchase VALUES (6, 4, 9, 3, '2023-03-18');
INSERT INTO purchase VALUES (7, 5, 7, 1, '2023-04-02');
INSERT INTO purchase VALUES (8, 6, 5, 1, '2023-04-20');
INSERT INTO purchase VALUES (9, 6, 10, 2, '2023-05-11');
INSERT INTO purchase VALUES (10, 7, 6, 1, '2023-05-30');
INSERT INTO purchase VALUES (11, 1, 8, 1, '2023-06-07');
INSERT INTO purchase VALUES (12, 4, 1, 2, '2023-06-21');
INSERT INTO purchase VALUES (13, 3, 7, 1, '2023-07-09');
INSERT INTO purchase VALUES (14, 2, 3, 1, '2023-07-15');
