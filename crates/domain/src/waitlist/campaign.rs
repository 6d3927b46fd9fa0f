//! A campaign's definition and its validation.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::webhook_address;
use crate::Email;

/// Most reward tiers and milestones a campaign may have (each is checked on every
/// verification or signup).
pub const MAX_REWARD_TIERS: usize = 20;
pub const MAX_MILESTONES: usize = 50;

/// Whether a campaign takes signups: only `active` ones do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    Active,
    Paused,
    Ended,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Ended => "ended",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Draft, Self::Active, Self::Paused, Self::Ended]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for CampaignStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a reward reaches the participant who earned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryMethod {
    /// An email to the participant.
    Email,
    /// An HTTP POST to the campaign owner's receiver, signed with the campaign's secret.
    Webhook { url: String },
}

impl DeliveryMethod {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook { .. } => "webhook",
        }
    }

    pub fn webhook_url(&self) -> Option<&str> {
        match self {
            Self::Email => None,
            Self::Webhook { url } => Some(url),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRewardTier {
    pub name: String,
    /// Verified referrals needed.
    pub referral_threshold: i32,
    pub delivery: DeliveryMethod,
}

/// A campaign as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCampaign {
    pub name: String,
    pub status: CampaignStatus,
    pub points_per_referral: i32,
    pub reward_tiers: Vec<NewRewardTier>,
    /// Participant counts worth an announcement.
    pub milestones: Vec<i64>,
    pub notify_email: Option<Email>,
}

/// Why a campaign was refused; `field` is the JSON path of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidCampaign {
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidCampaign {
    InvalidCampaign {
        field: field.into(),
        reason: reason.into(),
    }
}

impl NewCampaign {
    /// Refuses a webhook whose host is an IP literal off the public internet (see
    /// `webhook_address`), for deployments that keep webhooks to public addresses. Host names
    /// are left to the reward-worker, which checks the address it connects to.
    pub fn require_public_webhooks(&self) -> Result<(), InvalidCampaign> {
        for (i, tier) in self.reward_tiers.iter().enumerate() {
            let ip = tier
                .delivery
                .webhook_url()
                .and_then(|url| url::Url::parse(url).ok())
                .and_then(|url| webhook_address::literal_ip(&url));
            if let Some(ip) = ip.filter(|ip| !webhook_address::is_public(*ip)) {
                return Err(invalid(
                    format!("reward_tiers[{i}].webhook_url"),
                    format!("{ip} is not a public address; webhooks go to public addresses only"),
                ));
            }
        }
        Ok(())
    }

    /// Checks what the database cannot say clearly: lengths, ranges, duplicates, URL schemes.
    pub fn validate(&self) -> Result<(), InvalidCampaign> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(invalid("name", "must be 1 to 200 characters"));
        }
        // Names go into email subjects and bodies: no line breaks or other control characters.
        if name.chars().any(char::is_control) {
            return Err(invalid(
                "name",
                "must not contain control characters (line breaks, tabs)",
            ));
        }
        if !(0..=1_000_000).contains(&self.points_per_referral) {
            return Err(invalid(
                "points_per_referral",
                "must be between 0 and 1000000",
            ));
        }
        if self.reward_tiers.len() > MAX_REWARD_TIERS {
            return Err(invalid(
                "reward_tiers",
                format!("at most {MAX_REWARD_TIERS} tiers"),
            ));
        }
        for (i, tier) in self.reward_tiers.iter().enumerate() {
            let field = |f: &str| format!("reward_tiers[{i}].{f}");
            if tier.name.trim().is_empty() || tier.name.chars().count() > 200 {
                return Err(invalid(field("name"), "must be 1 to 200 characters"));
            }
            if tier.name.chars().any(char::is_control) {
                return Err(invalid(
                    field("name"),
                    "must not contain control characters (line breaks, tabs)",
                ));
            }
            if tier.referral_threshold < 1 {
                return Err(invalid(field("referral_threshold"), "must be at least 1"));
            }
            if self.reward_tiers[..i]
                .iter()
                .any(|t| t.referral_threshold == tier.referral_threshold)
            {
                return Err(invalid(
                    field("referral_threshold"),
                    "another tier has the same threshold",
                ));
            }
            if let DeliveryMethod::Webhook { url } = &tier.delivery {
                let parsed = url::Url::parse(url).ok().filter(|parsed| {
                    matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some()
                });
                if parsed.is_none() || url.len() > 2000 || url.chars().any(char::is_whitespace) {
                    return Err(invalid(
                        field("webhook_url"),
                        "must be an http(s) URL with a host, of at most 2000 characters",
                    ));
                }
                // Campaigns are listed with their URLs: a password in one would be shown to
                // every reader (the receiver verifies X-Waitlist-Signature instead).
                if parsed.is_some_and(|p| !p.username().is_empty() || p.password().is_some()) {
                    return Err(invalid(
                        field("webhook_url"),
                        "must not carry a user name or password; verify the signature header instead",
                    ));
                }
            }
        }
        if self.milestones.len() > MAX_MILESTONES {
            return Err(invalid(
                "milestones",
                format!("at most {MAX_MILESTONES} milestones"),
            ));
        }
        for (i, milestone) in self.milestones.iter().enumerate() {
            if *milestone < 1 {
                return Err(invalid(format!("milestones[{i}]"), "must be at least 1"));
            }
            if self.milestones[..i].contains(milestone) {
                return Err(invalid(format!("milestones[{i}]"), "appears twice"));
            }
        }
        Ok(())
    }
}

/// Seed 003's milestone name: `1000_participants`.
pub fn milestone_name(participant_count: i64) -> String {
    format!("{participant_count}_participants")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign() -> NewCampaign {
        NewCampaign {
            name: "Launch".into(),
            status: CampaignStatus::Active,
            points_per_referral: 2,
            reward_tiers: vec![NewRewardTier {
                name: "Sticker".into(),
                referral_threshold: 1,
                delivery: DeliveryMethod::Email,
            }],
            milestones: vec![10, 100],
            notify_email: None,
        }
    }

    #[test]
    fn webhooks_to_internal_ip_literals_are_refused_on_request() {
        let mut c = campaign();
        c.reward_tiers.push(NewRewardTier {
            name: "Hook".into(),
            referral_threshold: 2,
            delivery: DeliveryMethod::Webhook {
                url: "https://hooks.example.com/x".into(),
            },
        });
        assert_eq!(c.require_public_webhooks(), Ok(()));
        c.reward_tiers[1].delivery = DeliveryMethod::Webhook {
            url: "http://10.0.0.7:8080/x".into(),
        };
        assert_eq!(c.validate(), Ok(()), "valid as such");
        let refused = c.require_public_webhooks().unwrap_err();
        assert_eq!(refused.field, "reward_tiers[1].webhook_url");
        assert!(refused.reason.contains("10.0.0.7"), "{}", refused.reason);
    }

    #[test]
    fn a_sound_campaign_passes() {
        assert_eq!(campaign().validate(), Ok(()));
        assert_eq!(milestone_name(1000), "1000_participants");
    }

    #[test]
    fn each_problem_names_its_field() {
        type Breakage = Box<dyn Fn(&mut NewCampaign)>;
        let cases: Vec<(Breakage, &str)> = vec![
            (Box::new(|c| c.name = " ".into()), "name"),
            (
                Box::new(|c| c.name = "Launch\r\nBcc: x@evil.example".into()),
                "name",
            ),
            (
                Box::new(|c| c.reward_tiers[0].name = "Sticker\u{7}".into()),
                "reward_tiers[0].name",
            ),
            (
                Box::new(|c| c.points_per_referral = -1),
                "points_per_referral",
            ),
            (
                Box::new(|c| c.reward_tiers[0].referral_threshold = 0),
                "reward_tiers[0].referral_threshold",
            ),
            (
                Box::new(|c| {
                    c.reward_tiers[0].delivery = DeliveryMethod::Webhook {
                        url: "ftp://x".into(),
                    };
                }),
                "reward_tiers[0].webhook_url",
            ),
            (
                Box::new(|c| {
                    c.reward_tiers[0].delivery = DeliveryMethod::Webhook {
                        url: "https://".into(),
                    };
                }),
                "reward_tiers[0].webhook_url",
            ),
            (
                Box::new(|c| {
                    c.reward_tiers[0].delivery = DeliveryMethod::Webhook {
                        url: "http://exa mple.com/".into(),
                    };
                }),
                "reward_tiers[0].webhook_url",
            ),
            (
                Box::new(|c| {
                    c.reward_tiers[0].delivery = DeliveryMethod::Webhook {
                        url: "https://user:pw@example.com/".into(),
                    };
                }),
                "reward_tiers[0].webhook_url",
            ),
            (
                Box::new(|c| c.reward_tiers.push(c.reward_tiers[0].clone())),
                "reward_tiers[1].referral_threshold",
            ),
            (Box::new(|c| c.milestones.push(10)), "milestones[2]"),
            (Box::new(|c| c.milestones[0] = 0), "milestones[0]"),
        ];
        for (break_it, field) in cases {
            let mut c = campaign();
            break_it(&mut c);
            assert_eq!(c.validate().unwrap_err().field, field);
        }
    }
}
