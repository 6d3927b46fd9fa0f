//! What the consumer tests share.

use std::time::Duration;

use events::{Backoff, ConsumerSettings, RetryPolicy};

/// Settings for a test consumer: three attempts with back-offs of milliseconds, commits every
/// 200 ms.
pub(crate) fn settings(topic: &str, group: &str, dlq: &str) -> ConsumerSettings {
    let mut settings = ConsumerSettings::new(group, &[topic], dlq);
    settings.retry = RetryPolicy {
        max_attempts: 3,
        backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(50)),
    };
    settings.commit_interval = Duration::from_millis(200);
    settings
}

/// Waits (at most a minute: a hang guard) until `done` holds.
pub(crate) async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting for {what}");
}
