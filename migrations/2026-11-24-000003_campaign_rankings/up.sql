-- What each campaign's last position recalculation saw: the campaign's total of verified
-- referrals. Verified counts only grow, so the same total now means no referral has counted
-- since, and the position-worker skips the events of a burst that recalculation already covered.
CREATE TABLE campaign_rankings (
    campaign_id    UUID PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    verified_total BIGINT NOT NULL CHECK (verified_total >= 0),
    ranked_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
