-- A tenant moved from another server (`fhir-server tenant import`) keeps its audit trail
-- as it was sealed there, where its number (tid) was another: each record's seal covers
-- the tenant's number. chain is that number, the one its records are sealed with; NULL:
-- its own tid.
ALTER TABLE audit_sequence ADD COLUMN chain INTEGER;
