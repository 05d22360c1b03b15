-- Test-suite variant 2 of bookshop: purchases duplicated, quantities shifted.
INSERT INTO purchase SELECT Purchase_ID + 1000, Customer_ID, Book_ID, Quantity + 1, Purchase_Date FROM purchase;
