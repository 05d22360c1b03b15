SELECT COUNT(business_id) FROM businesses	food_inspection
SELECT COUNT(*) FROM violations WHERE risk_category = 'High Risk'	food_inspection
SELECT AVG(score) FROM inspections WHERE type = 'Routine'	food_inspection
SELECT DISTINCT T1.name FROM businesses AS T1 INNER JOIN violations AS T2 ON T1.business_id = T2.business_id WHERE T2.risk_category = 'High Risk'	food_inspection
SELECT CAST(SUM(IIF(tax_code = 'H24', 1, 0)) AS REAL) * 100 / COUNT(business_id) FROM businesses WHERE city = 'Eastport'	food_inspection
SELECT COUNT(DISTINCT T1.business_id) FROM inspections AS T1 INNER JOIN violations AS T2 ON T1.business_id = T2.business_id AND T1.date = T2.date WHERE T1.score < 80	food_inspection
