use std::sync::{Arc, Mutex};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::AsyncConnection;
use domain::{Email, Identifier, Phone, UserStatus};
use repo::testing::TestDatabase;
use repo::{RepoError, UserRepository};

use crate::common::Fixture;

fn conflict_reason(result: &Result<domain::User, RepoError>) -> String {
    match result {
        Err(RepoError::Conflict(reason)) => reason.clone(),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn id(text: &str) -> Identifier {
    Identifier::parse(text).unwrap()
}

/// Counts the statements a connection sends.
#[derive(Clone, Default)]
struct StatementLog(Arc<Mutex<Vec<String>>>);

impl Instrumentation for StatementLog {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            self.0.lock().unwrap().push(query.to_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_users_takes_a_batch_of_1000_in_one_statement_and_fails_only_the_duplicates() {
    // One pooled connection, so the statements of create_users can be watched on it.
    let fixture = Fixture::from_db(TestDatabase::with_pool_size(1).await);
    let existing = fixture.user("Taken@Example.com").await;
    fixture
        .repo
        .create_users(&[fixture.new_user(None, Some("+15550000001"))])
        .await
        .unwrap()
        .remove(0)
        .unwrap();

    let mut batch: Vec<_> = (0..1000)
        .map(|i| fixture.new_user(Some(&format!("user{i}@example.com")), None))
        .collect();
    batch[7].email = Some(Email::parse("taken@EXAMPLE.com").unwrap()); // a live user's, other case
    batch[10].email = batch[3].email.clone(); // an earlier row of this batch
    batch[20].phone = Some(Phone::parse("+15550000001").unwrap()); // a live user's phone
    batch[30].id = existing.id; // an existing user ID

    let log = StatementLog::default();
    {
        let mut conn = fixture.db.database().connection().await.unwrap();
        conn.set_instrumentation(log.clone());
    }
    let results = fixture.repo.create_users(&batch).await.unwrap();
    let statements: Vec<String> = log.0.lock().unwrap().clone();
    // Everything but the pool's own check of the connection (`SELECT 1`) is the batch's work.
    let inserts: Vec<_> = statements
        .iter()
        .filter(|s| !s.starts_with("SELECT $1 -- binds: [1]"))
        .map(|s| s.chars().take(60).collect::<String>())
        .collect();
    assert_eq!(
        inserts.len(),
        1,
        "one statement for the whole batch: {inserts:#?}"
    );

    assert_eq!(results.len(), 1000);
    assert!(conflict_reason(&results[7]).contains("email is already registered"));
    assert!(conflict_reason(&results[10]).contains("duplicates row 3"));
    assert!(conflict_reason(&results[20]).contains("phone is already registered"));
    assert!(conflict_reason(&results[30]).contains("already exists"));
    let created: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(created.len(), 996);
    assert_eq!(
        created[0].email.as_ref().unwrap().as_str(),
        "user0@example.com"
    );
    assert_eq!(created[0].status, UserStatus::Active);

    // Created rows are really there, with their credentials; failed ones are not.
    let found = fixture
        .repo
        .get_users_by_ids(&created.iter().map(|u| u.id).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(found.len(), 996);
    let with_credential = fixture
        .repo
        .get_user_by_identifier(&id("user999@example.com"))
        .await
        .unwrap();
    assert_eq!(
        with_credential.credential.unwrap().password_hash,
        batch[999].password_hash
    );
    assert!(fixture.repo.get_user_by_id(batch[7].id).await.is_err());
    assert!(fixture.repo.create_users(&[]).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn lookups_by_id_and_identifier() {
    let f = Fixture::new().await;
    let mut new = f.new_user(Some("Ada@Example.com"), Some("+442071838750"));
    new.is_email_verified = true;
    let ada = f
        .repo
        .create_users(&[new])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let bob = f.user("bob@example.com").await;

    let profile = f.repo.get_user_by_id(ada.id).await.unwrap();
    // Stored in canonical form.
    assert_eq!(profile.email.unwrap().as_str(), "ada@example.com");
    assert!(profile.is_email_verified);
    let unknown = f.unknown_id();
    assert!(matches!(
        f.repo.get_user_by_id(unknown).await,
        Err(RepoError::NotFound { entity: "user", .. })
    ));

    // Email look-ups ignore case; phone look-ups are exact.
    for identifier in ["ada@example.COM", "+442071838750"] {
        let found = f
            .repo
            .get_user_by_identifier(&id(identifier))
            .await
            .unwrap();
        assert_eq!(found.user.id, ada.id, "{identifier}");
        assert!(found.credential.is_some());
    }
    assert!(matches!(
        f.repo
            .get_user_by_identifier(&id("nobody@example.com"))
            .await,
        Err(RepoError::NotFound { .. })
    ));
    assert!(
        f.repo
            .identifier_exists(&id("ADA@example.com"))
            .await
            .unwrap()
    );
    assert!(!f.repo.identifier_exists(&id("+15551234567")).await.unwrap());
    assert!(f.repo.user_exists_by_id(bob.id).await.unwrap());
    assert!(!f.repo.user_exists_by_id(unknown).await.unwrap());

    let profiles = f
        .repo
        .get_users_by_ids(&[ada.id, unknown, bob.id])
        .await
        .unwrap();
    assert_eq!(
        profiles.iter().map(|p| p.id).collect::<Vec<_>>(),
        [ada.id, bob.id]
    );
    let both = f
        .repo
        .get_users_by_identifiers(&[
            id("BOB@example.com"),
            id("+442071838750"),
            id("x@example.com"),
        ])
        .await
        .unwrap();
    assert_eq!(
        both.iter().map(|u| u.user.id).collect::<Vec<_>>(),
        [ada.id, bob.id]
    );

    let (user, credentials) = f.repo.get_user_with_credentials(ada.id).await.unwrap();
    assert_eq!(user, ada);
    assert_eq!(credentials.len(), 1);
    assert!(matches!(
        f.repo.get_user_with_credentials(unknown).await,
        Err(RepoError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn email_and_phone_changes_keep_uniqueness() {
    let f = Fixture::new().await;
    let ada = f.user("ada@example.com").await;
    let bob = f.user("bob@example.com").await;
    f.repo
        .update_email_verification_status(ada.id, true)
        .await
        .unwrap();

    f.repo
        .update_email(ada.id, &Email::parse("ada.new@example.com").unwrap())
        .await
        .unwrap();
    let profile = f.repo.get_user_by_id(ada.id).await.unwrap();
    assert_eq!(profile.email.unwrap().as_str(), "ada.new@example.com");
    assert!(!profile.is_email_verified, "a new email is unverified");

    let taken = f
        .repo
        .update_email(ada.id, &Email::parse("BOB@example.com").unwrap())
        .await;
    assert!(matches!(taken, Err(RepoError::Conflict(_))), "{taken:?}");
    let unknown = f
        .repo
        .update_email(f.unknown_id(), &Email::parse("z@example.com").unwrap())
        .await;
    assert!(matches!(unknown, Err(RepoError::NotFound { .. })));

    f.repo
        .update_phone(ada.id, &Phone::parse("+14155550100").unwrap(), true)
        .await
        .unwrap();
    assert_eq!(
        f.repo.get_both_verification_statuses(ada.id).await.unwrap(),
        (false, true)
    );
    let taken = f
        .repo
        .update_phone(bob.id, &Phone::parse("+14155550100").unwrap(), false)
        .await;
    assert!(matches!(taken, Err(RepoError::Conflict(_))), "{taken:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_deleted_users_disappear_free_their_email_and_can_be_restored() {
    let f = Fixture::new().await;
    let ada = f.user("ada@example.com").await;
    let bob = f.user("bob@example.com").await;
    let cy = f.user("cy@example.com").await;

    f.repo.soft_delete_user(ada.id).await.unwrap();
    assert!(matches!(
        f.repo.get_user_by_identifier(&id("ada@example.com")).await,
        Err(RepoError::NotFound { .. })
    ));
    assert!(matches!(
        f.repo.get_user_by_id(ada.id).await,
        Err(RepoError::NotFound { .. })
    ));
    assert!(!f.repo.user_exists_by_id(ada.id).await.unwrap());
    // The row is kept, marked deleted.
    let (kept, _) = f.repo.get_user_with_credentials(ada.id).await.unwrap();
    assert_eq!(kept.status, UserStatus::Deleted);
    assert!(kept.deleted_at.is_some());
    // Deleting again finds no live user.
    assert!(matches!(
        f.repo.soft_delete_user(ada.id).await,
        Err(RepoError::NotFound { .. })
    ));

    f.repo.restore_user(ada.id).await.unwrap();
    assert_eq!(
        f.repo
            .get_user_by_identifier(&id("ada@example.com"))
            .await
            .unwrap()
            .user
            .id,
        ada.id
    );
    assert!(matches!(
        f.repo.restore_user(ada.id).await,
        Err(RepoError::NotFound { .. })
    ));

    // While soft-deleted, the email is free; once taken, restoring is a conflict.
    f.repo.soft_delete_user(ada.id).await.unwrap();
    let newcomer = f.user("ADA@example.com").await;
    assert!(matches!(
        f.repo.restore_user(ada.id).await,
        Err(RepoError::Conflict(_))
    ));
    assert_eq!(
        f.repo
            .get_user_by_identifier(&id("ada@example.com"))
            .await
            .unwrap()
            .user
            .id,
        newcomer.id
    );

    // Batches.
    assert_eq!(
        f.repo
            .soft_delete_users(&[bob.id, cy.id, f.unknown_id()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(f.repo.restore_users(&[bob.id, cy.id]).await.unwrap(), 2);
    f.repo.soft_delete_users(&[bob.id, cy.id]).await.unwrap();
    f.user("cy@example.com").await;
    assert!(matches!(
        f.repo.restore_users(&[bob.id, cy.id]).await,
        Err(RepoError::Conflict(_))
    ));
    assert!(
        !f.repo.user_exists_by_id(bob.id).await.unwrap(),
        "all or nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_deletion_honours_grace_periods_and_batch_sizes() {
    let f = Fixture::new().await;
    let ada = f.user("ada@example.com").await;
    let bob = f.user("bob@example.com").await;
    f.repo.delete_user(ada.id).await.unwrap();
    assert!(
        f.repo.get_user_with_credentials(ada.id).await.is_err(),
        "gone for good"
    );
    assert!(matches!(
        f.repo.delete_user(ada.id).await,
        Err(RepoError::NotFound { .. })
    ));
    assert_eq!(f.repo.delete_users(&[bob.id, ada.id]).await.unwrap(), 1);

    // Soft-deleted 31, 31, 29 days ago, and one still live.
    let users: Vec<_> = [1, 2, 3, 4]
        .iter()
        .map(|i| f.new_user(Some(&format!("u{i}@example.com")), None))
        .collect();
    let ids: Vec<_> = users.iter().map(|u| u.id).collect();
    f.repo.create_users(&users).await.unwrap();
    f.repo.soft_delete_users(&ids[..3]).await.unwrap();
    f.sql(&format!(
        "UPDATE users SET deleted_at = now() - interval '31 days', status_changed_at = now() - interval '31 days' WHERE id IN ({}, {});
         UPDATE users SET deleted_at = now() - interval '29 days', status_changed_at = now() - interval '29 days' WHERE id = {};",
        ids[0], ids[1], ids[2]
    ))
    .await;

    // Batch size 1 takes the oldest one only; the 29-day one is inside the grace period.
    assert_eq!(
        f.repo
            .batch_delete_by_status(UserStatus::Deleted, 1, 30)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        f.repo
            .batch_delete_by_status(UserStatus::Deleted, 100, 30)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        f.repo
            .batch_delete_by_status(UserStatus::Deleted, 100, 30)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        f.repo
            .batch_delete_by_status(UserStatus::Active, 100, 30)
            .await
            .unwrap(),
        0
    );
    assert!(f.repo.get_user_with_credentials(ids[2]).await.is_ok());
    assert!(matches!(
        f.repo
            .batch_delete_by_status(UserStatus::Deleted, 0, 30)
            .await,
        Err(RepoError::InvalidInput(_))
    ));

    assert_eq!(f.repo.permanently_delete_users(30).await.unwrap(), 0);
    assert_eq!(f.repo.permanently_delete_users(28).await.unwrap(), 1);
    assert!(f.repo.get_user_with_credentials(ids[2]).await.is_err());
    assert!(
        f.repo.user_exists_by_id(ids[3]).await.unwrap(),
        "live users are never touched"
    );
}
