DROP TRIGGER releases_immutable;
DROP TABLE releases;
