//! Position recalculation on the real PostgreSQL: the stored positions follow the formula, and
//! a recalculation is skipped exactly when no referral has counted since the last one.

use diesel::sql_query;
use diesel_async::RunQueryDsl;
use domain::waitlist::{Standing, positions};
use repo::Waitlist;
use repo::testing::TestDatabase;
use repo::waitlist::Recalculation;
use uuid::Uuid;

const POINTS: i64 = 2;
const PARTICIPANTS: i64 = 12;

async fn execute(db: &TestDatabase, statement: &str) {
    let mut conn = db.database().connection().await.unwrap();
    sql_query(statement).execute(&mut conn).await.unwrap();
}

/// A campaign with participants in signup order, nobody verified yet.
async fn campaign(db: &TestDatabase) -> Uuid {
    let id = Uuid::now_v7();
    execute(
        db,
        &format!(
            "INSERT INTO campaigns (id, name, status, points_per_referral, participant_count, webhook_secret)
             VALUES ('{id}', 'c', 'active', {POINTS}, {PARTICIPANTS}, 'x')"
        ),
    )
    .await;
    execute(
        db,
        &format!(
            "INSERT INTO participants (id, campaign_id, email, email_lower, email_canonical,
                                       referral_code, original_position, position)
             SELECT gen_random_uuid(), '{id}', 'p' || n || '@example.com', 'p' || n || '@example.com',
                    'p' || n || '@example.com', 'C' || n, n, n
             FROM generate_series(1, {PARTICIPANTS}) AS n"
        ),
    )
    .await;
    id
}

/// One more verified referral for the participant at `original` signup position.
async fn verify(db: &TestDatabase, campaign: Uuid, original: i64) {
    execute(
        db,
        &format!(
            "UPDATE participants SET verified_referral_count = verified_referral_count + 1
             WHERE campaign_id = '{campaign}' AND original_position = {original}"
        ),
    )
    .await;
}

/// Stored positions and what the formula says, by signup order.
async fn stored_and_expected(db: &TestDatabase, campaign: Uuid) -> (Vec<i64>, Vec<i64>) {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        position: i64,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        verified_referral_count: i32,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        original_position: i64,
    }
    let mut conn = db.database().connection().await.unwrap();
    let rows: Vec<Row> = sql_query(format!(
        "SELECT position, verified_referral_count, original_position FROM participants
         WHERE campaign_id = '{campaign}' ORDER BY original_position"
    ))
    .load(&mut conn)
    .await
    .unwrap();
    let standings: Vec<Standing> = rows
        .iter()
        .map(|row| Standing {
            original_position: row.original_position,
            verified_referrals: i64::from(row.verified_referral_count),
        })
        .collect();
    (
        rows.iter().map(|row| row.position).collect(),
        positions(&standings, POINTS),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn recalculations_follow_the_formula_and_skip_only_what_is_covered() {
    let db = TestDatabase::new().await;
    let waitlist = Waitlist::new(db.database().clone());
    let id = campaign(&db).await;
    let other = campaign(&db).await;

    // Nothing verified: the original positions are right.
    assert_eq!(
        waitlist.recalculate_positions(id).await.unwrap(),
        Recalculation::UpToDate
    );

    for original in [12, 12, 12, 7, 3] {
        verify(&db, id, original).await;
    }
    let outcome = waitlist.recalculate_positions(id).await.unwrap();
    let (stored, expected) = stored_and_expected(&db, id).await;
    assert_eq!(stored, expected);
    assert!(
        matches!(outcome, Recalculation::Ranked { changed } if changed > 0),
        "{outcome:?}"
    );
    // Scores: #3 → 1, #7 → 5, #12 → 6, the rest their signup order; ties go by signup order.
    assert_eq!(stored[..8], [1, 3, 2, 4, 5, 7, 6, 9]);
    assert_eq!(stored[11], 8);

    // The same event again, or one of the same burst: covered.
    assert_eq!(
        waitlist.recalculate_positions(id).await.unwrap(),
        Recalculation::UpToDate
    );
    // Another campaign's verification does not count for this one.
    verify(&db, other, 5).await;
    assert_eq!(
        waitlist.recalculate_positions(id).await.unwrap(),
        Recalculation::UpToDate
    );

    // One more verification: ranked again, right again.
    verify(&db, id, 9).await;
    assert!(matches!(
        waitlist.recalculate_positions(id).await.unwrap(),
        Recalculation::Ranked { .. }
    ));
    let (stored, expected) = stored_and_expected(&db, id).await;
    assert_eq!(stored, expected);
    let (stored, expected) = stored_and_expected(&db, other).await;
    assert_ne!(stored, expected, "the other campaign is not touched");
    assert!(matches!(
        waitlist.recalculate_positions(other).await.unwrap(),
        Recalculation::Ranked { .. }
    ));
    let (stored, expected) = stored_and_expected(&db, other).await;
    assert_eq!(stored, expected);
}
