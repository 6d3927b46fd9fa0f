//! Position recalculation benchmark (issue #7): one campaign of 100,000 participants, a fifth of
//! them with verified referrals. The position-worker's recalculation (one statement under the
//! campaign's advisory lock) beside the same computation done row by row from the application
//! (read every participant, rank in Rust, one UPDATE per changed row, one transaction), in the
//! same run, each starting from positions reset to the signup order. Then a burst: verifications
//! committed for many participants, and one `referral.verified` event each handled afterwards,
//! as a lagging position-worker would: with the worker's skip of events an earlier
//! recalculation covered, beside a full recalculation per event.
//!
//! Run with `make bench`.

#![allow(clippy::print_stdout)] // A benchmark reports on standard output.

use std::time::{Duration, Instant};

use domain::waitlist::{Standing, positions};
use repo::Waitlist;
use repo::testing::TestDatabase;
use repo::waitlist::Recalculation;
use system_tests::CopyClient;
use uuid::Uuid;

const PARTICIPANTS: i64 = 100_000;
const POINTS: i64 = 3;
const RUNS: usize = 3;
/// Verifications in the burst, each with its event.
const BURST: usize = 50;

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
    copy.client()
        .batch_execute("ANALYZE participants")
        .await
        .expect("analyze");

    let waitlist = Waitlist::new(db.database().clone());
    let mut statement = Vec::new();
    let mut row_by_row = Vec::new();
    for _ in 0..RUNS {
        reset(&copy).await;
        let started = Instant::now();
        let outcome = waitlist
            .recalculate_positions(campaign)
            .await
            .expect("recalculate");
        statement.push(started.elapsed());
        let Recalculation::Ranked { changed } = outcome else {
            panic!("a reset campaign is ranked, not {outcome:?}");
        };
        let by_statement = snapshot(&copy).await;

        reset(&copy).await;
        let started = Instant::now();
        let updated = recalculate_row_by_row(&copy, campaign).await;
        row_by_row.push(started.elapsed());
        assert_eq!(changed, updated, "both change the same rows");
        assert_eq!(
            snapshot(&copy).await,
            by_statement,
            "both give the same positions"
        );
    }
    // The positions are right (row by row); record the ranking as the worker would have.
    assert_eq!(
        forget_ranking_and_recalculate(&copy, &waitlist, campaign).await,
        Recalculation::Ranked { changed: 0 }
    );
    // A replay: nothing counted since the last recalculation.
    let started = Instant::now();
    let replayed = waitlist
        .recalculate_positions(campaign)
        .await
        .expect("recalculate");
    let replay = started.elapsed();
    assert_eq!(replayed, Recalculation::UpToDate);
    // The same replay recalculated in full (as before the skip): nothing to write either.
    let started = Instant::now();
    let forced = forget_ranking_and_recalculate(&copy, &waitlist, campaign).await;
    let replay_in_full = started.elapsed();
    assert_eq!(forced, Recalculation::Ranked { changed: 0 });

    // The burst, from the same state both times.
    let before = snapshot(&copy).await;
    verify_burst(&copy, campaign).await;
    let started = Instant::now();
    let mut ranked = 0;
    for _ in 0..BURST {
        let outcome = waitlist
            .recalculate_positions(campaign)
            .await
            .expect("recalculate");
        ranked += usize::from(outcome != Recalculation::UpToDate);
    }
    let burst = started.elapsed();
    assert_eq!(ranked, 1, "the first event covers the burst");
    let after_burst = snapshot(&copy).await;
    assert_ne!(after_burst, before, "the burst moved people");
    copy.client()
        .batch_execute(
            "UPDATE participants SET position = original_position;
             UPDATE participants SET verified_referral_count = verified_referral_count - 1
             WHERE original_position % 2000 = 1;
             DELETE FROM campaign_rankings",
        )
        .await
        .expect("undo the burst");
    forget_ranking_and_recalculate(&copy, &waitlist, campaign).await;
    assert_eq!(
        snapshot(&copy).await,
        before,
        "back to the state before the burst"
    );
    verify_burst(&copy, campaign).await;
    let started = Instant::now();
    for _ in 0..BURST {
        forget_ranking_and_recalculate(&copy, &waitlist, campaign).await;
    }
    let burst_in_full = started.elapsed();
    assert_eq!(
        snapshot(&copy).await,
        after_burst,
        "both end with the same positions"
    );

    let best = |times: &[Duration]| times.iter().min().copied().unwrap_or_default();
    let (s, r) = (best(&statement), best(&row_by_row));
    println!(
        "position recalculation: {PARTICIPANTS} participants, 1 in 5 with verified referrals, best of {RUNS}"
    );
    println!(
        "   one SQL statement under the advisory lock   {:>8.0} ms",
        s.as_secs_f64() * 1e3
    );
    println!(
        "   row by row from the application (baseline)  {:>8.0} ms",
        r.as_secs_f64() * 1e3
    );
    println!("   speed-up: {:.1}x", r.as_secs_f64() / s.as_secs_f64());
    println!("replayed event, nothing to change");
    println!(
        "   skipped: verified total unchanged           {:>8.1} ms",
        replay.as_secs_f64() * 1e3
    );
    println!(
        "   recalculated in full (baseline)             {:>8.1} ms",
        replay_in_full.as_secs_f64() * 1e3
    );
    println!(
        "   speed-up: {:.1}x",
        replay_in_full.as_secs_f64() / replay.as_secs_f64()
    );
    println!("burst: {BURST} verifications committed, then their {BURST} events");
    println!(
        "   first ranks, the rest skip                  {:>8.0} ms",
        burst.as_secs_f64() * 1e3
    );
    println!(
        "   a full recalculation per event (baseline)   {:>8.0} ms",
        burst_in_full.as_secs_f64() * 1e3
    );
    println!(
        "   speed-up: {:.1}x",
        burst_in_full.as_secs_f64() / burst.as_secs_f64()
    );
}

/// One more verified referral for each of `BURST` participants spread over the campaign.
async fn verify_burst(copy: &CopyClient, campaign: Uuid) {
    let verified = copy
        .client()
        .execute(
            "UPDATE participants SET verified_referral_count = verified_referral_count + 1
             WHERE campaign_id = $1::text::uuid AND original_position % 2000 = 1",
            &[&campaign.to_string()],
        )
        .await
        .expect("verify the burst");
    assert_eq!(verified as usize, BURST);
}

/// A recalculation as the worker did before it skipped covered events: the record of the last
/// ranking removed first.
async fn forget_ranking_and_recalculate(
    copy: &CopyClient,
    waitlist: &Waitlist,
    campaign: Uuid,
) -> Recalculation {
    copy.client()
        .batch_execute("DELETE FROM campaign_rankings")
        .await
        .expect("forget the ranking");
    waitlist
        .recalculate_positions(campaign)
        .await
        .expect("recalculate")
}

async fn reset(copy: &CopyClient) {
    for statement in [
        "UPDATE participants SET position = original_position",
        "DELETE FROM campaign_rankings",
        "VACUUM ANALYZE participants",
    ] {
        copy.client()
            .batch_execute(statement)
            .await
            .expect("reset positions");
    }
}

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

/// The baseline: what a worker without set-based SQL would do.
async fn recalculate_row_by_row(copy: &CopyClient, campaign: Uuid) -> usize {
    let client = copy.client();
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&campaign.to_string()],
        )
        .await
        .expect("lock");
    let rows = client
        .query(
            "SELECT p.id::text, p.original_position, p.verified_referral_count, p.position
             FROM participants p WHERE p.campaign_id = $1::text::uuid",
            &[&campaign.to_string()],
        )
        .await
        .expect("read participants");
    let standings: Vec<Standing> = rows
        .iter()
        .map(|row| Standing {
            original_position: row.get(1),
            verified_referrals: i64::from(row.get::<_, i32>(2)),
        })
        .collect();
    let ranked = positions(&standings, POINTS);
    let update = client
        .prepare("UPDATE participants SET position = $1 WHERE id = $2::text::uuid")
        .await
        .expect("prepare");
    let mut updated = 0;
    for (row, position) in rows.iter().zip(ranked) {
        if row.get::<_, i64>(3) != position {
            let id: String = row.get(0);
            client
                .execute(&update, &[&position, &id])
                .await
                .expect("update");
            updated += 1;
        }
    }
    client.batch_execute("COMMIT").await.expect("commit");
    updated
}
