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
    RETURN dropped;
END $$;

DROP TABLE activity_event_keys;
ALTER TABLE activity_logs DROP CONSTRAINT activity_logs_pkey;
ALTER TABLE activity_logs ADD PRIMARY KEY (event_id, occurred_at);
