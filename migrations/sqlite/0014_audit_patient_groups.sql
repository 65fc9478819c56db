-- One audit_patient row per patient per appended batch and epoch: `seq` the last of the
-- batch's records of the patient in the epoch, `earlier` the steps back to the others
-- (`"3,40"`: seq - 3, seq - 43), NULL when there are none (every row before this
-- migration). A batch that read a chart ten times inserts one row, not ten
-- (`store::audit_patient`).
ALTER TABLE audit_patient ADD COLUMN earlier TEXT;
