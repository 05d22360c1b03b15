-- Test-suite variant 2 of college_courses: every department duplicated (new ids), students duplicated (new ids).
INSERT INTO department SELECT Dept_ID + 100, Name, Building, Budget - 50000 FROM department;
INSERT INTO student SELECT Student_ID + 1000, Name, Age, Dept_ID, Home_City FROM student WHERE Student_ID % 3 = 0;
