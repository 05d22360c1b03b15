-- new_college_courses: part of mini_spider_variants, written for sql-rlvr (original, invented data).
-- A modified college_courses, in the manner of Spider-DK's modified databases: departments gain the year they
-- were founded, students their gender and year of study, so that questions can need domain knowledge
-- ("female" is 'F', "teenage" is 13 to 19, "the 19th century" is 1801 to 1900). No course or enrollment table.
-- Build: python -c "import sqlite3; sqlite3.connect('new_college_courses.sqlite').executescript(open('new_college_courses.sql').read())"

CREATE TABLE department (
    Dept_ID INTEGER,
    Name TEXT,
    Building TEXT,
    Budget REAL,
    Founded_Year INTEGER,
    PRIMARY KEY (Dept_ID)
);
CREATE TABLE student (
    Student_ID INTEGER,
    Name TEXT,
    Age INTEGER,
    Gender TEXT,
    Study_Year INTEGER,
    Dept_ID INTEGER,
    PRIMARY KEY (Student_ID),
    FOREIGN KEY (Dept_ID) REFERENCES department(Dept_ID)
);

INSERT INTO department VALUES (1, 'Computer Science', 'Turing Hall', 500000.0, 1965);
INSERT INTO department VALUES (2, 'Mathematics', 'Euler Building', 320000.0, 1821);
INSERT INTO department VALUES (3, 'History', 'Herodotus Hall', 180000.0, 1790);
INSERT INTO department VALUES (4, 'Biology', 'Darwin Center', 410000.0, 1888);
INSERT INTO department VALUES (5, 'Philosophy', NULL, 90000.0, 1901);

INSERT INTO student VALUES (1, 'Alice Moreno', 20, 'F', 2, 1);
INSERT INTO student VALUES (2, 'Ben Okafor', 22, 'M', 4, 2);
INSERT INTO student VALUES (3, 'Chloe Nguyen', 19, 'F', 1, 1);
INSERT INTO student VALUES (4, 'Daniel Weiss', 24, 'M', 4, 3);
INSERT INTO student VALUES (5, 'Emma Rossi', 21, 'F', 3, 4);
INSERT INTO student VALUES (6, 'Farid Haddad', 23, 'M', 4, 1);
INSERT INTO student VALUES (7, 'Grace Liu', 20, 'F', 2, 2);
INSERT INTO student VALUES (8, 'Hugo Santos', 26, 'M', 4, 5);
INSERT INTO student VALUES (9, 'Ivy Clarke', 18, 'F', 1, 4);
INSERT INTO student VALUES (10, 'Jonas Berg', 22, 'M', 3, 1);
INSERT INTO student VALUES (11, 'Kira Tanaka', 17, 'F', 1, 3);
INSERT INTO student VALUES (12, 'Leo Martin', 19, 'M', 1, 2);
