DROP INDEX participants_mailbox;
