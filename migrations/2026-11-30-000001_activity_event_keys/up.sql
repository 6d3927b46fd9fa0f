-- Idempotency on eventId per user, whatever the event's time: a client that retries without a
-- timestamp gets a new one from the gateway, so (event_id, occurred_at) is not a key a retry
-- keeps. activity_logs is partitioned by time, and a unique key of a partitioned table must
-- include the partition key, so the key lives in a table of its own: one row per
-- (user_id, event_id), written by the same statement that stores the event. Keys are deleted
-- with the partition their event was stored in.

-- Events stored twice before this migration: the first stored stays.
DELETE FROM activity_logs a
USING activity_logs b
WHERE a.user_id = b.user_id
  AND a.event_id = b.event_id
  AND (a.stored_at, a.occurred_at) > (b.stored_at, b.occurred_at);

-- Two users may use the same eventId at the same time.
ALTER TABLE activity_logs DROP CONSTRAINT activity_logs_pkey;
ALTER TABLE activity_logs ADD PRIMARY KEY (user_id, event_id, occurred_at);

CREATE TABLE activity_event_keys (
    user_id     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    -- The stored event's time: where it is, and when the key goes.
    occurred_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX activity_event_keys_occurred_at_idx ON activity_event_keys (occurred_at);

INSERT INTO activity_event_keys (user_id, event_id, occurred_at)
SELECT user_id, event_id, min(occurred_at) FROM activity_logs GROUP BY user_id, event_id;

-- Drops the daily partitions that end on or before before_day, and the keys of their events;
-- returns how many partitions it dropped.
CREATE OR REPLACE FUNCTION activity_logs_drop_partitions(before_day DATE) RETURNS INTEGER
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
    DELETE FROM activity_event_keys WHERE occurred_at < before_day::timestamptz;
    RETURN dropped;
END $$;
