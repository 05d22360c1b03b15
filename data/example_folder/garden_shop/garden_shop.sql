-- garden_shop: part of data/example_folder, written for sql-rlvr (original, invented data).
-- supply has a two-column primary key; keys are declared in the database (no tables.json).

CREATE TABLE supplier (
    supplier_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT
);
CREATE TABLE plant (
    plant_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT,
    price REAL,
    stock INTEGER
);
CREATE TABLE supply (
    plant_id INTEGER,
    supplier_id INTEGER,
    quantity INTEGER,
    PRIMARY KEY (plant_id, supplier_id),
    FOREIGN KEY (plant_id) REFERENCES plant(plant_id),
    FOREIGN KEY (supplier_id) REFERENCES supplier(supplier_id)
);

INSERT INTO supplier VALUES (1, 'Green Valley Nursery', 'Kenya');
INSERT INTO supplier VALUES (2, 'Blattwerk', 'Germany');
INSERT INTO supplier VALUES (3, 'Fernhill Growers', 'Ireland');
INSERT INTO supplier VALUES (4, 'Sol y Flor', 'Spain');

INSERT INTO plant VALUES (1, 'Boston fern', 'fern', 12.5, 30);
INSERT INTO plant VALUES (2, 'Snake plant', 'succulent', 18.0, 12);
INSERT INTO plant VALUES (3, 'Lavender', 'herb', 6.5, 45);
INSERT INTO plant VALUES (4, 'Maidenhair fern', 'fern', 15.0, 0);
INSERT INTO plant VALUES (5, 'Aloe vera', 'succulent', 9.0, 20);
INSERT INTO plant VALUES (6, 'Rosemary', 'herb', 5.5, 60);
INSERT INTO plant VALUES (7, 'Olive tree', 'tree', 85.0, 4);
INSERT INTO plant VALUES (8, 'Japanese maple', 'tree', 120.0, 2);

INSERT INTO supply VALUES (1, 3, 40);
INSERT INTO supply VALUES (4, 3, 10);
INSERT INTO supply VALUES (2, 1, 25);
INSERT INTO supply VALUES (5, 1, 30);
INSERT INTO supply VALUES (3, 4, 50);
INSERT INTO supply VALUES (6, 4, 70);
INSERT INTO supply VALUES (7, 4, 6);
INSERT INTO supply VALUES (8, 2, 3);
INSERT INTO supply VALUES (3, 2, 20);
