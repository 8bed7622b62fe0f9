-- Roles (SPEC 11). Roles are cluster-wide, and several databases of one cluster may run
-- this migration at the same moment (the test suite does): a concurrent CREATE ROLE
-- fails with duplicate_object, or with unique_violation when it loses the race on
-- pg_authid's index; both mean "already there".
--
-- tape_app:    what the service runs as (`SET ROLE tape_app` on each pooled connection):
--              reads and appends events, moves stream heads; no UPDATE/DELETE on events.
-- tape_reader: read-only (audit, dashboards).

DO $$
BEGIN
    CREATE ROLE tape_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

DO $$
BEGIN
    CREATE ROLE tape_reader NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO tape_app, tape_reader;
GRANT SELECT, INSERT ON events TO tape_app;
GRANT SELECT, INSERT, UPDATE ON streams TO tape_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO tape_app;
GRANT SELECT ON events, streams TO tape_reader;

-- Tables created later by the migrating role are readable by tape_reader.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO tape_reader;
