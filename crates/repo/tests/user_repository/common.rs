use std::sync::atomic::{AtomicU16, Ordering};

use diesel_async::SimpleAsyncConnection;
use domain::{Email, NewUser, NodeId, Phone, SnowflakeGenerator, User, UserId};
use repo::testing::TestDatabase;
use repo::{PgUserRepository, UserRepository};

/// A repository on a fresh schema, and an ID generator.
pub(crate) struct Fixture {
    pub(crate) db: TestDatabase,
    pub(crate) repo: PgUserRepository,
    ids: SnowflakeGenerator,
}

static NEXT_NODE: AtomicU16 = AtomicU16::new(0);

impl Fixture {
    pub(crate) async fn new() -> Self {
        Self::from_db(TestDatabase::new().await)
    }

    pub(crate) fn from_db(db: TestDatabase) -> Self {
        let repo = PgUserRepository::new(db.database().clone());
        let node = NEXT_NODE.fetch_add(1, Ordering::Relaxed) % 1024;
        Self {
            db,
            repo,
            ids: SnowflakeGenerator::new(NodeId::new(node).unwrap()),
        }
    }

    pub(crate) fn new_user(&self, email: Option<&str>, phone: Option<&str>) -> NewUser {
        NewUser {
            id: self.ids.generate(),
            email: email.map(|e| Email::parse(e).unwrap()),
            phone: phone.map(|p| Phone::parse(p).unwrap()),
            is_email_verified: false,
            is_phone_verified: false,
            consent: true,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        }
    }

    /// Creates one user and returns it.
    pub(crate) async fn user(&self, email: &str) -> User {
        let mut results = self
            .repo
            .create_users(&[self.new_user(Some(email), None)])
            .await
            .unwrap();
        results.remove(0).unwrap()
    }

    /// Runs SQL on the test schema, to set up states the contract cannot reach (old rows).
    pub(crate) async fn sql(&self, statements: &str) {
        let mut conn = self.db.database().connection().await.unwrap();
        conn.batch_execute(statements).await.unwrap();
    }

    pub(crate) fn unknown_id(&self) -> UserId {
        self.ids.generate()
    }
}
