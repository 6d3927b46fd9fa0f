use std::time::Duration;

use repo::RepoError;
use repo::node_lease::NodeLease;

use crate::common::Fixture;

#[tokio::test(flavor = "multi_thread")]
async fn replicas_lease_distinct_node_ids_and_dead_ones_free_theirs() {
    let f = Fixture::new().await;
    let db = f.db.database();
    let ttl = Duration::from_secs(30);

    // Concurrent start-up of several replicas: all different.
    let holders: Vec<String> = (0..8).map(|i| format!("replica-{i}")).collect();
    let leases =
        futures::future::join_all(holders.iter().map(|h| NodeLease::acquire(db, h, ttl))).await;
    let mut ids: Vec<u16> = leases
        .iter()
        .map(|l| l.as_ref().unwrap().node_id().get())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8, "node IDs must be unique: {ids:?}");

    // A clean shutdown frees the ID at once.
    let mut leases: Vec<_> = leases.into_iter().map(Result::unwrap).collect();
    let released = leases.remove(0);
    let freed = released.node_id();
    released.release().await.unwrap();
    let next = NodeLease::acquire(db, "replica-new", ttl).await.unwrap();
    assert_eq!(next.node_id(), freed);

    // A replica that died stops renewing; once its lease expires, another takes the ID, and the
    // dead one (should it come back) learns that its lease is gone.
    let dying = &leases[0];
    f.sql(&format!("UPDATE snowflake_node_leases SET expires_at = now() - interval '1 second' WHERE node_id = {}", dying.node_id()))
        .await;
    let taker = NodeLease::acquire(db, "replica-taker", ttl).await.unwrap();
    assert_eq!(taker.node_id(), dying.node_id());
    assert!(matches!(dying.renew().await, Err(RepoError::Conflict(_))));
    taker.renew().await.unwrap();
}
