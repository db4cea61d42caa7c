-- The latest update of each install, for the public releases' upgrade
-- paths and update tables (see docs/privacy.md): one row per install can
-- contribute one update however many update reports it sent, which the
-- report counts of daily_events cannot bound. upgraded_from and
-- upgraded_to are the versions of that update ('' when the install never
-- updated), upgraded_on its UTC day (NULL then). Updates before this
-- migration are not known per install: every install starts as never
-- updated.
ALTER TABLE instances ADD COLUMN upgraded_from TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN upgraded_to TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN upgraded_on DATE;
