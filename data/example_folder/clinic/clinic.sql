-- clinic: part of data/example_folder, written for sql-rlvr (original, invented data).
-- Keys are declared in the database itself (no tables.json): the prompt's schema is read from here.
-- visit.doctor_id says REFERENCES doctor without a column, which means doctor's primary key.

CREATE TABLE doctor (
    doctor_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    specialty TEXT,
    hired_year INTEGER
);
CREATE TABLE patient (
    patient_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    birth_year INTEGER,
    city TEXT
);
CREATE TABLE visit (
    visit_id INTEGER PRIMARY KEY,
    patient_id INTEGER REFERENCES patient(patient_id),
    doctor_id INTEGER REFERENCES doctor,
    visit_date DATE,
    fee REAL,
    diagnosis TEXT
);

INSERT INTO doctor VALUES (1, 'Amara Osei', 'cardiology', 2011);
INSERT INTO doctor VALUES (2, 'Lukas Brandt', 'dermatology', 2016);
INSERT INTO doctor VALUES (3, 'Mei Tanaka', 'pediatrics', 2009);
INSERT INTO doctor VALUES (4, 'Rosa Delgado', 'cardiology', 2019);
INSERT INTO doctor VALUES (5, 'Ivan Petrov', 'neurology', 2014);

INSERT INTO patient VALUES (1, 'Nora Quinn', 1985, 'Lyon');
INSERT INTO patient VALUES (2, 'Omar Haddad', 1972, 'Porto');
INSERT INTO patient VALUES (3, 'Lena Fischer', 2012, 'Lyon');
INSERT INTO patient VALUES (4, 'Tomas Novak', 1990, 'Brno');
INSERT INTO patient VALUES (5, 'Aiko Sato', 2015, 'Porto');
INSERT INTO patient VALUES (6, 'Felix Moreau', 1958, 'Lyon');
INSERT INTO patient VALUES (7, 'Greta Holm', 1999, NULL);
INSERT INTO patient VALUES (8, 'Pablo Ruiz', 1966, 'Brno');

INSERT INTO visit VALUES (1, 1, 1, '2024-01-10', 120.0, 'arrhythmia');
INSERT INTO visit VALUES (2, 2, 2, '2024-01-12', 80.0, 'eczema');
INSERT INTO visit VALUES (3, 3, 3, '2024-02-03', 60.0, 'flu');
INSERT INTO visit VALUES (4, 1, 4, '2024-02-20', 150.0, 'hypertension');
INSERT INTO visit VALUES (5, 4, 5, '2024-03-01', 200.0, 'migraine');
INSERT INTO visit VALUES (6, 5, 3, '2024-03-15', 60.0, 'flu');
INSERT INTO visit VALUES (7, 6, 1, '2024-04-02', 120.0, 'hypertension');
INSERT INTO visit VALUES (8, 2, 5, '2024-04-18', 200.0, 'migraine');
INSERT INTO visit VALUES (9, 8, 4, '2024-05-05', 150.0, 'arrhythmia');
INSERT INTO visit VALUES (10, 6, 4, '2024-05-21', 150.0, 'hypertension');
INSERT INTO visit VALUES (11, 3, 2, '2024-06-09', 80.0, 'acne');
INSERT INTO visit VALUES (12, 4, 1, '2024-06-30', 120.0, 'checkup');
