//! Seed 001's fraud checks on a referral, applied at signup, before the referral can count:
//! self-referral (the same mailbox behind two addresses), disposable email domains, and too many
//! signups from one IP address in a window. A flagged referral is kept with its reason and never
//! counts.

use std::collections::HashSet;
use std::sync::LazyLock;

/// Why a referral was flagged; stored as `fraud_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FraudReason {
    SelfReferral,
    DisposableEmail,
    TooManySignupsFromIp,
}

impl FraudReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SelfReferral => "self_referral",
            Self::DisposableEmail => "disposable_email",
            Self::TooManySignupsFromIp => "too_many_signups_from_ip",
        }
    }
}

/// Limits of the IP rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FraudRules {
    /// Signups from one IP in the window (this one included) above which referrals are flagged.
    pub max_signups_per_ip: i64,
    pub ip_window: std::time::Duration,
}

/// What the rules look at for one referred signup.
#[derive(Debug, Clone, Copy)]
pub struct SignupFacts<'a> {
    pub referrer_email: &'a str,
    pub referred_email: &'a str,
    /// Signups of the campaign from the same IP within the window, before this one.
    pub earlier_signups_from_ip: i64,
}

impl FraudRules {
    /// The first rule the referral breaks, if any.
    pub fn check(&self, facts: SignupFacts<'_>) -> Option<FraudReason> {
        if canonical_email(facts.referrer_email) == canonical_email(facts.referred_email) {
            return Some(FraudReason::SelfReferral);
        }
        let domain = facts.referred_email.rsplit_once('@').map_or("", |(_, d)| d);
        if is_disposable_domain(domain) {
            return Some(FraudReason::DisposableEmail);
        }
        if facts.earlier_signups_from_ip + 1 > self.max_signups_per_ip {
            return Some(FraudReason::TooManySignupsFromIp);
        }
        None
    }
}

/// Providers that deliver `first.last@` to `firstlast@`.
const DOTS_IGNORED: &[&str] = &["gmail.com", "googlemail.com"];

/// The mailbox an address reaches: lower-cased, `+tag` removed, dots removed where the provider
/// ignores them, `googlemail.com` as `gmail.com`.
pub fn canonical_email(email: &str) -> String {
    let email = email.trim().to_lowercase();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return email;
    };
    let local = local.split('+').next().unwrap_or(local);
    if DOTS_IGNORED.contains(&domain) {
        format!("{}@gmail.com", local.replace('.', ""))
    } else {
        format!("{local}@{domain}")
    }
}

static DISPOSABLE: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("disposable_domains.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

/// Whether `domain` (or a domain it is under) hands out throwaway addresses.
pub fn is_disposable_domain(domain: &str) -> bool {
    let domain = domain.trim().trim_end_matches('.').to_lowercase();
    let mut rest = domain.as_str();
    loop {
        if DISPOSABLE.contains(rest) {
            return true;
        }
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const RULES: FraudRules = FraudRules {
        max_signups_per_ip: 3,
        ip_window: Duration::from_secs(3600),
    };

    fn check(referrer: &str, referred: &str, earlier: i64) -> Option<FraudReason> {
        RULES.check(SignupFacts {
            referrer_email: referrer,
            referred_email: referred,
            earlier_signups_from_ip: earlier,
        })
    }

    #[test]
    fn the_same_mailbox_is_a_self_referral() {
        assert_eq!(
            canonical_email("A.Lice+x@GoogleMail.com"),
            "alice@gmail.com"
        );
        assert_eq!(
            canonical_email("a.lice+promo@example.com"),
            "a.lice@example.com"
        );
        let self_referral = Some(FraudReason::SelfReferral);
        assert_eq!(
            check("alice@gmail.com", "a.l.i.c.e+2@gmail.com", 0),
            self_referral
        );
        assert_eq!(
            check("bob@example.com", "BOB+waitlist@example.com", 0),
            self_referral
        );
        // Dots matter outside Gmail.
        assert_eq!(check("bob@example.com", "b.ob@example.com", 0), None);
    }

    #[test]
    fn disposable_domains_and_their_subdomains_are_flagged() {
        assert!(is_disposable_domain("mailinator.com"));
        assert!(is_disposable_domain("eu.Mailinator.com."));
        assert!(!is_disposable_domain("example.com"));
        assert!(!is_disposable_domain("com"));
        assert_eq!(
            check("bob@example.com", "x@yopmail.com", 0),
            Some(FraudReason::DisposableEmail)
        );
    }

    #[test]
    fn signups_past_the_ip_limit_are_flagged() {
        assert_eq!(check("a@example.com", "b@example.com", 2), None);
        assert_eq!(
            check("a@example.com", "b@example.com", 3),
            Some(FraudReason::TooManySignupsFromIp)
        );
    }
}
