DROP TABLE sent_emails;
DROP TABLE outbox_events;
DROP TABLE participant_rewards;
DROP TABLE referrals;
DROP TABLE participants;
DROP TABLE campaign_milestones;
DROP TABLE campaign_reward_tiers;
DROP TABLE campaigns;
