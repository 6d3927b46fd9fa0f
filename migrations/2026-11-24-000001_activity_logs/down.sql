DROP FUNCTION activity_logs_drop_partitions(DATE);
DROP FUNCTION activity_logs_create_partitions(DATE, INTEGER);
DROP TABLE activity_logs;
