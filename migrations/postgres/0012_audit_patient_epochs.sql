-- Which records concern which patient, keyed by epoch first (8,192 records: seq >> 13).
-- Keyed (tid, patient, seq), a batch of records about a thousand patients dirtied a
-- thousand index leaves all over it, each written whole to the WAL after a checkpoint.
-- With the epoch first, a batch writes at the index's right edge. A search by patient
-- seeks each epoch (`store::audit::audit_search`).
ALTER TABLE audit_patient ADD COLUMN epoch BIGINT;
UPDATE audit_patient SET epoch = seq >> 13;
ALTER TABLE audit_patient ALTER COLUMN epoch SET NOT NULL;
ALTER TABLE audit_patient DROP CONSTRAINT audit_patient_pkey;
ALTER TABLE audit_patient ADD PRIMARY KEY (tid, epoch, patient, seq);
