-- Nothing to do on SQLite: the session cache and its change notifications (PostgreSQL migration
-- 0006) exist only for PostgreSQL, where several nodes share a database. This file keeps the two
-- backends' migration numbering equal.
SELECT 1;
