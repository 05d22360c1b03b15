-- food_inspection: restaurants of a city, their health inspections and violations (written for sql-rlvr's tests).
-- One owner name is stored as Latin-1 bytes, not UTF-8 (business 3): BIRD's evaluator reads text as strict UTF-8.
CREATE TABLE businesses (
  business_id INTEGER PRIMARY KEY,
  name TEXT,
  city TEXT,
  owner_name TEXT,
  tax_code TEXT
);
CREATE TABLE inspections (
  business_id INTEGER REFERENCES businesses(business_id),
  score INTEGER,
  date TEXT,
  type TEXT
);
CREATE TABLE violations (
  business_id INTEGER REFERENCES businesses(business_id),
  date TEXT,
  risk_category TEXT,
  description TEXT
);
INSERT INTO businesses VALUES (1, 'Harbour Noodles', 'Eastport', 'Lin Chen', 'H24');
INSERT INTO businesses VALUES (2, 'Green Fork', 'Eastport', 'Pia Holm', 'H25');
INSERT INTO businesses VALUES (3, 'Casa Sol', 'Westbay', CAST(X'4A6F7365204D756EF16F7A' AS TEXT), 'H24');
INSERT INTO businesses VALUES (4, 'Bagel Corner', 'Westbay', 'Sam Ortiz', 'H07');
INSERT INTO businesses VALUES (5, 'Night Owl Diner', 'Eastport', 'Ruth Abe', 'H24');
INSERT INTO inspections VALUES (1, 92, '2023-03-14', 'Routine');
INSERT INTO inspections VALUES (1, 88, '2024-02-20', 'Routine');
INSERT INTO inspections VALUES (2, 100, '2023-05-02', 'Routine');
INSERT INTO inspections VALUES (3, 71, '2023-06-11', 'Routine');
INSERT INTO inspections VALUES (3, NULL, '2023-07-01', 'Complaint');
INSERT INTO inspections VALUES (4, 85, '2023-09-19', 'Routine');
INSERT INTO inspections VALUES (5, 64, '2024-01-08', 'Routine');
INSERT INTO inspections VALUES (5, 90, '2024-04-15', 'Reinspection');
INSERT INTO violations VALUES (1, '2023-03-14', 'Low Risk', 'Unclean floors');
INSERT INTO violations VALUES (3, '2023-06-11', 'High Risk', 'Food held at unsafe temperature');
INSERT INTO violations VALUES (3, '2023-06-11', 'Moderate Risk', 'Inadequate hand washing');
INSERT INTO violations VALUES (4, '2023-09-19', 'Low Risk', 'Unclean floors');
INSERT INTO violations VALUES (5, '2024-01-08', 'High Risk', 'Vermin present');
INSERT INTO violations VALUES (5, '2024-01-08', 'High Risk', 'Food held at unsafe temperature');
