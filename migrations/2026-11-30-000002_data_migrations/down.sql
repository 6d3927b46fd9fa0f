DROP INDEX participants_mailbox;
DROP TABLE data_migrations;
