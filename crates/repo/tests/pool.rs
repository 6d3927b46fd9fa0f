//! The pool really reaches PostgreSQL: queries go through deadpool and diesel-async, each
//! connection gets the session settings, and tests are isolated in their own schemas.

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use repo::testing::TestDatabase;

diesel::table! {
    greetings (id) {
        id -> Int4,
        text -> Text,
    }
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

async fn setting(conn: &mut diesel_async::AsyncPgConnection, name: &str) -> String {
    diesel::sql_query("SELECT current_setting($1) AS value")
        .bind::<Text, _>(name)
        .get_result::<Setting>(conn)
        .await
        .unwrap()
        .value
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_run_through_the_pool_in_the_test_schema() {
    let test_db = TestDatabase::new().await;
    let mut conn = test_db.database().connection().await.unwrap();

    conn.batch_execute("CREATE TABLE greetings (id SERIAL PRIMARY KEY, text TEXT NOT NULL)")
        .await
        .unwrap();
    diesel::insert_into(greetings::table)
        .values(&[greetings::text.eq("hello"), greetings::text.eq("world")])
        .execute(&mut conn)
        .await
        .unwrap();
    let texts: Vec<String> = greetings::table
        .select(greetings::text)
        .order(greetings::id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(texts, ["hello", "world"]);

    // The table landed in this test's schema, not in `public`.
    let schema: String = diesel::select(diesel::dsl::sql::<Text>("current_schema()"))
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(schema, test_db.schema());

    // Every pooled connection carries the session settings.
    assert_eq!(setting(&mut conn, "application_name").await, "tests");
    assert_eq!(setting(&mut conn, "statement_timeout").await, "30s");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_applied_once_and_recorded() {
    let test_db = TestDatabase::new().await;
    // A second run finds nothing left to apply.
    let applied = repo::migrations::run_pending(test_db.database())
        .await
        .unwrap();
    assert!(
        applied.is_empty(),
        "already migrated, yet applied {applied:?}"
    );

    let mut conn = test_db.database().connection().await.unwrap();
    let recorded: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "count(*) FROM __diesel_schema_migrations",
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().join("up.sql").exists())
        .count();
    assert!(on_disk > 0);
    assert_eq!(recorded as usize, on_disk);
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_reports_an_unreachable_database_as_unavailable() {
    let mut config = repo::DatabaseConfig::new("postgres://nobody@127.0.0.1:1/none", "tests");
    config.connect_timeout = std::time::Duration::from_secs(2);
    let database = repo::Database::connect(&config).unwrap();
    let error = database.ping().await.unwrap_err();
    assert!(error.is_retryable(), "{error} should be retryable");
}
