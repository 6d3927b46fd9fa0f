//! Seed 004's optional analytics stream: rules over the stored events whose matches are
//! published to `user-activity-analytics`.
//!
//! - `repeated_failed_logins`: `ANALYTICS_FAILED_LOGINS` failed logins from one IP within
//!   `ANALYTICS_WINDOW`;
//! - `logins_from_many_ips`: logins of one user from `ANALYTICS_LOGIN_IPS` distinct IPs within
//!   the window.
//!
//! Each rule fires once when a batch's new events take the count across the threshold. Counts
//! come from PostgreSQL, so they hold across processor replicas and restarts; replayed events are
//! not new, so they fire nothing. An alert that cannot be published is logged and counted, not
//! retried: the stream is a derived, best-effort signal.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use domain::ActivityEvent;
use events::{Delivery, OutgoingRecord, Producer};
use repo::{ActivityLogs, RepoError};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnalyticsRules {
    pub(crate) topic: String,
    pub(crate) window: Duration,
    pub(crate) failed_logins: i64,
    pub(crate) login_ips: i64,
}

#[derive(Debug)]
pub(crate) struct Analytics {
    pub(crate) rules: AnalyticsRules,
    pub(crate) logs: ActivityLogs,
    pub(crate) producer: Producer,
}

fn ip(event: &ActivityEvent) -> Option<&str> {
    event.metadata.get("ipAddress").and_then(Value::as_str)
}

impl Analytics {
    /// Evaluates the rules for a batch's newly stored events; publishes what fires.
    pub(crate) async fn evaluate(&self, new_events: &[ActivityEvent]) -> Result<(), RepoError> {
        let window = chrono::Duration::from_std(self.rules.window).unwrap_or(chrono::Duration::MAX);
        let since = Utc::now() - window;
        let mut alerts = Vec::new();

        let mut failed_by_ip: BTreeMap<&str, Vec<&ActivityEvent>> = BTreeMap::new();
        for event in new_events
            .iter()
            .filter(|e| e.activity_type == "login_failed")
        {
            if let Some(ip) = ip(event) {
                failed_by_ip.entry(ip).or_default().push(event);
            }
        }
        for (ip, events) in failed_by_ip {
            let total = self.logs.failed_logins_from_ip(ip, since).await?;
            let before = total - events.len() as i64;
            if total >= self.rules.failed_logins && before < self.rules.failed_logins {
                let users: BTreeSet<&str> = events.iter().map(|e| e.user_id.as_str()).collect();
                alerts.push((
                    ip.to_owned(),
                    json!({
                        "rule": "repeated_failed_logins",
                        "ipAddress": ip,
                        "count": total,
                        "userIds": users,
                    }),
                ));
            }
        }

        let mut logins_by_user: BTreeMap<&str, Vec<&ActivityEvent>> = BTreeMap::new();
        for event in new_events
            .iter()
            .filter(|e| e.activity_type == "login" && ip(e).is_some())
        {
            logins_by_user
                .entry(event.user_id.as_str())
                .or_default()
                .push(event);
        }
        for (user_id, events) in logins_by_user {
            let new_ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
            let total = self.logs.login_ips_of_user(user_id, since, &[]).await?;
            let before = self
                .logs
                .login_ips_of_user(user_id, since, &new_ids)
                .await?;
            if total >= self.rules.login_ips && before < self.rules.login_ips {
                alerts.push((
                    user_id.to_owned(),
                    json!({
                        "rule": "logins_from_many_ips",
                        "userId": user_id,
                        "count": total,
                    }),
                ));
            }
        }

        for (key, mut alert) in alerts {
            alert["windowSeconds"] = json!(self.rules.window.as_secs());
            alert["detectedAt"] = json!(Utc::now().to_rfc3339());
            alert["version"] = json!("1.0");
            self.publish(&key, &alert).await;
        }
        Ok(())
    }

    async fn publish(&self, key: &str, alert: &Value) {
        let rule = alert["rule"].as_str().unwrap_or("unknown").to_owned();
        let record = OutgoingRecord {
            topic: self.rules.topic.clone(),
            partition: None,
            key: Some(key.as_bytes().to_vec()),
            payload: serde_json::to_vec(alert).expect("alerts serialize"),
            headers: Default::default(),
        };
        match self.producer.send(record).await {
            Ok(Delivery::Published { .. }) => {
                metrics::counter!("activity_analytics_alerts_total", "rule" => rule.clone())
                    .increment(1);
                tracing::info!(rule, key, "analytics rule fired");
            }
            other => {
                metrics::counter!("activity_analytics_alerts_lost_total", "rule" => rule.clone())
                    .increment(1);
                tracing::warn!(rule, key, outcome = ?other.map(|_| ()), "analytics alert not published");
            }
        }
    }
}
