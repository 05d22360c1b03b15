-- city_library: branches of a city library, its books and loans (written for sql-rlvr's tests).
CREATE TABLE branch (
  branch_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  district TEXT,
  opened_year INTEGER
);
CREATE TABLE book (
  book_id INTEGER PRIMARY KEY,
  title TEXT NOT NULL,
  author TEXT,
  genre TEXT,
  pub_year INTEGER,
  "List Price" REAL
);
CREATE TABLE loan (
  loan_id INTEGER PRIMARY KEY,
  book_id INTEGER REFERENCES book(book_id),
  branch_id INTEGER REFERENCES branch(branch_id),
  loan_date TEXT,
  returned INTEGER
);
INSERT INTO branch VALUES (1, 'Central', 'Old Town', 1962);
INSERT INTO branch VALUES (2, 'Riverside', 'Harbour', 1988);
INSERT INTO branch VALUES (3, 'Hilltop', 'North', 2004);
INSERT INTO branch VALUES (4, 'Market Square', 'Old Town', 2015);
INSERT INTO book VALUES (1, 'The Quiet Harbour', 'Mara Linde', 'novel', 2011, 18.5);
INSERT INTO book VALUES (2, 'Counting Stars', 'Ivo Brant', 'science', 2019, 24.0);
INSERT INTO book VALUES (3, 'Bread and Salt', 'Mara Linde', 'novel', 2016, 15.0);
INSERT INTO book VALUES (4, 'A Short History of Bridges', 'Tomas Reel', 'history', 2008, 32.0);
INSERT INTO book VALUES (5, 'Garden Birds', 'Ana Vos', 'nature', 2021, 12.5);
INSERT INTO book VALUES (6, 'The Last Ferry', 'Ivo Brant', 'novel', 2014, NULL);
INSERT INTO book VALUES (7, 'Rivers of Iron', 'Tomas Reel', 'history', 2019, 28.0);
INSERT INTO loan VALUES (1, 1, 1, '2023-01-04', 1);
INSERT INTO loan VALUES (2, 2, 1, '2023-01-09', 1);
INSERT INTO loan VALUES (3, 3, 2, '2023-02-11', 0);
INSERT INTO loan VALUES (4, 1, 2, '2023-02-15', 1);
INSERT INTO loan VALUES (5, 5, 3, '2023-03-02', 1);
INSERT INTO loan VALUES (6, 7, 1, '2023-03-20', 0);
INSERT INTO loan VALUES (7, 2, 3, '2024-01-05', 1);
INSERT INTO loan VALUES (8, 4, 4, '2024-02-14', 0);
INSERT INTO loan VALUES (9, 1, 1, '2024-03-03', 1);
INSERT INTO loan VALUES (10, 6, 2, '2024-03-30', 1);
