-- Public releases (see docs/privacy.md): one row per release, keyed by its
-- date so that collectors sharing the database publish each release once.
-- body is the release JSON as published, sha256 its hash; rho is the
-- privacy budget it spent. Rows are inserted once and never updated.
CREATE TABLE releases (
    date       DATE PRIMARY KEY NOT NULL,
    body       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    mechanism  TEXT NOT NULL,
    parameters TEXT NOT NULL,
    rho        DOUBLE NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER releases_immutable BEFORE UPDATE ON releases
BEGIN
    SELECT RAISE(ABORT, 'releases are immutable');
END;
