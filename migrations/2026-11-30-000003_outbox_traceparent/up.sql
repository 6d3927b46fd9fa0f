-- The W3C traceparent of the request that wrote the event, so the relayed record continues its
-- trace (NULL: written outside any trace, or before this column existed).
ALTER TABLE outbox_events ADD COLUMN traceparent text;
