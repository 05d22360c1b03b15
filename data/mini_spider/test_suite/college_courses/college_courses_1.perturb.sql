-- Test-suite variant 1 of college_courses: numbers shifted, the oldest student deleted.
UPDATE department SET Budget = Budget + 90000;
UPDATE student SET Age = Age + 1 WHERE Student_ID % 2 = 0;
DELETE FROM student WHERE Student_ID = (SELECT Student_ID FROM student ORDER BY Age DESC, Student_ID LIMIT 1);
