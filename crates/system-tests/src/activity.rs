//! The activity-log pipeline's test world (issue #6).

use std::time::{Duration, Instant};

use chrono::Utc;
use events::headers::header;
use events::rdkafka::message::OwnedHeaders;
use events::rdkafka::producer::{FutureProducer, FutureRecord};
use events::testing::{TestTopic, test_kafka_config, unique_name};
use repo::testing::TestDatabase;
use serde_json::{Value, json};
use service_runtime::testing::ServiceProcess;

use crate::{count, owned, spawn};

/// The activity-log world for one test or benchmark: a schema, the three topics, a group.
pub struct ActivityStack {
    pub db: TestDatabase,
    pub topic: TestTopic,
    pub dlq: TestTopic,
    pub analytics: TestTopic,
    pub group: String,
    producer: FutureProducer,
}

impl std::fmt::Debug for ActivityStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityStack")
            .field("schema", &self.db.schema())
            .field("topic", &self.topic.name)
            .finish_non_exhaustive()
    }
}

impl ActivityStack {
    pub async fn new() -> Self {
        Self {
            db: TestDatabase::new().await,
            topic: TestTopic::create("user-activity-logs", 3).await,
            dlq: TestTopic::create("user-activity-logs-dlq", 1).await,
            analytics: TestTopic::create("user-activity-analytics", 1).await,
            group: unique_name("user-activity-processor"),
            producer: test_kafka_config()
                .producer_client_config()
                .create()
                .expect("producer"),
        }
    }

    pub async fn start_processor(&self) -> ServiceProcess {
        self.start_processor_with(&[]).await
    }

    pub async fn start_processor_with(&self, extra: &[(&str, &str)]) -> ServiceProcess {
        let mut env = owned(&[
            ("DATABASE_SCHEMA", self.db.schema()),
            ("KAFKA_TOPIC", &self.topic.name),
            ("KAFKA_CONSUMER_GROUP", &self.group),
            ("ACTIVITY_DLQ_TOPIC", &self.dlq.name),
            ("ANALYTICS_TOPIC", &self.analytics.name),
        ]);
        env.extend(owned(extra));
        let mut processor = spawn("activity-log-processor", &env);
        processor.wait_ready().await;
        processor
    }

    /// Produces values keyed by `userId`, with seed 004's headers.
    pub async fn produce(&self, values: &[Value]) {
        let sends = values.iter().map(|value| {
            let key = value["userId"].as_str().unwrap_or("none").to_owned();
            let payload = serde_json::to_vec(value).expect("JSON");
            async move {
                let sent_at = Utc::now().to_rfc3339();
                let headers = OwnedHeaders::new()
                    .insert(header("source", "api"))
                    .insert(header("timestamp", &sent_at));
                self.producer
                    .send(
                        FutureRecord::to(&self.topic.name)
                            .key(&key)
                            .payload(&payload)
                            .headers(headers),
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("produce");
            }
        });
        futures::future::join_all(sends).await;
    }

    /// Produces any bytes under `key`, without headers.
    pub async fn produce_raw(&self, key: &str, payload: &[u8]) {
        self.producer
            .send(
                FutureRecord::to(&self.topic.name).key(key).payload(payload),
                Duration::from_secs(30),
            )
            .await
            .expect("produce");
    }

    pub async fn stored(&self) -> i64 {
        count(&self.db, "SELECT count(*) AS n FROM activity_logs").await
    }

    /// Waits until `n` rows are stored; panics after `patience` without progress.
    pub async fn wait_stored(&self, n: i64, processor: &ServiceProcess) {
        let (mut last, mut since) = (-1, Instant::now());
        loop {
            let stored = self.stored().await;
            if stored >= n {
                return;
            }
            if stored != last {
                (last, since) = (stored, Instant::now());
            }
            assert!(
                since.elapsed() < Duration::from_secs(120),
                "only {stored} of {n} stored\n{}",
                processor.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub fn activity(user: &str, event_id: &str, activity_type: &str) -> Value {
    json!({
        "userId": user,
        "activityType": activity_type,
        "timestamp": Utc::now().to_rfc3339(),
        "metadata": {"ipAddress": "192.168.1.1", "userAgent": "Mozilla/5.0", "sessionId": "sess_abc123"},
        "eventId": event_id,
        "version": "1.0"
    })
}
