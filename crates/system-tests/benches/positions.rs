//! Waitlist position benchmark (rows 10 and 11 of the summary table): one campaign of 100,000
//! participants, a fifth of them with 1 to 7 verified referrals.
//!
//! - Full ranking (`Waitlist::rank_all_positions`): from positions reset to the signup order,
//!   median of `RUNS` runs; its positions must equal those `domain::waitlist::positions`
//!   computes in the application.
//! - One verified referral: a participant's count goes up by one, as a verification does, and
//!   the position-worker's update (`Waitlist::recalculate_positions`) moves it; median over
//!   `MOVES` participants spread over the campaign, beside the full ranking. The positions after
//!   all the moves must again equal the application's.
//! - A replayed event (nothing to move), for the record.
//!
//! Run with `make bench`.

#![allow(clippy::print_stdout)] // A benchmark reports on standard output.

use std::time::{Duration, Instant};

use domain::waitlist::{Standing, positions};
use repo::Waitlist;
use repo::testing::TestDatabase;
use repo::waitlist::Recalculation;
use system_tests::CopyClient;
use system_tests::bench::{self, median};
use uuid::Uuid;

const PARTICIPANTS: i64 = 100_000;
const POINTS: i64 = 3;
const RUNS: usize = 5;
/// Participants given one more verified referral, one at a time.
const MOVES: i64 = 25;

#[tokio::main]
async fn main() {
    let db = TestDatabase::new().await;
    let copy = CopyClient::connect(&db).await;
    let campaign = Uuid::now_v7();
    copy.client()
        .batch_execute(&format!(
            "INSERT INTO campaigns (id, name, status, points_per_referral, participant_count, webhook_secret)
             VALUES ('{campaign}', 'bench', 'active', {POINTS}, {PARTICIPANTS}, 'x')"
        ))
        .await
        .expect("campaign");
    let mut rows = String::new();
    for n in 1..=PARTICIPANTS {
        // Every fifth participant has 1 to 7 verified referrals, spread by a fixed pattern.
        let verified = if n % 5 == 0 { (n * 7919) % 7 + 1 } else { 0 };
        rows.push_str(&format!(
            "{}\t{campaign}\tp{n}@example.com\tp{n}@example.com\tp{n}@example.com\tC{n}\t{n}\t{n}\t{verified}\n",
            Uuid::now_v7()
        ));
    }
    let copied = copy
        .copy(
            "COPY participants (id, campaign_id, email, email_lower, email_canonical, referral_code,
                 original_position, position, verified_referral_count) FROM STDIN",
            rows,
        )
        .await;
    assert_eq!(copied as i64, PARTICIPANTS);
    let waitlist = Waitlist::new(db.database().clone());

    let mut full = Vec::new();
    for _ in 0..RUNS {
        reset(&copy).await;
        let started = Instant::now();
        let changed = waitlist
            .rank_all_positions(campaign)
            .await
            .expect("rank in full");
        full.push(started.elapsed());
        assert!(changed > 0, "a reset campaign changes");
    }
    assert_eq!(
        snapshot(&copy).await,
        expected(&copy).await,
        "the full ranking gives the application's positions"
    );

    let started = Instant::now();
    let replayed = waitlist
        .recalculate_positions(campaign)
        .await
        .expect("recalculate");
    let replay = started.elapsed();
    assert_eq!(replayed, Recalculation::UpToDate);

    let mut moves = Vec::new();
    let mut shifted = 0;
    for i in 0..MOVES {
        // Spread over the campaign, late signups (long moves) included.
        let original = 1 + i * (PARTICIPANTS - 1) / (MOVES - 1);
        verify_one(&copy, campaign, original).await;
        let started = Instant::now();
        let outcome = waitlist
            .recalculate_positions(campaign)
            .await
            .expect("recalculate");
        moves.push(started.elapsed());
        let Recalculation::Moved {
            participants: 1,
            changed,
        } = outcome
        else {
            panic!("one verification moves one participant, not {outcome:?}");
        };
        shifted += changed;
    }
    assert_eq!(
        snapshot(&copy).await,
        expected(&copy).await,
        "the moves give the application's positions"
    );

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let full = median(&full).expect("runs");
    let one = median(&moves).expect("moves");
    println!(
        "waitlist positions: {PARTICIPANTS} participants, 1 in 5 with verified referrals, {POINTS} points each"
    );
    println!(
        "   full ranking, median of {RUNS}            {:>9.1} ms",
        ms(full)
    );
    println!(
        "   one verified referral, median of {MOVES}     {:>9.2} ms  ({shifted} rows written by the {MOVES} moves)",
        ms(one)
    );
    println!(
        "   a replayed event, nothing to move        {:>9.2} ms",
        ms(replay)
    );
    let speedup = full.as_secs_f64() / one.as_secs_f64();
    bench::record(&bench::spec(10).row(
        format!("{:.2} ms", ms(one)),
        format!("{:.0} ms (full ranking)", ms(full)),
        Some(speedup),
        ms(one) <= 20.0 && speedup >= 50.0,
        format!(
            "median of {MOVES} single verifications spread over the campaign, each moved by the position-worker's update; the ratio is the speed-up over a full ranking"
        ),
    ));
    bench::record(&bench::spec(11).row(
        format!("{:.0} ms", ms(full)),
        "—".into(),
        None,
        ms(full) <= 300.0,
        format!("from positions reset to the signup order, median of {RUNS} runs"),
    ));
}

/// One more verified referral for the participant who signed up `original`-th, as a
/// verification writes it.
async fn verify_one(copy: &CopyClient, campaign: Uuid, original: i64) {
    let verified = copy
        .client()
        .execute(
            "UPDATE participants SET verified_referral_count = verified_referral_count + 1
             WHERE campaign_id = $1::text::uuid AND original_position = $2",
            &[&campaign.to_string(), &original],
        )
        .await
        .expect("verify one");
    assert_eq!(verified, 1);
}

async fn reset(copy: &CopyClient) {
    for statement in [
        "UPDATE participants SET position = original_position, ranked_referral_count = 0",
        "VACUUM ANALYZE participants",
    ] {
        copy.client()
            .batch_execute(statement)
            .await
            .expect("reset positions");
    }
}

/// `(original position, position)` of every participant, in signup order.
async fn snapshot(copy: &CopyClient) -> Vec<(i64, i64)> {
    copy.client()
        .query(
            "SELECT original_position, position FROM participants ORDER BY original_position",
            &[],
        )
        .await
        .expect("positions")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The positions the application computes from the stored counts, as `snapshot` lists them.
async fn expected(copy: &CopyClient) -> Vec<(i64, i64)> {
    let rows = copy
        .client()
        .query(
            "SELECT original_position, verified_referral_count FROM participants
             ORDER BY original_position",
            &[],
        )
        .await
        .expect("counts");
    let standings: Vec<Standing> = rows
        .iter()
        .map(|row| Standing {
            original_position: row.get(0),
            verified_referrals: i64::from(row.get::<_, i32>(1)),
        })
        .collect();
    standings
        .iter()
        .map(|s| s.original_position)
        .zip(positions(&standings, POINTS))
        .collect()
}
