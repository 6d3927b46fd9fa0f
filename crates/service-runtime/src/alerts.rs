//! `system.alert` events about a consumer that stops making progress, published to
//! `system-events` for whoever watches the system: one when the problem starts, one with
//! `resolved: true` when it ends.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use events::envelope::SystemAlert;
use events::{ConsumerHealth, EventBuilder, Producer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Looks at `health` every `every` until `shutdown`, publishing an alert at each change. An
/// alert the broker did not take is tried again at the next look, so the raise is never lost
/// (and a resolution never names an alert nobody saw); a stall that becomes the dead-letter
/// limit resolves the first alert and raises the second.
pub(crate) async fn watch(
    health: ConsumerHealth,
    producer: Producer,
    service: &'static str,
    every: Duration,
    shutdown: CancellationToken,
) {
    let builder = EventBuilder::new(service);
    // The alert in force, as published: its type and ID (the resolution repeats the ID).
    let mut open: Option<(&'static str, String)> = None;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = health.problem().map(|problem| {
            if health.dlq_limit_reached() {
                ("dlq_limit_reached", "critical", problem)
            } else {
                ("consumer_stalled", "error", problem)
            }
        });
        // First the alert in force, if it no longer holds.
        if let Some((alert_type, alert_id)) = &open
            && now.as_ref().is_none_or(|(kind, ..)| kind != alert_type)
        {
            let resolved = alert(
                alert_id.clone(),
                alert_type,
                "info",
                service,
                &health,
                "the consumer makes progress again".to_owned(),
                true,
            );
            if !publish(&producer, &builder, resolved, &health).await {
                continue;
            }
            open = None;
        }
        // Then the problem now, if it is new.
        if let (Some((alert_type, severity, problem)), None) = (now, &open) {
            let alert_id = Uuid::new_v4().to_string();
            let raised = alert(
                alert_id.clone(),
                alert_type,
                severity,
                service,
                &health,
                problem,
                false,
            );
            if publish(&producer, &builder, raised, &health).await {
                open = Some((alert_type, alert_id));
            }
        }
    }
}

/// Whether the broker took the alert.
async fn publish(
    producer: &Producer,
    builder: &EventBuilder,
    alert: SystemAlert,
    health: &ConsumerHealth,
) -> bool {
    let resolved = alert.resolved;
    let event = builder.build(alert);
    match producer.deliver_event(&event).await {
        Ok(_) => {
            tracing::warn!(
                group = health.group_id(),
                resolved,
                "system alert published"
            );
            true
        }
        Err(error) => {
            tracing::error!(%error, "system alert not published; trying again");
            false
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
