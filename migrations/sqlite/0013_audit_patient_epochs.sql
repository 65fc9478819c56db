-- Which records concern which patient, keyed by epoch first (8,192 records: seq >> 13).
-- Keyed (tid, patient, seq), a batch of records about a thousand patients dirtied a
-- thousand leaves all over the table, each written whole to the WAL: more bytes than
-- the records. With the epoch first, a batch writes at the table's right edge. A search
-- by patient seeks each epoch (`store::audit::audit_search`).
CREATE TABLE audit_patient_v13 (
    tid INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    patient TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tid, epoch, patient, seq)
) WITHOUT ROWID;
INSERT INTO audit_patient_v13 SELECT tid, seq >> 13, patient, seq FROM audit_patient;
DROP TABLE audit_patient;
ALTER TABLE audit_patient_v13 RENAME TO audit_patient;
