-- college_courses: part of mini_spider, written for sql-rlvr (original, invented data).
-- Invented college/course-enrollment data. Quirks: NULL grades, NULL building, composite primary key.
-- Build: python -c "import sqlite3; sqlite3.connect('college_courses.sqlite').executescript(open('college_courses.sql').read())"

CREATE TABLE department (
    Dept_ID INTEGER,
    Name TEXT,
    Building TEXT,
    Budget REAL,
    PRIMARY KEY (Dept_ID)
);
CREATE TABLE student (
    Student_ID INTEGER,
    Name TEXT,
    Age INTEGER,
    Dept_ID INTEGER,
    Home_City TEXT,
    PRIMARY KEY (Student_ID),
    FOREIGN KEY (Dept_ID) REFERENCES department(Dept_ID)
);
CREATE TABLE course (
    Course_ID INTEGER,
    Title TEXT,
    Credits INTEGER,
    Dept_ID INTEGER,
    PRIMARY KEY (Course_ID),
    FOREIGN KEY (Dept_ID) REFERENCES department(Dept_ID)
);
CREATE TABLE enrollment (
    Student_ID INTEGER,
    Course_ID INTEGER,
    Grade TEXT,
    Semester TEXT,
    PRIMARY KEY (Student_ID, Course_ID),
    FOREIGN KEY (Student_ID) REFERENCES student(Student_ID),
    FOREIGN KEY (Course_ID) REFERENCES course(Course_ID)
);

INSERT INTO department VALUES (1, 'Computer Science', 'Turing Hall', 500000.0);
INSERT INTO department VALUES (2, 'Mathematics', 'Euler Building', 320000.0);
INSERT INTO department VALUES (3, 'History', 'Herodotus Hall', 180000.0);
INSERT INTO department VALUES (4, 'Biology', 'Darwin Center', 410000.0);
INSERT INTO department VALUES (5, 'Philosophy', NULL, 90000.0);

INSERT INTO student VALUES (1, 'Alice Moreno', 20, 1, 'Springfield');
INSERT INTO student VALUES (2, 'Ben Okafor', 22, 2, 'Riverton');
INSERT INTO student VALUES (3, 'Chloe Nguyen', 19, 1, 'Springfield');
INSERT INTO student VALUES (4, 'Daniel Weiss', 24, 3, 'Lakeside');
INSERT INTO student VALUES (5, 'Emma Rossi', 21, 4, 'Riverton');
INSERT INTO student VALUES (6, 'Farid Haddad', 23, 1, 'Hillcrest');
INSERT INTO student VALUES (7, 'Grace Liu', 20, 2, 'Springfield');
INSERT INTO student VALUES (8, 'Hugo Santos', 26, 5, 'Lakeside');
INSERT INTO student VALUES (9, 'Ivy Clarke', 18, 4, 'Hillcrest');
INSERT INTO student VALUES (10, 'Jonas Berg', 22, 1, 'Riverton');
INSERT INTO student VALUES (11, 'Kira Tanaka', 21, 3, 'Springfield');
INSERT INTO student VALUES (12, 'Leo Martin', 19, 2, 'Lakeside');

INSERT INTO course VALUES (101, 'Intro to Programming', 4, 1);
INSERT INTO course VALUES (102, 'Data Structures', 4, 1);
INSERT INTO course VALUES (103, 'Databases', 3, 1);
INSERT INTO course VALUES (201, 'Calculus I', 4, 2);
INSERT INTO course VALUES (202, 'Linear Algebra', 3, 2);
INSERT INTO course VALUES (301, 'World History', 3, 3);
INSERT INTO course VALUES (302, 'Medieval Europe', 3, 3);
INSERT INTO course VALUES (401, 'Cell Biology', 4, 4);
INSERT INTO course VALUES (402, 'Genetics', 3, 4);
INSERT INTO course VALUES (501, 'Ethics', 2, 5);

INSERT INTO enrollment VALUES (1, 101, 'A', 'Fall');
INSERT INTO enrollment VALUES (1, 102, 'A', 'Spring');
INSERT INTO enrollment VALUES (1, 201, 'B', 'Fall');
INSERT INTO enrollment VALUES (2, 201, 'A', 'Fall');
INSERT INTO enrollment VALUES (2, 202, 'B', 'Spring');
INSERT INTO enrollment VALUES (3, 101, 'B', 'Fall');
INSERT INTO enrollment VALUES (3, 103, NULL, 'Spring');
INSERT INTO enrollment VALUES (4, 301, 'A', 'Fall');
INSERT INTO enrollment VALUES (4, 302, 'B', 'Spring');
INSERT INTO enrollment VALUES (5, 401, 'A', 'Fall');
INSERT INTO enrollment VALUES (5, 402, 'C', 'Spring');
INSERT INTO enrollment VALUES (6, 102, 'B', 'Fall');
INSERT INTO enrollment VALUES (6, 103, 'A', 'Spring');
INSERT INTO enrollment VALUES (7, 201, 'C', 'Fall');
INSERT INTO enrollment VALUES (7, 101, 'B', 'Spring');
INSERT INTO enrollment VALUES (9, 401, 'B', 'Fall');
INSERT INTO enrollment VALUES (10, 103, NULL, 'Spring');
INSERT INTO enrollment VALUES (10, 202, 'A', 'Fall');
INSERT INTO enrollment VALUES (11, 301, 'B', 'Fall');
INSERT INTO enrollment VALUES (12, 202, 'B', 'Spring');
