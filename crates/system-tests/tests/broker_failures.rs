//! Registrations while Apache Kafka loses brokers: a cluster of three KRaft nodes of the test's
//! own (`KafkaCluster`), the registration topics with replication 3 and `min.insync.replicas`
//! 2, and a continuous stream of registrations through the real gateway and batcher while a
//! node is killed with SIGKILL and later restarted, first any node, then the leader of a
//! partition of `user.registration`. Every accepted registration must end `completed` exactly
//! once, no user may be created twice, and nothing may be dead-lettered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use events::testing::message_count;
use serde_json::{Value, json};
use system_tests::{ClusterSpec, KafkaCluster, RegistrationStack};
use tokio::task::JoinSet;

const PATIENCE: Duration = Duration::from_secs(180);
/// HTTP clients posting at once.
const CLIENTS: usize = 6;

/// A registration's request ID and how long the gateway took to accept it, or why it refused.
type Outcome = Result<(String, Duration), String>;

/// Clients posting `register-async` in a loop until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    clients: JoinSet<Vec<Outcome>>,
}

impl Load {
    fn start(api: &str, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = JoinSet::new();
        for client in 0..CLIENTS {
            let (stop, api, prefix) = (stop.clone(), api.to_owned(), prefix.to_owned());
            clients.spawn(async move {
                let http = reqwest::Client::new();
                let mut outcomes = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let email = format!("{prefix}-{client}-{i}@example.com");
                    let started = std::time::Instant::now();
                    let answer = http
                        .post(format!("{api}/api/v1/auth/register-async"))
                        .json(&json!({"email": email, "password": "password123", "consent": true}))
                        // Far beyond the gateway's own delivery timeout: a hang guard.
                        .timeout(Duration::from_secs(120))
                        .send()
                        .await;
                    outcomes.push(match answer {
                        Ok(response) if response.status() == 202 => {
                            let body: Value = response.json().await.expect("JSON");
                            let id = body["request_id"].as_str().expect("request_id");
                            Ok((id.to_owned(), started.elapsed()))
                        }
                        Ok(response) => Err(format!(
                            "{email}: {} {}",
                            response.status(),
                            response.text().await.unwrap_or_default()
                        )),
                        Err(error) => Err(format!("{email}: {error}")),
                    });
                    // A steady stream, leaving the two cores to the brokers as well.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                outcomes
            });
        }
        Self { stop, clients }
    }

    /// Stops the clients; the request IDs of the accepted registrations. Panics if any
    /// registration was refused: with one broker of three down, the cluster must take writes.
    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        let outcomes: Vec<Outcome> = self
            .clients
            .join_all()
            .await
            .into_iter()
            .flatten()
            .collect();
        let refused: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
        assert!(
            refused.is_empty(),
            "{} of {} registrations refused, e.g. {:?}",
            refused.len(),
            outcomes.len(),
            &refused[..refused.len().min(5)]
        );
        let (ids, mut took): (Vec<String>, Vec<Duration>) =
            outcomes.into_iter().map(Result::unwrap).unzip();
        took.sort();
        eprintln!(
            "{} registrations accepted; time to 202: median {:?}, slowest {:?}",
            ids.len(),
            took.get(took.len() / 2).copied().unwrap_or_default(),
            took.last().copied().unwrap_or_default()
        );
        ids
    }
}

/// What the stack holds after `sent` accepted registrations: every one completed, once.
async fn assert_all_completed_once(stack: &RegistrationStack, phase: &str, sent: usize) {
    let sent = i64::try_from(sent).expect("a count");
    let completed = stack
        .count("SELECT count(*) AS n FROM registration_requests WHERE status = 'completed'")
        .await;
    let requests = stack
        .count("SELECT count(*) AS n FROM registration_requests")
        .await;
    let users = stack.count("SELECT count(*) AS n FROM users").await;
    let distinct = stack
        .count("SELECT count(DISTINCT lower(email)) AS n FROM users")
        .await;
    let dead_letters = message_count(&stack.retry_topic) + message_count(&stack.parking_topic);
    eprintln!(
        "{phase}: sent {sent} since the start, completed {completed}, users {users}, duplicates {}, dead letters {dead_letters}",
        users - distinct
    );
    assert_eq!(
        completed, sent,
        "{phase}: every accepted registration completed"
    );
    assert_eq!(requests, sent, "{phase}: no request unknown to the client");
    assert_eq!(users, sent, "{phase}: one user per registration");
    assert_eq!(distinct, users, "{phase}: no user created twice");
    assert_eq!(dead_letters, 0, "{phase}: nothing dead-lettered");
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_complete_once_while_brokers_are_killed_and_restarted() {
    let mut cluster = KafkaCluster::start(ClusterSpec::plaintext(3)).await;
    let stack = RegistrationStack::on(&cluster.admin_config(), 3).await;
    let brokers = cluster.client_brokers();
    let env = [("KAFKA_BROKERS", brokers.as_str())];
    let (gateway, api) = stack.start_gateway(&env).await;
    let batcher = stack.start_batcher(&env).await;
    let services = [&gateway, &batcher];
    let mut sent = Vec::new();

    // 1. A node that leads no partition 0 of the registration topic (it may still lead others,
    //    coordinate the group or be the active controller).
    let load = Load::start(&api, "first");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader = cluster.leader_of(&stack.topic.name, 0);
    let victim = (1..=3).find(|&id| id != leader).expect("another node");
    cluster.kill(victim).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    cluster.restart(victim).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    sent.extend(load.stop().await);
    stack
        .wait_until_finished(sent.len() as i64, PATIENCE, &services)
        .await;
    assert_all_completed_once(
        &stack,
        &format!("node {victim} killed and restarted"),
        sent.len(),
    )
    .await;
    cluster.wait_fully_replicated(&stack.topic.name).await;

    // 2. The leader of partition 0 of the registration topic, while it takes writes.
    let load = Load::start(&api, "second");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader = cluster.leader_of(&stack.topic.name, 0);
    cluster.kill(leader).await;
    // The controller fences the node once its broker session (9 s) has passed without a
    // heartbeat, and moves leadership to an in-sync follower.
    let new_leader = cluster
        .wait_for_new_leader(&stack.topic.name, 0, leader)
        .await;
    eprintln!("partition 0: leader {leader} killed, {new_leader} took over");
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.restart(leader).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    sent.extend(load.stop().await);
    stack
        .wait_until_finished(sent.len() as i64, PATIENCE, &services)
        .await;
    assert_all_completed_once(
        &stack,
        &format!("partition leader {leader} killed and restarted"),
        sent.len(),
    )
    .await;

    let distinct: std::collections::HashSet<&String> = sent.iter().collect();
    assert_eq!(
        distinct.len(),
        sent.len(),
        "one request ID per registration"
    );
    batcher.terminate().await;
    gateway.terminate().await;
}
