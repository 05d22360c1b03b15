SELECT COUNT(book_id) FROM book	city_library
SELECT COUNT(branch_id) FROM branch	city_library
SELECT title FROM book WHERE author = 'Mara Linde'	city_library
SELECT name FROM branch ORDER BY opened_year ASC LIMIT 1	city_library
SELECT COUNT(loan_id) FROM loan WHERE returned = 0	city_library
SELECT AVG("List Price") FROM book WHERE genre = 'novel'	city_library
SELECT name FROM branch WHERE district = 'Old Town'	city_library
SELECT COUNT(loan_id) FROM loan WHERE SUBSTR(loan_date, 1, 4) = '2024'	city_library
SELECT title FROM book WHERE pub_year > 2015	city_library
SELECT title FROM book ORDER BY "List Price" DESC LIMIT 1	city_library
SELECT genre, COUNT(book_id) FROM book GROUP BY genre	city_library
SELECT DISTINCT T1.title FROM book AS T1 INNER JOIN loan AS T2 ON T1.book_id = T2.book_id INNER JOIN branch AS T3 ON T2.branch_id = T3.branch_id WHERE T3.name = 'Central'	city_library
SELECT COUNT(T2.loan_id) FROM book AS T1 INNER JOIN loan AS T2 ON T1.book_id = T2.book_id WHERE T1.title = 'The Quiet Harbour'	city_library
SELECT CAST(SUM(IIF(returned = 1, 1, 0)) AS REAL) * 100 / COUNT(loan_id) FROM loan	city_library
SELECT T2.name FROM loan AS T1 INNER JOIN branch AS T2 ON T1.branch_id = T2.branch_id GROUP BY T2.branch_id ORDER BY COUNT(T1.loan_id) DESC LIMIT 1	city_library
SELECT title FROM book WHERE "List Price" IS NULL	city_library
SELECT DISTINCT author FROM book WHERE genre = 'history'	city_library
SELECT opened_year FROM branch WHERE name = 'Hilltop'	city_library
SELECT COUNT(book_id) FROM book WHERE author = 'Ivo Brant'	city_library
SELECT SUM("List Price") FROM book	city_library
SELECT COUNT(station_id) FROM station	bike_rental
SELECT COUNT(trip_id) FROM trip	bike_rental
SELECT name FROM station WHERE city = 'Eastport'	bike_rental
SELECT MAX(duration_sec) FROM trip	bike_rental
SELECT COUNT(trip_id) FROM trip WHERE subscription_type = 'Customer'	bike_rental
SELECT AVG(CAST(duration_sec AS REAL) / 60) FROM trip	bike_rental
SELECT name FROM station ORDER BY dock_count DESC LIMIT 1	bike_rental
SELECT SUM(dock_count) FROM station WHERE city = 'Westbay'	bike_rental
SELECT COUNT(trip_id) FROM trip WHERE start_date = '2023-08-05'	bike_rental
SELECT DISTINCT T1.name FROM station AS T1 INNER JOIN trip AS T2 ON T1.station_id = T2.start_station WHERE T2.duration_sec > 3600	bike_rental
SELECT COUNT(T2.trip_id) FROM station AS T1 INNER JOIN trip AS T2 ON T1.station_id = T2.start_station WHERE T1.name = 'Main Street'	bike_rental
SELECT city, COUNT(station_id) FROM station GROUP BY city	bike_rental
SELECT CAST(SUM(IIF(subscription_type = 'Subscriber', 1, 0)) AS REAL) / COUNT(trip_id) FROM trip	bike_rental
SELECT DISTINCT T1.city FROM station AS T1 INNER JOIN trip AS T2 ON T1.station_id = T2.end_station WHERE T2.end_station = 3	bike_rental
SELECT MIN(duration_sec) FROM trip WHERE subscription_type = 'Subscriber'	bike_rental
SELECT T1.trip_id FROM trip AS T1 INNER JOIN station AS T2 ON T1.start_station = T2.station_id INNER JOIN station AS T3 ON T1.end_station = T3.station_id WHERE T2.city = 'Eastport' AND T3.city = 'Eastport'	bike_rental
