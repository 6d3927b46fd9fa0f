use repo::{RepoError, UserRepository};

use crate::common::Fixture;

#[tokio::test(flavor = "multi_thread")]
async fn password_changes_keep_a_history_and_lift_invalidation() {
    let f = Fixture::new().await;
    let ada = f.user("ada@example.com").await;
    let original = f.repo.get_user_with_credentials(ada.id).await.unwrap().1[0]
        .password_hash
        .clone();

    f.repo.invalidate_all_credentials(ada.id).await.unwrap();
    let (_, credentials) = f.repo.get_user_with_credentials(ada.id).await.unwrap();
    assert!(credentials[0].invalidated_at.is_some());

    f.repo.update_password(ada.id, "hash-2").await.unwrap();
    f.repo.update_password(ada.id, "hash-3").await.unwrap();
    let (_, credentials) = f.repo.get_user_with_credentials(ada.id).await.unwrap();
    assert_eq!(credentials[0].password_hash, "hash-3");
    assert!(
        credentials[0].invalidated_at.is_none(),
        "a new password lifts the invalidation"
    );

    let history = f.repo.get_credential_history(ada.id, 10).await.unwrap();
    let hashes: Vec<_> = history.iter().map(|h| h.password_hash.as_str()).collect();
    assert_eq!(hashes, ["hash-2", original.as_str()], "newest first");
    assert_eq!(
        f.repo
            .get_credential_history(ada.id, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        f.repo.get_credential_history(ada.id, 0).await,
        Err(RepoError::InvalidInput(_))
    ));

    assert!(matches!(
        f.repo.update_password(f.unknown_id(), "h").await,
        Err(RepoError::NotFound { .. })
    ));
    assert!(matches!(
        f.repo.update_password(ada.id, "").await,
        Err(RepoError::InvalidInput(_))
    ));
    assert!(matches!(
        f.repo.invalidate_all_credentials(f.unknown_id()).await,
        Err(RepoError::NotFound { .. })
    ));

    assert!(!f.repo.get_user_with_credentials(ada.id).await.unwrap().1[0].is_verified);
    f.repo.mark_credential_as_verified(ada.id).await.unwrap();
    assert!(f.repo.get_user_with_credentials(ada.id).await.unwrap().1[0].is_verified);
    assert!(matches!(
        f.repo.mark_credential_as_verified(f.unknown_id()).await,
        Err(RepoError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn verification_flags_one_at_a_time_and_in_batches() {
    let f = Fixture::new().await;
    let ada = f.user("ada@example.com").await;
    let bob = f.user("bob@example.com").await;
    let unknown = f.unknown_id();

    assert!(!f.repo.get_email_verification_status(ada.id).await.unwrap());
    assert!(!f.repo.get_phone_verification_status(ada.id).await.unwrap());
    f.repo
        .update_email_verification_status(ada.id, true)
        .await
        .unwrap();
    f.repo
        .update_phone_verification_status(bob.id, true)
        .await
        .unwrap();
    assert!(f.repo.get_email_verification_status(ada.id).await.unwrap());
    assert!(f.repo.get_phone_verification_status(bob.id).await.unwrap());
    assert_eq!(
        f.repo.get_both_verification_statuses(ada.id).await.unwrap(),
        (true, false)
    );

    f.repo
        .update_both_verification_statuses(ada.id, false, true)
        .await
        .unwrap();
    assert_eq!(
        f.repo.get_both_verification_statuses(ada.id).await.unwrap(),
        (false, true)
    );

    assert_eq!(
        f.repo
            .update_email_verification_statuses(&[ada.id, bob.id, unknown], true)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        f.repo
            .update_phone_verification_statuses(&[ada.id, bob.id], false)
            .await
            .unwrap(),
        2
    );
    let statuses = f
        .repo
        .get_verification_statuses(&[bob.id, ada.id, unknown])
        .await
        .unwrap();
    assert_eq!(statuses.len(), 2);
    assert!(
        statuses
            .iter()
            .all(|s| s.email_verified && !s.phone_verified)
    );

    for result in [
        f.repo.update_email_verification_status(unknown, true).await,
        f.repo.update_phone_verification_status(unknown, true).await,
        f.repo
            .update_both_verification_statuses(unknown, true, true)
            .await,
    ] {
        assert!(
            matches!(result, Err(RepoError::NotFound { .. })),
            "{result:?}"
        );
    }
    assert!(matches!(
        f.repo.get_both_verification_statuses(unknown).await,
        Err(RepoError::NotFound { .. })
    ));
    // Soft-deleted users are not updated.
    f.repo.soft_delete_user(bob.id).await.unwrap();
    assert_eq!(
        f.repo
            .update_email_verification_statuses(&[bob.id], false)
            .await
            .unwrap(),
        0
    );
}
