-- Every node may keep a process-local cache of the bearer path's (session, user) answer. It stays
-- correct across nodes because every change that could make a cached answer too lenient is
-- announced on the channel fraise_auth_cache, which each node LISTENs to (see the store's
-- postgres/cache.rs). Payloads: 's' || session id, 'u' || user id, '*' || schema (forget that
-- schema's sessions).
--
-- Triggers rather than application code, so a change made by hand (the troubleshooting guide's
-- SQL, an operator's UPDATE) reaches the caches too.
--
-- A refresh rotation (counter, rotated_at, a later last_active and expires_at) and a touch of
-- last_active announce nothing: a cached copy that lags on those can only be too strict, and the
-- service re-reads the database before it refuses anything on a cached answer. Not announcing
-- them keeps NOTIFY's commit-time lock (global, serialising) off the refresh path.

-- One function for every trigger below. Row triggers announce TG_ARGV[0] (the kind) followed by
-- the old row's TG_ARGV[1] column (its id); statement triggers (TRUNCATE) announce '*' and the
-- schema.
CREATE FUNCTION fraise_cache_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        PERFORM pg_notify('fraise_auth_cache', TG_ARGV[0] || (to_jsonb(OLD) ->> TG_ARGV[1]));
    ELSE
        PERFORM pg_notify('fraise_auth_cache', '*' || TG_TABLE_SCHEMA);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tr_tb_session_cache_update AFTER UPDATE ON tb_session FOR EACH ROW
    WHEN (
        ROW(OLD.pk_session, OLD.fk_user, OLD.token_family, OLD.created_at, OLD.revoked_at, OLD.revoked_reason,
            OLD.user_agent, OLD.ip_address)
        IS DISTINCT FROM
        ROW(NEW.pk_session, NEW.fk_user, NEW.token_family, NEW.created_at, NEW.revoked_at, NEW.revoked_reason,
            NEW.user_agent, NEW.ip_address)
        OR NEW.expires_at < OLD.expires_at
        OR NEW.last_active < OLD.last_active
    )
    EXECUTE FUNCTION fraise_cache_notify('s', 'pk_session');

-- A deleted session cannot be used again, but a cache could still hold it (an operator's DELETE to
-- end sessions must reach the caches too).
CREATE TRIGGER tr_tb_session_cache_delete AFTER DELETE ON tb_session FOR EACH ROW
    EXECUTE FUNCTION fraise_cache_notify('s', 'pk_session');
CREATE TRIGGER tr_tb_session_cache_truncate AFTER TRUNCATE ON tb_session FOR EACH STATEMENT
    EXECUTE FUNCTION fraise_cache_notify();

CREATE TRIGGER tr_tb_user_cache_change AFTER UPDATE OR DELETE ON tb_user FOR EACH ROW
    EXECUTE FUNCTION fraise_cache_notify('u', 'pk_user');
CREATE TRIGGER tr_tb_user_cache_truncate AFTER TRUNCATE ON tb_user FOR EACH STATEMENT
    EXECUTE FUNCTION fraise_cache_notify();

-- ALWAYS: they fire in replica mode too (logical replication, session_replication_role =
-- replica). The service caches a schema only while all five are enabled ALWAYS, so disabling one
-- (by hand, or a restore with --disable-triggers) takes the schema out of every cache within 2 s.
ALTER TABLE tb_session ENABLE ALWAYS TRIGGER tr_tb_session_cache_update;
ALTER TABLE tb_session ENABLE ALWAYS TRIGGER tr_tb_session_cache_delete;
ALTER TABLE tb_session ENABLE ALWAYS TRIGGER tr_tb_session_cache_truncate;
ALTER TABLE tb_user ENABLE ALWAYS TRIGGER tr_tb_user_cache_change;
ALTER TABLE tb_user ENABLE ALWAYS TRIGGER tr_tb_user_cache_truncate;
