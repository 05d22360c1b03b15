SELECT Name FROM department WHERE Budget > 300000	college_courses
SELECT Name FROM department ORDER BY Budget DESC	college_courses
SELECT Name FROM student WHERE Age > (SELECT avg(Age) FROM student)	college_courses
SELECT T1.Name , count(*) FROM student AS T1 JOIN enrollment AS T2 ON T1.Student_ID = T2.Student_ID GROUP BY T1.Student_ID HAVING count(*) >= 2	college_courses
SELECT T3.Genre FROM customer AS T1 JOIN purchase AS T2 ON T1.Customer_ID = T2.Customer_ID JOIN book AS T3 ON T2.Book_ID = T3.Book_ID WHERE T1.City = "London"	bookshop
SELECT T1.Name , sum(T2.Quantity) FROM customer AS T1 JOIN purchase AS T2 ON T1.Customer_ID = T2.Customer_ID GROUP BY T1.Customer_ID	bookshop
SELECT Title FROM book WHERE Price > (SELECT avg(Price) FROM book)	bookshop
SELECT T1.Name FROM author AS T1 JOIN book AS T2 ON T1.Author_ID = T2.Author_ID WHERE T1.Country = "Japan" AND T2.Genre = "Mystery"	bookshop
SELECT Title FROM Song WHERE Duration_Sec > 240	music_festival
SELECT Concert_Date , Attendance FROM concert ORDER BY Attendance DESC	music_festival
SELECT DISTINCT T3.Name FROM concert AS T1 JOIN Artist AS T2 ON T1.Artist_ID = T2.Artist_ID JOIN venue AS T3 ON T1.Venue_ID = T3.Venue_ID WHERE T2.Country = "Mexico"	music_festival
SELECT T1.Name FROM Artist AS T1 JOIN Song AS T2 ON T1.Artist_ID = T2.Artist_ID EXCEPT SELECT T1.Name FROM Artist AS T1 JOIN concert AS T2 ON T1.Artist_ID = T2.Artist_ID	music_festival
SELECT Name FROM team WHERE City = "Northport"	soccer_league
SELECT T2.Name , sum(T1.Goals) FROM player AS T1 JOIN team AS T2 ON T1.Team_ID = T2.Team_ID GROUP BY T2.Name	soccer_league
SELECT T2.Name FROM game AS T1 JOIN team AS T2 ON T1.Home_Team_ID = T2.Team_ID WHERE T1.Game_Date = '2023-08-19'	soccer_league
SELECT T1.Name FROM customer AS T1 JOIN purchase AS T2 ON T1.Customer_ID = T2.Customer_ID JOIN book AS T3 ON T2.Book_ID = T3.Book_ID WHERE T3.Genre = "Fiction" INTERSECT SELECT T1.Name FROM customer AS T1 JOIN purchase AS T2 ON T1.Customer_ID = T2.Customer_ID JOIN book AS T3 ON T2.Book_ID = T3.Book_ID WHERE T3.Genre = "History"	bookshop
SELECT T2.Name , count(*) FROM student AS T1 JOIN department AS T2 ON T1.Dept_ID = T2.Dept_ID GROUP BY T1.Dept_ID ORDER BY count(*) DESC LIMIT 1	college_courses
