CREATE TABLE seen_reports_by_hash (
    report_hash BLOB PRIMARY KEY NOT NULL,
    day         DATE NOT NULL
) WITHOUT ROWID;
INSERT INTO seen_reports_by_hash (report_hash, day)
    SELECT report_hash, day FROM seen_reports;
DROP TABLE seen_reports;
ALTER TABLE seen_reports_by_hash RENAME TO seen_reports;
CREATE INDEX seen_reports_day ON seen_reports (day);
