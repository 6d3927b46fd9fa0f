//! `system.alert` events (seed 002) about a consumer that stops making progress, published to
//! `system-events` for whoever watches the system: one when the problem starts, one with
//! `resolved: true` when it ends.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use events::envelope::SystemAlert;
use events::{ConsumerHealth, EventBuilder, Producer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Looks at `health` every `every` until `shutdown`, publishing an alert at each change.
pub(crate) async fn watch(
    health: ConsumerHealth,
    producer: Producer,
    service: &'static str,
    every: Duration,
    shutdown: CancellationToken,
) {
    let builder = EventBuilder::new(service);
    // The alert in force: its type and ID (the resolution repeats the ID).
    let mut open: Option<(&'static str, String)> = None;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let alert = match (health.problem(), &open) {
            (Some(problem), None) => {
                let (alert_type, severity) = if health.dlq_limit_reached() {
                    ("dlq_limit_reached", "critical")
                } else {
                    ("consumer_stalled", "error")
                };
                let alert_id = Uuid::new_v4().to_string();
                open = Some((alert_type, alert_id.clone()));
                alert(
                    alert_id, alert_type, severity, service, &health, problem, false,
                )
            }
            (None, Some((alert_type, alert_id))) => {
                let resolved = alert(
                    alert_id.clone(),
                    alert_type,
                    "info",
                    service,
                    &health,
                    "the consumer makes progress again".to_owned(),
                    true,
                );
                open = None;
                resolved
            }
            _ => continue,
        };
        let event = builder.build(alert);
        match producer.deliver_event(&event).await {
            Ok(_) => tracing::warn!(
                alert_id = %event.id,
                group = health.group_id(),
                "system alert published"
            ),
            Err(error) => tracing::error!(%error, "system alert not published"),
        }
    }
}

fn alert(
    alert_id: String,
    alert_type: &str,
    severity: &str,
    service: &str,
    health: &ConsumerHealth,
    message: String,
    resolved: bool,
) -> SystemAlert {
    SystemAlert {
        alert_id,
        alert_type: alert_type.to_owned(),
        service: service.to_owned(),
        component: format!("consumer {}", health.group_id()),
        message,
        severity: severity.to_owned(),
        alert_time: Utc::now(),
        metadata: BTreeMap::from([(
            "group_id".to_owned(),
            serde_json::Value::String(health.group_id().to_owned()),
        )]),
        resolved,
    }
}
