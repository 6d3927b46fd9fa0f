use chrono::{Duration, Utc};
use domain::{
    OAuth2AccessToken, OAuth2AuditLog, OAuth2AuthorizationCode, OAuth2Client, OAuth2RefreshToken,
    OAuth2UserConsent, TokenHash, UserId,
};
use repo::{RepoError, UserRepository};
use serde_json::json;
use uuid::Uuid;

use crate::common::Fixture;

fn client(client_id: &str, owner: Option<UserId>) -> OAuth2Client {
    OAuth2Client {
        id: Uuid::new_v4(),
        client_id: client_id.into(),
        client_secret_hash: Some(TokenHash::of("secret-1")),
        name: "Dashboard".into(),
        redirect_uris: vec!["https://app.example.com/callback".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scopes: vec!["openid".into(), "email".into()],
        owner_user_id: owner,
        is_confidential: true,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn access_token(clear: &str, user_id: UserId, expires_in: Duration) -> OAuth2AccessToken {
    OAuth2AccessToken {
        token_hash: TokenHash::of(clear),
        client_id: "dashboard".into(),
        user_id: Some(user_id),
        session_id: None,
        scopes: vec!["openid".into()],
        expires_at: Utc::now() + expires_in,
        revoked_at: None,
        created_at: Utc::now(),
    }
}

fn refresh_token(clear: &str, user_id: UserId, expires_in: Duration) -> OAuth2RefreshToken {
    OAuth2RefreshToken {
        token_hash: TokenHash::of(clear),
        access_token_hash: Some(TokenHash::of("access-1")),
        client_id: "dashboard".into(),
        user_id,
        session_id: None,
        scopes: vec!["openid".into(), "offline_access".into()],
        expires_at: Utc::now() + expires_in,
        revoked_at: None,
        created_at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_are_created_found_updated_and_deleted() {
    let f = Fixture::new().await;
    let owner = f.user("owner@example.com").await;
    let created = f
        .repo
        .create_oauth2_client(&client("dashboard", Some(owner.id)))
        .await
        .unwrap();
    assert_eq!(created.scopes, ["openid", "email"]);
    f.repo
        .create_oauth2_client(&client("cli", Some(owner.id)))
        .await
        .unwrap();
    assert!(matches!(
        f.repo
            .create_oauth2_client(&client("dashboard", None))
            .await,
        Err(RepoError::Conflict(_))
    ));
    let mut no_secret = client("public", None);
    no_secret.client_secret_hash = None;
    assert!(matches!(
        f.repo.create_oauth2_client(&no_secret).await,
        Err(RepoError::InvalidInput(_))
    ));
    no_secret.is_confidential = false;
    f.repo.create_oauth2_client(&no_secret).await.unwrap();

    assert_eq!(
        f.repo
            .get_oauth2_client_by_client_id("dashboard")
            .await
            .unwrap()
            .id,
        created.id
    );
    assert_eq!(
        f.repo
            .get_oauth2_clients_by_owner(owner.id)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        f.repo.get_oauth2_client_by_client_id("nope").await,
        Err(RepoError::NotFound { .. })
    ));

    let mut changed = created.clone();
    changed.name = "Dashboard v2".into();
    changed
        .redirect_uris
        .push("https://app.example.com/cb2".into());
    let updated = f.repo.update_oauth2_client(&changed).await.unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.redirect_uris.len()),
        ("Dashboard v2", 2)
    );
    assert!(matches!(
        f.repo.update_oauth2_client(&client("ghost", None)).await,
        Err(RepoError::NotFound { .. })
    ));

    let new_secret = TokenHash::of("secret-2");
    f.repo
        .regenerate_client_secret("dashboard", &new_secret)
        .await
        .unwrap();
    let stored = f
        .repo
        .get_oauth2_client_by_client_id("dashboard")
        .await
        .unwrap();
    assert_eq!(stored.client_secret_hash, Some(new_secret));
    assert!(
        f.repo
            .regenerate_client_secret("ghost", &TokenHash::of("x"))
            .await
            .is_err()
    );

    f.repo.delete_oauth2_client("cli").await.unwrap();
    assert!(matches!(
        f.repo.delete_oauth2_client("cli").await,
        Err(RepoError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_codes_are_redeemed_once() {
    let f = Fixture::new().await;
    let ada = f.user("ada@example.com").await;
    f.repo
        .create_oauth2_client(&client("dashboard", None))
        .await
        .unwrap();
    let code = |clear: &str, expires_in: Duration| OAuth2AuthorizationCode {
        code_hash: TokenHash::of(clear),
        client_id: "dashboard".into(),
        user_id: ada.id,
        redirect_uri: "https://app.example.com/callback".into(),
        scopes: vec!["openid".into()],
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        code_challenge_method: Some("S256".into()),
        expires_at: Utc::now() + expires_in,
        used_at: None,
        created_at: Utc::now(),
        session_id: None,
        nonce: Some("n-0S6_WzA2Mj".into()),
        auth_time: Some(Utc::now()),
    };
    f.repo
        .create_authorization_code(&code("code-1", Duration::minutes(10)))
        .await
        .unwrap();
    f.repo
        .create_authorization_code(&code("code-old", Duration::minutes(-1)))
        .await
        .unwrap();

    let found = f
        .repo
        .get_authorization_code(&TokenHash::of("code-1"))
        .await
        .unwrap();
    assert_eq!(found.code_challenge_method.as_deref(), Some("S256"));
    f.repo
        .mark_authorization_code_as_used(&TokenHash::of("code-1"))
        .await
        .unwrap();
    assert!(matches!(
        f.repo
            .mark_authorization_code_as_used(&TokenHash::of("code-1"))
            .await,
        Err(RepoError::Conflict(_))
    ));
    assert!(matches!(
        f.repo
            .get_authorization_code(&TokenHash::of("code-1"))
            .await,
        Err(RepoError::NotFound { .. })
    ));
    // Expired codes are neither returned nor redeemable; unknown ones are not found.
    assert!(
        f.repo
            .get_authorization_code(&TokenHash::of("code-old"))
            .await
            .is_err()
    );
    assert!(matches!(
        f.repo
            .mark_authorization_code_as_used(&TokenHash::of("code-old"))
            .await,
        Err(RepoError::Conflict(_))
    ));
    assert!(matches!(
        f.repo
            .mark_authorization_code_as_used(&TokenHash::of("never"))
            .await,
        Err(RepoError::NotFound { .. })
    ));
    // A code for an unknown client is refused.
    let mut stray = code("code-2", Duration::minutes(5));
    stray.client_id = "ghost".into();
    assert!(matches!(
        f.repo.create_authorization_code(&stray).await,
        Err(RepoError::InvalidInput(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_or_expired_tokens_are_never_returned_as_valid() {
    let f = Fixture::new().await;
    let ada = f.user("ada@example.com").await;
    let bob = f.user("bob@example.com").await;
    f.repo
        .create_oauth2_client(&client("dashboard", None))
        .await
        .unwrap();

    f.repo
        .create_access_token(&access_token("access-1", ada.id, Duration::hours(1)))
        .await
        .unwrap();
    f.repo
        .create_access_token(&access_token("access-2", ada.id, Duration::hours(1)))
        .await
        .unwrap();
    f.repo
        .create_access_token(&access_token("access-3", bob.id, Duration::hours(1)))
        .await
        .unwrap();
    f.repo
        .create_access_token(&access_token("access-old", bob.id, Duration::hours(-1)))
        .await
        .unwrap();
    assert!(matches!(
        f.repo
            .create_access_token(&access_token("access-1", ada.id, Duration::hours(1)))
            .await,
        Err(RepoError::Conflict(_))
    ));

    let valid = f
        .repo
        .get_access_token_by_hash(&TokenHash::of("access-1"))
        .await
        .unwrap();
    assert_eq!(valid.user_id, Some(ada.id));
    assert!(
        f.repo
            .get_access_token_by_hash(&TokenHash::of("access-old"))
            .await
            .is_err(),
        "expired"
    );
    f.repo
        .revoke_access_token(&TokenHash::of("access-1"))
        .await
        .unwrap();
    assert!(
        f.repo
            .get_access_token_by_hash(&TokenHash::of("access-1"))
            .await
            .is_err(),
        "revoked"
    );
    assert!(matches!(
        f.repo.revoke_access_token(&TokenHash::of("nope")).await,
        Err(RepoError::NotFound { .. })
    ));
    assert_eq!(
        f.repo.revoke_access_tokens_by_user(ada.id).await.unwrap(),
        1
    );
    assert!(
        f.repo
            .get_access_token_by_hash(&TokenHash::of("access-2"))
            .await
            .is_err()
    );
    assert!(
        f.repo
            .get_access_token_by_hash(&TokenHash::of("access-3"))
            .await
            .is_ok(),
        "bob's stays"
    );

    f.repo
        .create_refresh_token(&refresh_token("refresh-1", ada.id, Duration::days(30)))
        .await
        .unwrap();
    f.repo
        .create_refresh_token(&refresh_token("refresh-2", ada.id, Duration::days(30)))
        .await
        .unwrap();
    f.repo
        .create_refresh_token(&refresh_token("refresh-old", ada.id, Duration::days(-1)))
        .await
        .unwrap();
    let refresh = f
        .repo
        .get_refresh_token_by_hash(&TokenHash::of("refresh-1"))
        .await
        .unwrap();
    assert_eq!(refresh.access_token_hash, Some(TokenHash::of("access-1")));
    f.repo
        .revoke_refresh_token(&TokenHash::of("refresh-1"))
        .await
        .unwrap();
    assert!(
        f.repo
            .get_refresh_token_by_hash(&TokenHash::of("refresh-1"))
            .await
            .is_err()
    );
    assert!(
        f.repo
            .get_refresh_token_by_hash(&TokenHash::of("refresh-old"))
            .await
            .is_err()
    );
    assert_eq!(
        f.repo.revoke_refresh_tokens_by_user(ada.id).await.unwrap(),
        2,
        "refresh-2 and the expired one"
    );
    assert!(
        f.repo
            .get_refresh_token_by_hash(&TokenHash::of("refresh-2"))
            .await
            .is_err()
    );
    assert!(matches!(
        f.repo.revoke_refresh_token(&TokenHash::of("nope")).await,
        Err(RepoError::NotFound { .. })
    ));

    // Cleanup removes the expired access token and refresh token, nothing else.
    assert_eq!(f.repo.cleanup_expired_oauth2_tokens().await.unwrap(), 2);
    assert_eq!(f.repo.cleanup_expired_oauth2_tokens().await.unwrap(), 0);
    assert!(
        f.repo
            .get_access_token_by_hash(&TokenHash::of("access-3"))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn consents_scopes_and_the_audit_log() {
    let f = Fixture::new().await;
    let ada = f.user("ada@example.com").await;
    f.repo
        .create_oauth2_client(&client("dashboard", None))
        .await
        .unwrap();
    f.repo
        .create_oauth2_client(&client("cli", None))
        .await
        .unwrap();
    let consent = |client_id: &str, scopes: &[&str]| OAuth2UserConsent {
        user_id: ada.id,
        client_id: client_id.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        granted_at: Utc::now(),
        revoked_at: None,
    };
    f.repo
        .create_user_consent(&consent("dashboard", &["openid"]))
        .await
        .unwrap();
    f.repo
        .create_user_consent(&consent("cli", &["openid", "email"]))
        .await
        .unwrap();
    assert_eq!(
        f.repo.get_user_consent(ada.id, "cli").await.unwrap().scopes,
        ["openid", "email"]
    );
    assert_eq!(f.repo.get_user_consents(ada.id).await.unwrap().len(), 2);

    f.repo.revoke_user_consent(ada.id, "cli").await.unwrap();
    assert!(matches!(
        f.repo.get_user_consent(ada.id, "cli").await,
        Err(RepoError::NotFound { .. })
    ));
    assert!(matches!(
        f.repo.revoke_user_consent(ada.id, "cli").await,
        Err(RepoError::NotFound { .. })
    ));
    // Granting again restores it, with the new scopes.
    f.repo
        .create_user_consent(&consent("cli", &["profile"]))
        .await
        .unwrap();
    assert_eq!(
        f.repo.get_user_consent(ada.id, "cli").await.unwrap().scopes,
        ["profile"]
    );
    assert_eq!(f.repo.revoke_all_user_consents(ada.id).await.unwrap(), 2);
    assert!(f.repo.get_user_consents(ada.id).await.unwrap().is_empty());

    let scopes = f.repo.get_all_scopes().await.unwrap();
    let names: Vec<_> = scopes.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "activity:read",
            "activity:write",
            "admin",
            "campaigns:read",
            "campaigns:write",
            "email",
            "offline_access",
            "openid",
            "phone",
            "profile",
            "registrations:bulk",
            "tokens:introspect"
        ]
    );
    assert!(
        scopes
            .iter()
            .find(|s| s.name == "openid")
            .unwrap()
            .is_default
    );

    for i in 0..5 {
        let entry = OAuth2AuditLog {
            id: 0,
            event_type: format!("token.issued.{i}"),
            client_id: Some("dashboard".into()),
            user_id: Some(ada.id),
            ip_address: Some("203.0.113.7".into()),
            user_agent: Some("curl/8".into()),
            success: i % 2 == 0,
            details: json!({ "n": i }),
            created_at: Utc::now(),
        };
        let stored = f.repo.create_oauth2_audit_log(&entry).await.unwrap();
        assert!(stored.id > 0);
        assert_eq!(stored.details, json!({ "n": i }));
    }
    let page: Vec<_> = f
        .repo
        .get_oauth2_audit_logs(2, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.event_type)
        .collect();
    assert_eq!(
        page,
        ["token.issued.3", "token.issued.2"],
        "newest first, after an offset of 1"
    );
    assert!(matches!(
        f.repo.get_oauth2_audit_logs(0, 0).await,
        Err(RepoError::InvalidInput(_))
    ));
}
