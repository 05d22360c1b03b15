-- bike_rental: stations of a bike-sharing scheme and the trips between them (written for sql-rlvr's tests).
CREATE TABLE station (
  station_id INTEGER PRIMARY KEY,
  name TEXT,
  city TEXT,
  dock_count INTEGER
);
CREATE TABLE trip (
  trip_id INTEGER PRIMARY KEY,
  start_station INTEGER REFERENCES station(station_id),
  end_station INTEGER REFERENCES station(station_id),
  duration_sec INTEGER,
  start_date TEXT,
  subscription_type TEXT
);
INSERT INTO station VALUES (1, 'Main Street', 'Eastport', 15);
INSERT INTO station VALUES (2, 'City Hall', 'Eastport', 19);
INSERT INTO station VALUES (3, 'Ferry Terminal', 'Westbay', 23);
INSERT INTO station VALUES (4, 'University', 'Westbay', 11);
INSERT INTO station VALUES (5, 'Park Gate', 'Eastport', 15);
INSERT INTO trip VALUES (1, 1, 2, 420, '2023-08-01', 'Subscriber');
INSERT INTO trip VALUES (2, 2, 1, 510, '2023-08-01', 'Subscriber');
INSERT INTO trip VALUES (3, 3, 4, 1260, '2023-08-02', 'Customer');
INSERT INTO trip VALUES (4, 1, 5, 300, '2023-08-03', 'Subscriber');
INSERT INTO trip VALUES (5, 4, 3, 1500, '2023-08-03', 'Customer');
INSERT INTO trip VALUES (6, 5, 1, 280, '2023-08-04', 'Subscriber');
INSERT INTO trip VALUES (7, 2, 3, 3900, '2023-08-05', 'Customer');
INSERT INTO trip VALUES (8, 1, 2, 450, '2023-08-05', 'Subscriber');
