-- Test-suite variant 1 of bookshop: prices shifted, the cheapest book and one purchase deleted.
UPDATE book SET Price = Price * 1.5 WHERE Book_ID % 2 = 1;
DELETE FROM book WHERE Book_ID = (SELECT Book_ID FROM book ORDER BY Price, Book_ID LIMIT 1);
DELETE FROM purchase WHERE Purchase_ID = (SELECT min(Purchase_ID) FROM purchase);
