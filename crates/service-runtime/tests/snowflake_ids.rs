//! Node IDs at start-up: fixed from SNOWFLAKE_NODE_ID, or leased, released on stop, and a lost
//! lease stops the service; an unreachable database only delays the lease or withholds IDs
//! until it is back.

use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use repo::testing::TestDatabase;
use repo::{Database, DatabaseConfig};
use service_runtime::snowflake_ids::SnowflakeIds;
use service_runtime::testing::ChaosProxy;
use service_runtime::{CancellationToken, Env};

async fn lease_rows(db: &TestDatabase) -> i64 {
    use diesel_async::RunQueryDsl;
    let mut conn = db.database().connection().await.unwrap();
    diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "count(*) FROM snowflake_node_leases",
    ))
    .get_result(&mut conn)
    .await
    .unwrap()
}

/// A pool on the test schema through a chaos proxy, with short timeouts.
async fn through_a_proxy(db: &TestDatabase) -> (ChaosProxy, Database) {
    let proxy = ChaosProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let mut config = DatabaseConfig::new(
        repo::testing::test_database_url().replace("127.0.0.1:5432", &proxy.addr.to_string()),
        "svc",
    );
    config.search_path = Some(db.schema().to_owned());
    config.connect_timeout = Duration::from_millis(300);
    config.pool_wait_timeout = Duration::from_millis(300);
    (proxy, Database::connect(&config).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_node_id_takes_no_lease() {
    let db = TestDatabase::new().await;
    let env = Env::from_pairs([("SNOWFLAKE_NODE_ID", "42")]);
    let ids = SnowflakeIds::start(&env, db.database(), "svc", CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(ids.node_id().get(), 42);
    assert_eq!(
        ids.generator()
            .generate()
            .expect("confirmed")
            .node_id()
            .get(),
        42
    );
    assert_eq!(lease_rows(&db).await, 0);

    let bad = Env::from_pairs([("SNOWFLAKE_NODE_ID", "4096")]);
    let error = SnowflakeIds::start(&bad, db.database(), "svc", CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("SNOWFLAKE_NODE_ID"),
        "{error:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_lease_different_ids_and_release_them_on_stop() {
    let db = TestDatabase::new().await;
    let env = Env::default();
    let a = SnowflakeIds::start(&env, db.database(), "svc-a", CancellationToken::new())
        .await
        .unwrap();
    let b = SnowflakeIds::start(&env, db.database(), "svc-b", CancellationToken::new())
        .await
        .unwrap();
    assert_ne!(a.node_id(), b.node_id());
    assert_eq!(lease_rows(&db).await, 2);
    a.stop().await;
    b.stop().await;
    assert_eq!(lease_rows(&db).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_taken_over_stops_the_service() {
    let db = TestDatabase::new().await;
    let env = Env::from_pairs([("SNOWFLAKE_LEASE_TTL", "600ms")]);
    let lost = CancellationToken::new();
    let ids = SnowflakeIds::start(&env, db.database(), "svc", lost.clone())
        .await
        .unwrap();
    // Another process takes the node ID (as if this one had stalled past its TTL).
    let mut conn = db.database().connection().await.unwrap();
    conn.batch_execute("UPDATE snowflake_node_leases SET holder = 'someone-else'")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), lost.cancelled())
        .await
        .expect("the service is told to stop");
    ids.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_are_withheld_while_the_lease_cannot_be_renewed_and_resume_after() {
    let db = TestDatabase::new().await;
    let (proxy, through_proxy) = through_a_proxy(&db).await;
    let env = Env::from_pairs([("SNOWFLAKE_LEASE_TTL", "900ms")]);
    let lost = CancellationToken::new();
    let ids = SnowflakeIds::start(&env, &through_proxy, "svc", lost.clone())
        .await
        .unwrap();
    let generator = ids.generator();
    assert!(generator.generate().is_some());

    proxy.cut();
    let withheld = async {
        while generator.generate().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), withheld)
        .await
        .expect("IDs are withheld once a TTL passes without renewal");
    assert!(
        !lost.is_cancelled(),
        "an unreachable database is not a lost lease"
    );

    proxy.restore();
    let resumed = async {
        while generator.generate().is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), resumed)
        .await
        .expect("IDs resume once the lease is renewed");
    assert!(!lost.is_cancelled());
    ids.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_unreachable_at_start_delays_the_lease_instead_of_failing() {
    let db = TestDatabase::new().await;
    let (proxy, through_proxy) = through_a_proxy(&db).await;
    proxy.cut();
    let restore = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.restore();
    };
    let env = Env::from_pairs::<&str, &str>([]);
    let (started, ()) = tokio::join!(
        SnowflakeIds::start(&env, &through_proxy, "svc", CancellationToken::new()),
        restore
    );
    let ids = started.expect("the lease is taken once the database is back");
    assert!(ids.generator().generate().is_some());
    assert_eq!(lease_rows(&db).await, 1);
    ids.stop().await;
}
