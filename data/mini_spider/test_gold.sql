SELECT Name FROM member WHERE Joined_Year = 2019	library_loans
SELECT count(*) FROM item WHERE Kind = 'book'	library_loans
SELECT T1.Name , sum(T2.Days) FROM member AS T1 JOIN loan AS T2 ON T1.Member_ID = T2.Member_ID GROUP BY T1.Member_ID	library_loans
SELECT T2.Title FROM loan AS T1 JOIN item AS T2 ON T1.Item_ID = T2.Item_ID ORDER BY T1.Days DESC LIMIT 1	library_loans
SELECT Name FROM station ORDER BY Elevation DESC	weather_station
SELECT avg(Temperature) FROM reading	weather_station
SELECT T1.Name FROM station AS T1 JOIN reading AS T2 ON T1.Station_ID = T2.Station_ID WHERE T2.Rainfall > 3	weather_station
SELECT Name FROM station WHERE Station_ID NOT IN (SELECT Station_ID FROM reading WHERE Temperature < 0)	weather_station
