-- Nothing to do on SQLite: PostgreSQL migration 0007 makes session updates heap-only (HOT), a
-- PostgreSQL storage feature. This file keeps the two backends' migration numbering equal.
SELECT 1;
