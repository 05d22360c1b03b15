-- Test-suite variant 1 of soccer_league: goals shifted, the first game deleted.
UPDATE player SET Goals = Goals + 3 WHERE Player_ID % 2 = 0;
DELETE FROM game WHERE Game_ID = (SELECT min(Game_ID) FROM game);
