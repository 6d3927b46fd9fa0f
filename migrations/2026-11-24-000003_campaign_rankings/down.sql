DROP TABLE campaign_rankings;
