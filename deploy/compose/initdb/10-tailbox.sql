-- Prepares the demo database for tailbox. The postgres image runs the files of
-- /docker-entrypoint-initdb.d once, when it initialises an empty data directory, with
--   psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc --dbname "$POSTGRES_DB"
-- against a temporary server that already has the container's `-c wal_level=logical`.
--
-- It includes the repository's sql/ scripts (mounted read-only at /tailbox/sql) rather than
-- mounting sql/ itself as the init directory: that would also run 99_teardown.sql, which
-- drops the slot and publication that 02 and 03 just made.
--
-- Environment (of the postgres container):
--   TAILBOX_DB_PASSWORD  password of the least-privilege role `tailbox` (default tailbox-demo)
--   TAILBOX_SQL_DIR      where the sql/ scripts are (default /tailbox/sql)
\set ON_ERROR_STOP 1
\getenv sql_dir TAILBOX_SQL_DIR
\if :{?sql_dir} \else \set sql_dir /tailbox/sql \endif
\getenv password TAILBOX_DB_PASSWORD
\if :{?password} \else \set password tailbox-demo \endif
\i :sql_dir/01_outbox_table.sql
\i :sql_dir/02_publication.sql
\i :sql_dir/03_slot.sql
\i :sql_dir/04_role.sql
