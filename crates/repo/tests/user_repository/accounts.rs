//! `repo::Accounts`: sessions and their tokens, single-use account tokens, throttle windows,
//! the look-up of deleted accounts.

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use domain::accounts::TokenPurpose;
use domain::{Email, Identifier, OAuth2AccessToken, OAuth2RefreshToken, TokenHash, UserId};
use repo::accounts::{FIRST_PARTY_CLIENT_ID, NewSession, RefreshRedemption};
use repo::{Accounts, RepoError, UserRepository};
use uuid::Uuid;

use crate::common::Fixture;

async fn session(accounts: &Accounts, user_id: UserId) -> Uuid {
    let id = Uuid::now_v7();
    accounts
        .start_session(&NewSession {
            id,
            user_id,
            client_id: FIRST_PARTY_CLIENT_ID.into(),
            created_at: Utc::now(),
            ip_address: Some("203.0.113.9".into()),
            user_agent: None,
            expires_at: Utc::now() + Duration::days(1),
        })
        .await
        .unwrap();
    id
}

async fn tokens(f: &Fixture, user_id: UserId, session_id: Uuid, clear: &str) {
    let now = Utc::now();
    f.repo
        .create_access_token(&OAuth2AccessToken {
            token_hash: TokenHash::of(&format!("access-{clear}")),
            client_id: FIRST_PARTY_CLIENT_ID.into(),
            user_id: Some(user_id),
            session_id: Some(session_id),
            scopes: vec![],
            expires_at: now + Duration::minutes(15),
            revoked_at: None,
            created_at: now,
        })
        .await
        .unwrap();
    f.repo
        .create_refresh_token(&OAuth2RefreshToken {
            token_hash: TokenHash::of(clear),
            access_token_hash: None,
            client_id: FIRST_PARTY_CLIENT_ID.into(),
            user_id,
            session_id: Some(session_id),
            scopes: vec![],
            expires_at: now + Duration::days(1),
            revoked_at: None,
            created_at: now,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_token_is_redeemed_once_even_by_concurrent_requests() {
    let f = Fixture::new().await;
    let accounts = Accounts::new(f.db.database().clone());
    let user = f.user("ann@example.com").await;
    let session_id = session(&accounts, user.id).await;
    tokens(&f, user.id, session_id, "refresh-1").await;
    let hash = TokenHash::of("refresh-1");
    let outcomes = futures::future::join_all(
        (0..8).map(|_| accounts.redeem_refresh_token(&hash, FIRST_PARTY_CLIENT_ID)),
    )
    .await;
    let redeemed = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(RefreshRedemption::Redeemed { .. })))
        .count();
    let reused = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(RefreshRedemption::AlreadyRevoked { .. })))
        .count();
    assert_eq!((redeemed, reused), (1, 7), "{outcomes:?}");
    assert_eq!(
        accounts
            .redeem_refresh_token(&TokenHash::of("never issued"), FIRST_PARTY_CLIENT_ID)
            .await
            .unwrap(),
        RefreshRedemption::Unknown
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_session_revokes_its_tokens_and_no_others() {
    let f = Fixture::new().await;
    let accounts = Accounts::new(f.db.database().clone());
    let user = f.user("ann@example.com").await;
    let (one, two) = (
        session(&accounts, user.id).await,
        session(&accounts, user.id).await,
    );
    tokens(&f, user.id, one, "r-one").await;
    tokens(&f, user.id, two, "r-two").await;
    assert!(accounts.revoke_session(one, "sign_out").await.unwrap());
    assert!(!accounts.revoke_session(one, "sign_out").await.unwrap());
    let gone = f
        .repo
        .get_access_token_by_hash(&TokenHash::of("access-r-one"))
        .await;
    assert!(matches!(gone, Err(RepoError::NotFound { .. })), "{gone:?}");
    assert!(
        f.repo
            .get_access_token_by_hash(&TokenHash::of("access-r-two"))
            .await
            .is_ok()
    );
    // Everything but the current session.
    let third = session(&accounts, user.id).await;
    tokens(&f, user.id, third, "r-three").await;
    assert_eq!(
        accounts
            .revoke_sessions_of(user.id, "password_changed", Some(third))
            .await
            .unwrap(),
        1
    );
    assert!(
        f.repo
            .get_access_token_by_hash(&TokenHash::of("access-r-two"))
            .await
            .is_err()
    );
    assert!(
        f.repo
            .get_access_token_by_hash(&TokenHash::of("access-r-three"))
            .await
            .is_ok()
    );
    assert!(
        accounts
            .session(third)
            .await
            .unwrap()
            .unwrap()
            .is_live(Utc::now())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn account_tokens_are_single_use_per_purpose_and_expire() {
    let f = Fixture::new().await;
    let accounts = Accounts::new(f.db.database().clone());
    let user = f.user("ann@example.com").await;
    let later = Utc::now() + Duration::hours(1);
    let hash = TokenHash::of("verify-1");
    accounts
        .issue_account_token(
            &hash,
            user.id,
            TokenPurpose::VerifyEmail,
            Some("ann@example.com"),
            later,
        )
        .await
        .unwrap();
    assert_eq!(
        accounts
            .redeem_account_token(&hash, TokenPurpose::ResetPassword)
            .await
            .unwrap(),
        None,
        "another purpose"
    );
    assert_eq!(
        accounts
            .account_token_holder(&hash, TokenPurpose::VerifyEmail)
            .await
            .unwrap(),
        Some(user.id)
    );
    let redeemed = accounts
        .redeem_account_token(&hash, TokenPurpose::VerifyEmail)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(redeemed.target.as_deref(), Some("ann@example.com"));
    assert_eq!(
        accounts
            .redeem_account_token(&hash, TokenPurpose::VerifyEmail)
            .await
            .unwrap(),
        None,
        "used"
    );
    let expired = TokenHash::of("verify-2");
    accounts
        .issue_account_token(
            &expired,
            user.id,
            TokenPurpose::VerifyEmail,
            None,
            Utc::now() - Duration::seconds(1),
        )
        .await
        .unwrap();
    assert_eq!(
        accounts
            .redeem_account_token(&expired, TokenPurpose::VerifyEmail)
            .await
            .unwrap(),
        None
    );
    let cleaned = accounts
        .cleanup(StdDuration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(cleaned.account_tokens, 1, "the expired one");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttle_counts_in_fixed_windows() {
    let f = Fixture::new().await;
    let accounts = Accounts::new(f.db.database().clone());
    let window = StdDuration::from_secs(600);
    assert_eq!(accounts.throttle_count("k", window).await.unwrap().hits, 0);
    for expected in 1..=3 {
        assert_eq!(
            accounts.throttle_hit("k", window).await.unwrap().hits,
            expected
        );
    }
    let count = accounts.throttle_count("k", window).await.unwrap();
    assert_eq!(count.hits, 3);
    assert!(count.window_ends_at > Utc::now() + Duration::seconds(590));
    // A window that is over starts again at one.
    f.sql("UPDATE auth_throttle SET window_started_at = now() - interval '11 minutes'")
        .await;
    assert_eq!(accounts.throttle_count("k", window).await.unwrap().hits, 0);
    assert_eq!(accounts.throttle_hit("k", window).await.unwrap().hits, 1);
    accounts.throttle_clear("k").await.unwrap();
    assert_eq!(accounts.throttle_count("k", window).await.unwrap().hits, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_account_is_found_by_its_former_identifier() {
    let f = Fixture::new().await;
    let accounts = Accounts::new(f.db.database().clone());
    let user = f.user("Ann@Example.com").await;
    let identifier = Identifier::Email(Email::parse("ann@example.com").unwrap());
    assert_eq!(accounts.deleted_account(&identifier).await.unwrap(), None);
    f.repo.soft_delete_user(user.id).await.unwrap();
    let deleted = accounts
        .deleted_account(&identifier)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted.user_id, user.id);
    assert!(deleted.password_hash.starts_with("$argon2id$"));
}
