-- Positions updated one participant at a time. Each participant records the verified-referral
-- count its position reflects (`ranked_referral_count`); a verification raises
-- `verified_referral_count` only, and the position-worker then moves that participant from its
-- old rank to its new one and shifts the participants in between by one, instead of ranking the
-- whole campaign again. The partial index finds the participants still to move; it is empty when
-- every position is up to date.
--
-- Replaces campaign_rankings (a campaign-wide verified total, whose upkeep read every
-- participant of the campaign on each event).

ALTER TABLE participants ADD COLUMN ranked_referral_count INTEGER NOT NULL DEFAULT 0;

-- Every campaign ranked once, so that every position reflects the count recorded beside it.
UPDATE participants p
SET position = ranked.position, ranked_referral_count = ranked.verified
FROM (
    SELECT q.id, q.verified_referral_count AS verified,
           row_number() OVER (
               PARTITION BY q.campaign_id
               ORDER BY greatest(q.original_position
                                 - q.verified_referral_count::int8 * c.points_per_referral, 1),
                        q.original_position) AS position
    FROM participants q JOIN campaigns c ON c.id = q.campaign_id
) ranked
WHERE p.id = ranked.id;

CREATE INDEX participants_unranked ON participants (campaign_id)
    WHERE verified_referral_count <> ranked_referral_count;

DROP TABLE campaign_rankings;
