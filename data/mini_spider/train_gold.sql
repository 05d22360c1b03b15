SELECT count(*) FROM student	college_courses
SELECT Name FROM student WHERE Age > 22	college_courses
SELECT avg(Age) FROM student WHERE Home_City = "Springfield"	college_courses
SELECT Home_City , count(*) FROM student GROUP BY Home_City	college_courses
SELECT Name FROM student ORDER BY Age LIMIT 1	college_courses
SELECT T1.Name FROM student AS T1 JOIN department AS T2 ON T1.Dept_ID = T2.Dept_ID WHERE T2.Name = "Computer Science"	college_courses
SELECT Name FROM student WHERE Student_ID NOT IN (SELECT Student_ID FROM enrollment)	college_courses
SELECT T2.Name FROM student AS T1 JOIN department AS T2 ON T1.Dept_ID = T2.Dept_ID GROUP BY T1.Dept_ID HAVING count(*) > 2	college_courses
SELECT T3.Title FROM student AS T1 JOIN enrollment AS T2 ON T1.Student_ID = T2.Student_ID JOIN course AS T3 ON T2.Course_ID = T3.Course_ID WHERE T1.Name = "Alice Moreno"	college_courses
SELECT Home_City FROM student WHERE Age > 21 INTERSECT SELECT Home_City FROM student WHERE Age < 20	college_courses
SELECT DISTINCT Grade FROM enrollment WHERE Semester = 'Fall'	college_courses
SELECT count(*) FROM book	bookshop
SELECT Title FROM book WHERE Genre = "Mystery"	bookshop
SELECT max(Price) , min(Price) FROM book	bookshop
SELECT Name FROM author WHERE Country = 'UK'	bookshop
SELECT Genre , count(*) FROM book GROUP BY Genre	bookshop
SELECT Title FROM book ORDER BY Price DESC LIMIT 1	bookshop
SELECT T1.Title , T2.Name FROM book AS T1 JOIN author AS T2 ON T1.Author_ID = T2.Author_ID	bookshop
SELECT Title FROM book WHERE Book_ID NOT IN (SELECT Book_ID FROM purchase)	bookshop
SELECT Name FROM customer WHERE Is_Member = 1	bookshop
SELECT Genre FROM book GROUP BY Genre HAVING avg(Price) > 15	bookshop
SELECT DISTINCT Country FROM author	bookshop
SELECT count(*) FROM Artist	music_festival
SELECT Title FROM Song WHERE `Release Year` > 2015	music_festival
SELECT avg(Duration_Sec) FROM Song WHERE Genre = "Pop"	music_festival
SELECT Name , City FROM venue	music_festival
SELECT Genre , count(*) FROM Song GROUP BY Genre	music_festival
SELECT Name FROM venue ORDER BY Capacity DESC LIMIT 1	music_festival
SELECT T1.Title FROM Song AS T1 JOIN Artist AS T2 ON T1.Artist_ID = T2.Artist_ID WHERE T2.Name = "The Velvet Foxes"	music_festival
SELECT Name FROM Artist WHERE Artist_ID NOT IN (SELECT Artist_ID FROM Song)	music_festival
SELECT T2.Name FROM concert AS T1 JOIN Artist AS T2 ON T1.Artist_ID = T2.Artist_ID GROUP BY T1.Artist_ID HAVING count(*) >= 2	music_festival
SELECT Name FROM Artist WHERE Country = "USA" UNION SELECT Name FROM Artist WHERE Country = "Canada"	music_festival
SELECT Country FROM Artist WHERE Debut_Year < 2010 INTERSECT SELECT Country FROM Artist WHERE Debut_Year > 2015	music_festival
SELECT count(*) FROM team	soccer_league
SELECT Name FROM player WHERE Position = "Forward"	soccer_league
SELECT Name FROM team ORDER BY Founded LIMIT 1	soccer_league
SELECT Position , count(*) FROM player GROUP BY Position	soccer_league
SELECT Name FROM player ORDER BY Goals DESC LIMIT 1	soccer_league
SELECT T1.Name , T2.Name FROM player AS T1 JOIN team AS T2 ON T1.Team_ID = T2.Team_ID	soccer_league
SELECT T1.Ground_Name FROM Home_Ground AS T1 JOIN team AS T2 ON T1.Team_ID = T2.Team_ID WHERE T2.City = "Northport"	soccer_league
SELECT T2.Name FROM player AS T1 JOIN team AS T2 ON T1.Team_ID = T2.Team_ID GROUP BY T1.Team_ID HAVING count(*) > 2	soccer_league
SELECT Game_Date FROM game WHERE Home_Goals >= 2	soccer_league
SELECT Team_ID FROM player WHERE Position = "Forward" EXCEPT SELECT Team_ID FROM player WHERE Position = "Defender"	soccer_league
SELECT Name FROM team WHERE Founded < 1950	soccer_league
SELECT Name FROM student WHERE Age > (SELECT max(Age) FROM student WHERE Dept_ID = 1) OR Home_City = 'Springfield'	college_courses
SELECT Title FROM book WHERE Price > 10 EXCEPT SELECT T1.Title FROM book AS T1 JOIN purchase AS T2 ON T1.Book_ID = T2.Book_ID	bookshop
SELECT T1.Name , count(*) FROM Artist AS T1 JOIN Song AS T2 ON T1.Artist_ID = T2.Artist_ID GROUP BY T1.Artist_ID ORDER BY count(*) DESC LIMIT 1	music_festival
SELECT T1.Name FROM team AS T1 JOIN player AS T2 ON T1.Team_ID = T2.Team_ID WHERE T2.Goals > 5 INTERSECT SELECT T1.Name FROM team AS T1 JOIN game AS T2 ON T1.Team_ID = T2.Home_Team_ID	soccer_league
