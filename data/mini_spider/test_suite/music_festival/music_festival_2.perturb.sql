-- Test-suite variant 2 of music_festival: concerts duplicated on other dates.
INSERT INTO concert SELECT Concert_ID + 1000, Artist_ID, Venue_ID, Concert_Date, Attendance + 7 FROM concert;
