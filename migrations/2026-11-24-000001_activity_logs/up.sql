-- User activity logs (seed 004): append-heavy time series, partitioned by day on the event's
-- own time. Daily partitions (activity_logs_pYYYYMMDD) are created ahead by the
-- activity-log-processor and dropped after the retention; there is no default partition, so a
-- row outside the created range fails loudly instead of landing somewhere it cannot be dropped.
--
-- Idempotent on eventId: a unique key of a partitioned table must include the partition key, so
-- the key is (event_id, occurred_at); a replayed event carries both unchanged.

CREATE TABLE activity_logs (
    event_id      TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    activity_type TEXT NOT NULL,
    occurred_at   TIMESTAMPTZ NOT NULL,
    metadata      JSONB NOT NULL DEFAULT '{}',
    version       TEXT NOT NULL,
    stored_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

-- GET /api/v1/users/{userId}/activity-logs: newest first, cursor on (occurred_at, event_id).
CREATE INDEX activity_logs_user_time_idx ON activity_logs (user_id, occurred_at DESC, event_id DESC);
-- The analytics rule on repeated failed logins from one IP.
CREATE INDEX activity_logs_failed_login_ip_idx ON activity_logs ((metadata->>'ipAddress'), occurred_at)
    WHERE activity_type = 'login_failed';

-- Creates the daily partitions covering [from_day, from_day + days); returns how many it made.
CREATE FUNCTION activity_logs_create_partitions(from_day DATE, days INTEGER) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    day DATE;
    made INTEGER := 0;
    name TEXT;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        day := from_day + i;
        name := 'activity_logs_p' || to_char(day, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF activity_logs FOR VALUES FROM (%L) TO (%L)',
                name, day::timestamptz, (day + 1)::timestamptz);
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END $$;

-- Drops the daily partitions that end on or before before_day; returns how many it dropped.
CREATE FUNCTION activity_logs_drop_partitions(before_day DATE) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    partition RECORD;
    dropped INTEGER := 0;
BEGIN
    FOR partition IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'activity_logs'::regclass
          AND c.relname ~ '^activity_logs_p[0-9]{8}$'
          AND to_date(substring(c.relname FROM 16), 'YYYYMMDD') < before_day
    LOOP
        EXECUTE format('DROP TABLE %I', partition.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;
