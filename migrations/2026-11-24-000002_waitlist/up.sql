-- Waitlist campaigns (seeds 001 and 003): campaigns with reward tiers and milestones,
-- participants with their signup order and referral code, referrals (flagged ones kept),
-- rewards earned and their delivery, the outbox of domain events, and the email worker's record
-- of what it sent.

CREATE TABLE campaigns (
    id                  UUID PRIMARY KEY,
    name                TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('draft', 'active', 'paused', 'ended')),
    -- Positions gained per verified referral.
    points_per_referral INTEGER NOT NULL CHECK (points_per_referral >= 0),
    -- Signups so far: the next signup's original position is this plus one. Updated under the
    -- campaign row's lock, so signup order has no gaps and no ties.
    participant_count   BIGINT NOT NULL DEFAULT 0,
    -- Where milestone announcements go (the campaign's owner); none when NULL.
    notify_email        TEXT,
    -- Signs the webhooks of this campaign's rewards (HMAC-SHA256); shown once, at creation.
    webhook_secret      TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
SELECT diesel_manage_updated_at('campaigns');

CREATE TABLE campaign_reward_tiers (
    id                 UUID PRIMARY KEY,
    campaign_id        UUID NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    -- Verified referrals needed.
    referral_threshold INTEGER NOT NULL CHECK (referral_threshold > 0),
    delivery_method    TEXT NOT NULL CHECK (delivery_method IN ('email', 'webhook')),
    webhook_url        TEXT,
    CONSTRAINT campaign_reward_tiers_webhook_has_url
        CHECK ((delivery_method = 'webhook') = (webhook_url IS NOT NULL)),
    UNIQUE (campaign_id, referral_threshold)
);

CREATE TABLE campaign_milestones (
    campaign_id       UUID NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    participant_count BIGINT NOT NULL CHECK (participant_count > 0),
    reached_at        TIMESTAMPTZ,
    PRIMARY KEY (campaign_id, participant_count)
);

CREATE TABLE participants (
    id                      UUID PRIMARY KEY,
    campaign_id             UUID NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    email                   TEXT NOT NULL,
    -- Lower-cased, for "already signed up".
    email_lower             TEXT NOT NULL,
    -- Without +tags (and dots where the provider ignores them), for the self-referral rule.
    email_canonical         TEXT NOT NULL,
    referral_code           TEXT NOT NULL,
    original_position       BIGINT NOT NULL CHECK (original_position > 0),
    -- Recomputed by the position-worker; the original position until then.
    position                BIGINT NOT NULL CHECK (position > 0),
    verified_referral_count INTEGER NOT NULL DEFAULT 0,
    signup_ip               TEXT,
    verified_at             TIMESTAMPTZ,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, email_lower),
    UNIQUE (campaign_id, referral_code),
    UNIQUE (campaign_id, original_position)
);
CREATE INDEX participants_leaderboard ON participants (campaign_id, position);
CREATE INDEX participants_signups_by_ip ON participants (campaign_id, signup_ip, created_at);

CREATE TABLE referrals (
    id           UUID PRIMARY KEY,
    campaign_id  UUID NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    referrer_id  UUID NOT NULL REFERENCES participants (id) ON DELETE CASCADE,
    -- One referral per participant: the code they signed up with.
    referred_id  UUID NOT NULL UNIQUE REFERENCES participants (id) ON DELETE CASCADE,
    -- pending until the referred participant verifies; flagged ones never count.
    status       TEXT NOT NULL CHECK (status IN ('pending', 'verified', 'flagged')),
    fraud_reason TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    verified_at  TIMESTAMPTZ,
    CONSTRAINT referrals_flagged_has_reason CHECK ((status = 'flagged') = (fraud_reason IS NOT NULL))
);
CREATE INDEX referrals_by_referrer ON referrals (referrer_id);

-- A reward earned (seed 003's user_reward) and its delivery; created `pending` in the same
-- transaction as the reward.earned event, so a reward is never silently lost.
CREATE TABLE participant_rewards (
    id               UUID PRIMARY KEY,
    campaign_id      UUID NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    participant_id   UUID NOT NULL REFERENCES participants (id) ON DELETE CASCADE,
    tier_id          UUID NOT NULL REFERENCES campaign_reward_tiers (id) ON DELETE CASCADE,
    earned_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivery_status  TEXT NOT NULL DEFAULT 'pending'
        CHECK (delivery_status IN ('pending', 'delivered', 'failed')),
    delivery_attempts INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    delivered_at     TIMESTAMPTZ,
    UNIQUE (participant_id, tier_id)
);

-- Domain events written with the change that caused them; the gateway's relay publishes them
-- in id order and deletes them.
CREATE TABLE outbox_events (
    id          BIGSERIAL PRIMARY KEY,
    topic       TEXT NOT NULL,
    message_key TEXT NOT NULL,
    payload     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- What the email worker sent: one row per event, template and recipient, so a replayed event
-- sends nothing twice.
CREATE TABLE sent_emails (
    event_id   UUID NOT NULL,
    template   TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('sending', 'sent')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at    TIMESTAMPTZ,
    PRIMARY KEY (event_id, template, recipient)
);
