//! A participant's tokens: `<participant id>.<MAC>`, the MAC being HMAC-SHA256 over the token's
//! purpose, the campaign and the participant under `VERIFICATION_SECRET`, truncated to 128 bits.
//! Two purposes: the email verification token ([`VerificationTokens`]), and the participant
//! token ([`ParticipantTokens`]) with which a participant reads their own position, referral
//! link and rewards. One never passes for the other.
//!
//! Stateless on purpose: the email worker mints the token it mails from the `user.signed_up`
//! event alone, a replayed event mints the same token, and nothing secret is stored. The gateway
//! checks the MAC before touching the database. Verifying twice is harmless (the second time
//! changes nothing), so tokens need no expiry; rotating the secret voids unused ones.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

const MAC_BYTES: usize = 16;

/// Email verification tokens.
#[derive(Debug, Clone)]
pub struct VerificationTokens(CampaignTokens);

impl VerificationTokens {
    pub fn new(secret: SecretString) -> Self {
        Self(CampaignTokens {
            secret,
            purpose: b"waitlist-verify:",
        })
    }

    /// The token of `participant_id` in `campaign_id`.
    pub fn issue(&self, campaign_id: Uuid, participant_id: Uuid) -> String {
        self.0.issue(campaign_id, participant_id)
    }

    /// The participant a token was issued to, if it is genuine for this campaign.
    pub fn check(&self, campaign_id: Uuid, token: &str) -> Option<Uuid> {
        self.0.check(campaign_id, token)
    }
}

/// Participant tokens: given at signup and in the verification email, sent back as
/// `Authorization: Bearer <token>` to read the participant's own standing.
#[derive(Debug, Clone)]
pub struct ParticipantTokens(CampaignTokens);

impl ParticipantTokens {
    pub fn new(secret: SecretString) -> Self {
        Self(CampaignTokens {
            secret,
            purpose: b"waitlist-participant:",
        })
    }

    /// The token of `participant_id` in `campaign_id`.
    pub fn issue(&self, campaign_id: Uuid, participant_id: Uuid) -> String {
        self.0.issue(campaign_id, participant_id)
    }

    /// The participant a token was issued to, if it is genuine for this campaign.
    pub fn check(&self, campaign_id: Uuid, token: &str) -> Option<Uuid> {
        self.0.check(campaign_id, token)
    }
}

#[derive(Debug, Clone)]
struct CampaignTokens {
    secret: SecretString,
    purpose: &'static [u8],
}

impl CampaignTokens {
    fn mac(&self, campaign_id: Uuid, participant_id: Uuid) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(self.purpose);
        mac.update(campaign_id.as_bytes());
        mac.update(participant_id.as_bytes());
        mac
    }

    fn issue(&self, campaign_id: Uuid, participant_id: Uuid) -> String {
        let tag = self
            .mac(campaign_id, participant_id)
            .finalize()
            .into_bytes();
        format!(
            "{}.{}",
            participant_id.simple(),
            hex::encode(&tag[..MAC_BYTES])
        )
    }

    fn check(&self, campaign_id: Uuid, token: &str) -> Option<Uuid> {
        let (id, tag) = token.trim().split_once('.')?;
        let participant_id = Uuid::try_parse(id).ok()?;
        let tag = hex::decode(tag).ok()?;
        if tag.len() != MAC_BYTES {
            return None;
        }
        self.mac(campaign_id, participant_id)
            .verify_truncated_left(&tag)
            .ok()?;
        Some(participant_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str) -> VerificationTokens {
        VerificationTokens::new(SecretString::from(secret.to_owned()))
    }

    #[test]
    fn a_token_names_its_participant_and_nothing_else_passes() {
        let (campaign, participant) = (Uuid::new_v4(), Uuid::new_v4());
        let token = tokens("s3cret").issue(campaign, participant);
        assert_eq!(tokens("s3cret").check(campaign, &token), Some(participant));
        assert_eq!(tokens("s3cret").check(Uuid::new_v4(), &token), None);
        assert_eq!(tokens("other").check(campaign, &token), None);
        let mut forged = token.clone();
        forged.replace_range(0..1, if token.starts_with('a') { "b" } else { "a" });
        assert_eq!(tokens("s3cret").check(campaign, &forged), None);
        assert_eq!(tokens("s3cret").check(campaign, "nonsense"), None);
        assert_eq!(
            tokens("s3cret").check(campaign, &token[..token.len() - 2]),
            None
        );
    }

    #[test]
    fn a_verification_token_is_no_participant_token_and_back() {
        let secret = || SecretString::from("s3cret".to_owned());
        let (campaign, participant) = (Uuid::new_v4(), Uuid::new_v4());
        let verification = VerificationTokens::new(secret());
        let participants = ParticipantTokens::new(secret());
        let token = participants.issue(campaign, participant);
        assert_eq!(participants.check(campaign, &token), Some(participant));
        assert_eq!(verification.check(campaign, &token), None);
        let verify = verification.issue(campaign, participant);
        assert_eq!(participants.check(campaign, &verify), None);
    }
}
