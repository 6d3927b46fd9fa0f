-- The outcome of each asynchronous registration (seed 000), read by
-- GET /api/v1/auth/registrations/{request_id}. A row is written by the batch that handles the
-- request, in the same transaction that creates the user, so a replayed message finds it and
-- creates nobody twice. `completed` and `failed` are final; `processing` means a try failed for
-- a transient reason and the request waits in user.registration.dlq for the retrier.

CREATE TABLE registration_requests (
    request_id    UUID PRIMARY KEY,
    status        TEXT NOT NULL CHECK (status IN ('processing', 'completed', 'failed')),
    -- Set once completed. No foreign key: the outcome stays readable if the user is deleted.
    user_id       BIGINT,
    error_code    TEXT,
    error_message TEXT,
    -- Tries made by the dlq-retrier so far.
    retry_count   INTEGER NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT registration_requests_completed_has_user
        CHECK ((status = 'completed') = (user_id IS NOT NULL))
);
SELECT diesel_manage_updated_at('registration_requests');
