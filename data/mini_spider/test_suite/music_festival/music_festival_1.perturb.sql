-- Test-suite variant 1 of music_festival: durations and attendances shifted, one concert deleted.
UPDATE Song SET Duration_Sec = Duration_Sec + 30;
UPDATE concert SET Attendance = Attendance * 2 WHERE Concert_ID % 2 = 0;
DELETE FROM concert WHERE Concert_ID = (SELECT max(Concert_ID) FROM concert);
