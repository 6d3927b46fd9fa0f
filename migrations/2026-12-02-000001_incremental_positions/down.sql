CREATE TABLE campaign_rankings (
    campaign_id    UUID PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    verified_total BIGINT NOT NULL CHECK (verified_total >= 0),
    ranked_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
DROP INDEX participants_unranked;
ALTER TABLE participants DROP COLUMN ranked_referral_count;
