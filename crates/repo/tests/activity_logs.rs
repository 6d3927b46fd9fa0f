//! Activity logs on the real PostgreSQL: partitions made and dropped, batches idempotent on the
//! event ID per user whatever the time, reads newest first with cursors that neither skip nor repeat.

use chrono::{DateTime, Duration, NaiveDate, SubsecRound as _, Utc};
use domain::ActivityEvent;
use repo::testing::TestDatabase;
use repo::{ActivityCursor, ActivityLogs, ActivityQuery};

fn event(user: &str, id: &str, activity_type: &str, at: DateTime<Utc>) -> ActivityEvent {
    ActivityEvent {
        user_id: user.into(),
        activity_type: activity_type.into(),
        timestamp: at,
        metadata: serde_json::json!({"ipAddress": "10.0.0.1", "sessionId": "s1"})
            .as_object()
            .cloned()
            .unwrap(),
        event_id: id.into(),
        version: "1.0".into(),
    }
}

fn day(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

fn query(user: &str, limit: usize) -> ActivityQuery {
    ActivityQuery {
        user_id: user.into(),
        from: None,
        to: None,
        activity_type: None,
        limit,
        after: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_are_made_ahead_and_dropped_after_the_retention() {
    let db = TestDatabase::new().await;
    let logs = ActivityLogs::new(db.database().clone());
    // Whole milliseconds: PostgreSQL keeps microseconds, so nanoseconds would not round-trip.
    let now = Utc::now().trunc_subsecs(3);
    let first = day(now - Duration::days(3));
    assert_eq!(logs.ensure_partitions(first, 5).await.unwrap(), 5);
    assert_eq!(
        logs.ensure_partitions(first, 5).await.unwrap(),
        0,
        "idempotent"
    );

    let old = event("u1", "old", "login", now - Duration::days(3));
    let recent = event("u1", "recent", "login", now);
    assert_eq!(logs.insert_batch(&[old, recent]).await.unwrap().len(), 2);

    // Retention of two days: the partition three days back goes, with its rows.
    assert_eq!(
        logs.drop_partitions_before(day(now - Duration::days(2)))
            .await
            .unwrap(),
        1
    );
    let page = logs.list(&query("u1", 10)).await.unwrap();
    let ids: Vec<&str> = page.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["recent"]);

    // A day without a partition is refused, not stored somewhere it cannot be dropped from.
    let too_far = event("u1", "future", "login", now + Duration::days(30));
    assert!(logs.insert_batch(&[too_far]).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_event_is_stored_once() {
    let db = TestDatabase::new().await;
    let logs = ActivityLogs::new(db.database().clone());
    // Whole milliseconds: PostgreSQL keeps microseconds, so nanoseconds would not round-trip.
    let now = Utc::now().trunc_subsecs(3);
    logs.ensure_partitions(day(now), 1).await.unwrap();
    let batch = vec![
        event("u1", "e1", "login", now),
        event("u1", "e2", "logout", now),
        event("u1", "e1", "login", now),
    ];
    let new = logs.insert_batch(&batch).await.unwrap();
    let ids: Vec<&str> = new.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2"], "a repeat within the batch is not new");
    assert!(
        logs.insert_batch(&batch).await.unwrap().is_empty(),
        "the whole batch again"
    );
    assert_eq!(logs.list(&query("u1", 10)).await.unwrap().events.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_event_id_is_stored_once_per_user_whatever_its_time() {
    let db = TestDatabase::new().await;
    let logs = ActivityLogs::new(db.database().clone());
    let now = Utc::now().trunc_subsecs(3);
    logs.ensure_partitions(day(now - Duration::days(1)), 2)
        .await
        .unwrap();
    // The first try, then retries a second later (the gateway stamped a new time), a day
    // earlier (another partition of the table), and with the same time, in separate batches
    // and within one.
    let first = event("u4", "evt_1", "login", now - Duration::seconds(1));
    assert_eq!(logs.insert_batch(&[first]).await.unwrap().len(), 1);
    for retry_at in [now, now - Duration::days(1), now - Duration::seconds(1)] {
        let retry = event("u4", "evt_1", "login", retry_at);
        assert!(
            logs.insert_batch(&[retry]).await.unwrap().is_empty(),
            "a retry at {retry_at} is not new"
        );
    }
    let within = [
        event("u5", "evt_9", "login", now),
        event("u5", "evt_9", "login", now - Duration::days(1)),
    ];
    let new = logs.insert_batch(&within).await.unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].timestamp, now, "the first of the batch stays");
    // Another user's event with the same ID and time is another event.
    let other = event("u6", "evt_1", "login", now - Duration::seconds(1));
    assert_eq!(logs.insert_batch(&[other]).await.unwrap().len(), 1);

    let listed = logs.list(&query("u4", 10)).await.unwrap().events;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].timestamp, now - Duration::seconds(1));
    assert_eq!(logs.list(&query("u5", 10)).await.unwrap().events.len(), 1);

    // The keys go with the partitions their events were in: after the retention the ID is free.
    logs.drop_partitions_before(day(now) + Duration::days(1))
        .await
        .unwrap();
    logs.ensure_partitions(day(now), 1).await.unwrap();
    let again = event("u4", "evt_1", "login", now);
    assert_eq!(logs.insert_batch(&[again]).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_are_newest_first_and_cursors_neither_skip_nor_repeat() {
    let db = TestDatabase::new().await;
    let logs = ActivityLogs::new(db.database().clone());
    // Whole milliseconds: PostgreSQL keeps microseconds, so nanoseconds would not round-trip.
    let now = Utc::now().trunc_subsecs(3);
    logs.ensure_partitions(day(now - Duration::days(1)), 2)
        .await
        .unwrap();
    // 25 events for u1, some sharing a timestamp (ties go by event ID), and noise for u2.
    let mut batch: Vec<ActivityEvent> = (0..25)
        .map(|i| {
            let kind = if i % 5 == 0 {
                "login_failed"
            } else {
                "page_view"
            };
            event(
                "u1",
                &format!("e{i:02}"),
                kind,
                now - Duration::minutes(i / 2),
            )
        })
        .collect();
    batch.push(event("u2", "other", "page_view", now));
    logs.insert_batch(&batch).await.unwrap();

    let mut seen = Vec::new();
    let mut q = query("u1", 7);
    loop {
        let page = logs.list(&q).await.unwrap();
        seen.extend(
            page.events
                .iter()
                .map(|e| (e.timestamp, e.event_id.clone())),
        );
        match page.next {
            Some(next) => {
                let decoded = ActivityCursor::decode(&next.encode()).expect("round trip");
                assert_eq!(decoded, next);
                q.after = Some(decoded);
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 25, "every event once");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first, ties by event ID descending");

    let mut failed = query("u1", 100);
    failed.activity_type = Some("login_failed".into());
    assert_eq!(logs.list(&failed).await.unwrap().events.len(), 5);
    let mut recent = query("u1", 100);
    recent.from = Some(now - Duration::minutes(2));
    assert!(
        logs.list(&recent)
            .await
            .unwrap()
            .events
            .iter()
            .all(|e| e.timestamp >= now - Duration::minutes(2))
    );
    assert!(ActivityCursor::decode("not hex").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn bounds_outside_the_calendar_postgresql_handles_mean_what_they_say() {
    let db = TestDatabase::new().await;
    let logs = ActivityLogs::new(db.database().clone());
    let now = Utc::now().trunc_subsecs(3);
    logs.ensure_partitions(day(now), 1).await.unwrap();
    logs.insert_batch(&[event("u1", "e1", "login", now)])
        .await
        .unwrap();
    let far_past = "-9999-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
    let far_future = "+99999-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
    let count = |from, to| {
        let logs = logs.clone();
        async move {
            let mut q = query("u1", 10);
            (q.from, q.to) = (from, to);
            logs.list(&q).await.unwrap().events.len()
        }
    };
    assert_eq!(
        count(Some(far_past), None).await,
        1,
        "from the far past: everything"
    );
    assert_eq!(
        count(None, Some(far_future)).await,
        1,
        "to the far future: everything"
    );
    assert_eq!(count(Some(far_future), None).await, 0);
    assert_eq!(count(None, Some(far_past)).await, 0);
    let cursor = ActivityCursor {
        occurred_at: far_past,
        event_id: "e".into(),
    };
    assert_eq!(ActivityCursor::decode(&cursor.encode()), None);
}
