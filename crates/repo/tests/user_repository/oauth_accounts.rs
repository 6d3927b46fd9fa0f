use chrono::{Duration, Utc};
use domain::{OAuthAccount, TokenHash, UserId};
use repo::{RepoError, UserRepository};
use serde_json::json;
use uuid::Uuid;

use crate::common::Fixture;

fn account(user_id: UserId, provider: &str, uid: &str) -> OAuthAccount {
    OAuthAccount {
        id: Uuid::new_v4(),
        user_id,
        provider: provider.into(),
        provider_uid: uid.into(),
        email: Some("ada@example.com".into()),
        access_token_hash: Some(TokenHash::of("provider-access")),
        refresh_token_hash: None,
        token_expires_at: Some(Utc::now() + Duration::hours(1)),
        metadata: json!({ "name": "Ada" }),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn linked_social_logins() {
    let f = Fixture::new().await;
    let ada = f.user("ada@example.com").await;
    let bob = f.user("bob@example.com").await;
    let google = account(ada.id, "google", "g-1");
    f.repo.create_oauth_account(&google).await.unwrap();
    f.repo
        .create_oauth_account(&account(ada.id, "github", "gh-1"))
        .await
        .unwrap();
    f.repo
        .create_oauth_account(&account(bob.id, "google", "g-2"))
        .await
        .unwrap();

    // One provider account links to one user; one user has one account per provider.
    let stolen = f
        .repo
        .create_oauth_account(&account(bob.id, "google", "g-1"))
        .await;
    assert!(matches!(stolen, Err(RepoError::Conflict(_))), "{stolen:?}");
    let second = f
        .repo
        .create_oauth_account(&account(ada.id, "google", "g-9"))
        .await;
    assert!(matches!(second, Err(RepoError::Conflict(_))), "{second:?}");
    let orphan = f
        .repo
        .create_oauth_account(&account(f.unknown_id(), "apple", "a-1"))
        .await;
    assert!(
        matches!(orphan, Err(RepoError::InvalidInput(_))),
        "{orphan:?}"
    );

    assert!(
        f.repo
            .check_oauth_account_exists(ada.id, "github")
            .await
            .unwrap()
    );
    assert!(
        !f.repo
            .check_oauth_account_exists(bob.id, "github")
            .await
            .unwrap()
    );
    assert_eq!(
        f.repo
            .count_oauth_accounts_by_provider("google")
            .await
            .unwrap(),
        2
    );
    let found = f.repo.find_by_provider_uid("google", "g-1").await.unwrap();
    assert_eq!((found.id, found.user_id), (google.id, ada.id));
    assert_eq!(
        found.access_token_hash,
        Some(TokenHash::of("provider-access"))
    );
    assert_eq!(
        f.repo
            .get_oauth_account_by_id(google.id)
            .await
            .unwrap()
            .provider_uid,
        "g-1"
    );
    assert_eq!(
        f.repo
            .get_user_id_by_provider_uid("google", "g-2")
            .await
            .unwrap(),
        bob.id
    );
    let providers: Vec<_> = f
        .repo
        .get_oauth_accounts_by_user_id(ada.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.provider)
        .collect();
    assert_eq!(providers, ["github", "google"]);
    assert_eq!(f.repo.get_recent_oauth_links(2).await.unwrap().len(), 2);
    assert!(matches!(
        f.repo.find_by_provider_uid("google", "nope").await,
        Err(RepoError::NotFound { .. })
    ));
    assert!(matches!(
        f.repo.get_oauth_account_by_id(Uuid::new_v4()).await,
        Err(RepoError::NotFound { .. })
    ));
    assert!(matches!(
        f.repo.get_user_id_by_provider_uid("x", "y").await,
        Err(RepoError::NotFound { .. })
    ));

    f.repo
        .update_oauth_account_metadata(google.id, &json!({ "name": "Ada L." }))
        .await
        .unwrap();
    assert_eq!(
        f.repo
            .get_oauth_account_by_id(google.id)
            .await
            .unwrap()
            .metadata["name"],
        "Ada L."
    );
    assert!(
        f.repo
            .update_oauth_account_metadata(Uuid::new_v4(), &json!({}))
            .await
            .is_err()
    );

    // New tokens are stored hashed; None leaves a value alone.
    let refresh = TokenHash::of("provider-refresh");
    f.repo
        .update_oauth_tokens("google", "g-1", None, Some(&refresh), None)
        .await
        .unwrap();
    let updated = f.repo.get_oauth_account_by_id(google.id).await.unwrap();
    assert_eq!(
        updated.access_token_hash,
        Some(TokenHash::of("provider-access"))
    );
    assert_eq!(updated.refresh_token_hash, Some(refresh));
    assert!(
        f.repo
            .update_oauth_tokens("google", "nope", None, None, None)
            .await
            .is_err()
    );

    // Expired provider tokens are forgotten.
    f.repo
        .update_oauth_tokens(
            "github",
            "gh-1",
            None,
            None,
            Some(Utc::now() - Duration::minutes(1)),
        )
        .await
        .unwrap();
    assert_eq!(f.repo.cleanup_expired_tokens().await.unwrap(), 1);
    let github = f.repo.find_by_provider_uid("github", "gh-1").await.unwrap();
    assert_eq!(
        (github.access_token_hash, github.token_expires_at),
        (None, None)
    );
    assert!(
        f.repo
            .find_by_provider_uid("google", "g-1")
            .await
            .unwrap()
            .access_token_hash
            .is_some()
    );

    f.repo.unlink_oauth_account(ada.id, "github").await.unwrap();
    assert!(
        !f.repo
            .check_oauth_account_exists(ada.id, "github")
            .await
            .unwrap()
    );
    assert!(matches!(
        f.repo.unlink_oauth_account(ada.id, "github").await,
        Err(RepoError::NotFound { .. })
    ));
}
