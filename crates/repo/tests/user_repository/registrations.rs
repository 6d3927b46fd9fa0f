//! Registration outcomes: batches written with their outcome, replays recognised, refusals and
//! transient failures told apart.

use domain::RegistrationStatus;
use repo::{
    PendingRegistration, Refusal, RegistrationOutcome, Registrations, RepoError, UserRepository,
};
use uuid::Uuid;

use crate::common::Fixture;

fn pending(fixture: &Fixture, email: &str) -> PendingRegistration {
    PendingRegistration {
        request_id: Uuid::now_v7(),
        user: fixture.new_user(Some(email), None),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_creates_its_users_and_records_each_outcome() {
    let fixture = Fixture::new().await;
    let registrations = Registrations::new(fixture.db.database().clone());
    fixture.user("taken@example.com").await;
    let batch = vec![
        pending(&fixture, "a@example.com"),
        pending(&fixture, "TAKEN@example.com"),
        pending(&fixture, "b@example.com"),
        pending(&fixture, "a@EXAMPLE.com"),
    ];
    let outcomes = registrations.register(&batch).await.unwrap();
    assert!(matches!(&outcomes[0], RegistrationOutcome::Created(u) if u.id == batch[0].user.id));
    assert!(
        matches!(&outcomes[1], RegistrationOutcome::Refused { code, message }
            if code == "already_registered" && message == "email is already registered"),
        "{:?}",
        outcomes[1]
    );
    assert!(matches!(&outcomes[2], RegistrationOutcome::Created(_)));
    assert!(
        matches!(&outcomes[3], RegistrationOutcome::Refused { message, .. } if message.contains("duplicates row 0")),
        "{:?}",
        outcomes[3]
    );

    let completed = registrations
        .find(batch[0].request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(completed.status, RegistrationStatus::Completed);
    assert_eq!(completed.user_id, Some(batch[0].user.id));
    let failed = registrations
        .find(batch[1].request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, RegistrationStatus::Failed);
    assert_eq!(failed.error_code.as_deref(), Some("already_registered"));
    assert_eq!(failed.user_id, None);
    assert_eq!(registrations.find(Uuid::now_v7()).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_request_creates_nobody_twice_and_is_not_its_own_duplicate() {
    let fixture = Fixture::new().await;
    let registrations = Registrations::new(fixture.db.database().clone());
    let first = pending(&fixture, "once@example.com");
    let refused = pending(&fixture, "once@example.com");
    let outcomes = registrations
        .register(&[first.clone(), refused.clone()])
        .await
        .unwrap();
    assert!(matches!(outcomes[0], RegistrationOutcome::Created(_)));

    // The same messages again (a new user ID, as a new batch would generate), and the first
    // one twice within the batch.
    let mut replay = first.clone();
    replay.user.id = fixture.unknown_id();
    let outcomes = registrations
        .register(&[replay.clone(), refused.clone(), replay])
        .await
        .unwrap();
    assert_eq!(
        outcomes[0],
        RegistrationOutcome::AlreadyCompleted(first.user.id)
    );
    assert!(
        matches!(&outcomes[1], RegistrationOutcome::AlreadyFailed { code, .. } if code == "already_registered"),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[2], outcomes[0]);
    fixture
        .repo
        .get_user_by_id(first.user.id)
        .await
        .expect("the user of the first delivery");
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_stay_processing_until_a_final_outcome_and_finals_are_never_overwritten() {
    let fixture = Fixture::new().await;
    let registrations = Registrations::new(fixture.db.database().clone());
    let request = pending(&fixture, "later@example.com");
    registrations
        .record_retry(request.request_id, 1, "lock timeout")
        .await
        .unwrap();
    let record = registrations
        .find(request.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            record.status,
            record.retry_count,
            record.error_message.as_deref()
        ),
        (RegistrationStatus::Processing, 1, Some("lock timeout"))
    );
    // A processing request is claimed again by the next try.
    let outcomes = registrations
        .register(std::slice::from_ref(&request))
        .await
        .unwrap();
    assert!(matches!(outcomes[0], RegistrationOutcome::Created(_)));
    // A late failure record does not overwrite the completed outcome.
    registrations
        .record_failures(&[Refusal {
            request_id: request.request_id,
            code: "retries_exhausted".into(),
            message: "late".into(),
            retry_count: 3,
        }])
        .await
        .unwrap();
    let record = registrations
        .find(request.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, RegistrationStatus::Completed);

    let invalid = Uuid::now_v7();
    registrations
        .record_failures(&[Refusal {
            request_id: invalid,
            code: "invalid_request".into(),
            message: "phone: is not E.164".into(),
            retry_count: 0,
        }])
        .await
        .unwrap();
    let record = registrations.find(invalid).await.unwrap().unwrap();
    assert_eq!(record.status, RegistrationStatus::Failed);
    assert_eq!(record.error_code.as_deref(), Some("invalid_request"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_timeout_is_transient_and_rolls_the_whole_batch_back() {
    let fixture = Fixture::new().await;
    let registrations = Registrations::new(fixture.db.database().clone());
    fixture
        .sql(
            "CREATE FUNCTION refuse_slow() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.email = 'slow@example.com' THEN
                     RAISE EXCEPTION 'canceling statement due to lock timeout'
                         USING ERRCODE = 'lock_not_available';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_slow BEFORE INSERT ON users
                 FOR EACH ROW EXECUTE FUNCTION refuse_slow();",
        )
        .await;
    let fine = pending(&fixture, "fine@example.com");
    let error = registrations
        .register(&[fine.clone(), pending(&fixture, "slow@example.com")])
        .await
        .unwrap_err();
    assert!(matches!(error, RepoError::Transient(_)), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(
        registrations.find(fine.request_id).await.unwrap(),
        None,
        "rolled back"
    );
}
