//! Positions on the real PostgreSQL: after any sequence of verifications the stored positions
//! follow the formula, whether participants were moved one by one or the campaign was ranked in
//! full, and an update finds nothing to do exactly when every verification is covered.

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
async fn verifications_move_their_participants_and_nothing_else() {
    let db = TestDatabase::new().await;
    let waitlist = Waitlist::new(db.database().clone());
    let id = campaign(&db).await;
    let other = campaign(&db).await;

    // Nothing verified: the original positions are right.
    assert_eq!(
        waitlist.recalculate_positions(id).await.unwrap(),
        Recalculation::UpToDate
    );

    // Five verifications of three participants wait: three moves.
    for original in [12, 12, 12, 7, 3] {
        verify(&db, id, original).await;
    }
    let outcome = waitlist.recalculate_positions(id).await.unwrap();
    let (stored, expected) = stored_and_expected(&db, id).await;
    assert_eq!(stored, expected);
    assert!(
        matches!(outcome, Recalculation::Moved { participants: 3, changed } if changed > 3),
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

    // One more verification: one participant moves, the ones it passes shift, right again.
    verify(&db, id, 9).await;
    assert!(matches!(
        waitlist.recalculate_positions(id).await.unwrap(),
        Recalculation::Moved {
            participants: 1,
            ..
        }
    ));
    let (stored, expected) = stored_and_expected(&db, id).await;
    assert_eq!(stored, expected);
    let (stored, expected) = stored_and_expected(&db, other).await;
    assert_ne!(stored, expected, "the other campaign is not touched");
    assert!(matches!(
        waitlist.recalculate_positions(other).await.unwrap(),
        Recalculation::Moved { .. }
    ));
    let (stored, expected) = stored_and_expected(&db, other).await;
    assert_eq!(stored, expected);
}

/// A small deterministic generator, so a failure can be replayed from its seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread")]
async fn any_sequence_of_verifications_ends_in_the_formulas_positions() {
    let db = TestDatabase::new().await;
    let waitlist = Waitlist::new(db.database().clone());
    let id = campaign(&db).await;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    // Rounds of 1 to 4 verifications (moves), and now and then more than the move limit at
    // once (a full ranking), on a campaign small enough for many ties at the score floor of 1.
    for round in 0..60 {
        let verifications = if round % 15 == 14 {
            repo::waitlist::MOVE_LIMIT as u64 + 5
        } else {
            1 + next(&mut state) % 4
        };
        for _ in 0..verifications {
            let original = 1 + (next(&mut state) % PARTICIPANTS as u64) as i64;
            verify(&db, id, original).await;
        }
        let outcome = waitlist.recalculate_positions(id).await.unwrap();
        let (stored, expected) = stored_and_expected(&db, id).await;
        assert_eq!(stored, expected, "round {round}: {outcome:?}");
        assert_eq!(
            waitlist.recalculate_positions(id).await.unwrap(),
            Recalculation::UpToDate,
            "round {round}: a second run finds nothing to move"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn more_waiting_than_the_move_limit_ranks_the_campaign_in_full() {
    let db = TestDatabase::new().await;
    let waitlist = Waitlist::new(db.database().clone());
    let id = campaign(&db).await;
    // Every participant once, and then some twice: more than the limit wait only if the
    // campaign is big enough, so add participants first.
    execute(
        &db,
        &format!(
            "INSERT INTO participants (id, campaign_id, email, email_lower, email_canonical,
                                       referral_code, original_position, position)
             SELECT gen_random_uuid(), '{id}', 'q' || n || '@example.com', 'q' || n || '@example.com',
                    'q' || n || '@example.com', 'D' || n, n, n
             FROM generate_series({}, 100) AS n",
            PARTICIPANTS + 1
        ),
    )
    .await;
    for original in 1..=(repo::waitlist::MOVE_LIMIT as i64 + 1) {
        verify(&db, id, original * 3).await;
    }
    assert!(matches!(
        waitlist.recalculate_positions(id).await.unwrap(),
        Recalculation::Ranked { .. }
    ));
    let (stored, expected) = stored_and_expected(&db, id).await;
    assert_eq!(stored, expected);

    // Positions edited by hand: a full ranking puts them right, whatever waits.
    execute(
        &db,
        &format!("UPDATE participants SET position = 101 - position WHERE campaign_id = '{id}'"),
    )
    .await;
    waitlist.rank_all_positions(id).await.unwrap();
    let (stored, expected) = stored_and_expected(&db, id).await;
    assert_eq!(stored, expected);
}
