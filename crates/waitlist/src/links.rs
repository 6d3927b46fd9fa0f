//! Links to the waitlist's web pages (`WAITLIST_PUBLIC_URL`), as the gateway's answers and the
//! emails give them.

use service_runtime::Env;
use uuid::Uuid;

/// `WAITLIST_PUBLIC_URL` (default `http://127.0.0.1:3000`), without a trailing slash.
pub fn public_url_from_env(env: &Env) -> String {
    env.string("WAITLIST_PUBLIC_URL", "http://127.0.0.1:3000")
        .trim_end_matches('/')
        .to_owned()
}

/// Where a participant's referral code brings people: `<public>/campaigns/<id>?ref=<code>`.
pub fn referral_link(public_url: &str, campaign_id: Uuid, referral_code: &str) -> String {
    format!("{public_url}/campaigns/{campaign_id}?ref={referral_code}")
}
