-- Test-suite variant 2 of soccer_league: players duplicated into new rows.
INSERT INTO player SELECT Player_ID + 1000, Name, Team_ID, Position, Age + 1, Goals FROM player;
