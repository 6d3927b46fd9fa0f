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

/// What the stack holds after `sent` accepted registrations: every one on the topic once (the
/// gateway's producer is idempotent), completed, one user each, no dead letter.
async fn assert_all_completed_once(stack: &RegistrationStack, what: &str, sent: usize) {
    let sent = i64::try_from(sent).expect("a count");
    let on_topic = message_count(&stack.topic);
    let completed = stack
        .count("SELECT count(*) AS n FROM registration_requests WHERE status = 'completed'")
        .await;
    let requests = stack
        .count("SELECT count(*) AS n FROM registration_requests")
        .await;
    let users = stack.count("SELECT count(*) AS n FROM users").await;
    let dead_letters = message_count(&stack.retry_topic) + message_count(&stack.parking_topic);
    eprintln!(
        "{what}: sent {sent}, on the topic {on_topic}, completed {completed}, users {users}, \
         duplicates {}, dead letters {dead_letters}",
        on_topic - sent
    );
    assert_eq!(
        on_topic, sent,
        "{what}: each registration on the topic once"
    );
    assert_eq!(
        completed, sent,
        "{what}: every accepted registration completed"
    );
    assert_eq!(requests, sent, "{what}: no request unknown to the client");
    assert_eq!(users, sent, "{what}: one user per registration");
    assert_eq!(dead_letters, 0, "{what}: nothing dead-lettered");
}

/// Three-node clusters are heavy for two cores: the tests of this file take turns.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A three-node cluster, the registration topics on it (replication 3, `min.insync.replicas`
/// 2), and the gateway and batcher using it. `kill` is called while registrations stream in,
/// 3 s after they started; it kills a node and returns it. The node is restarted 10 s later;
/// the stream goes on 3 s more.
async fn registrations_while(
    what: &str,
    kill: impl AsyncFnOnce(&mut KafkaCluster, &RegistrationStack) -> usize,
) {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = KafkaCluster::start(ClusterSpec::plaintext(3)).await;
    let stack = RegistrationStack::on(&cluster.admin_config(), 3).await;
    let brokers = cluster.client_brokers();
    let env = [("KAFKA_BROKERS", brokers.as_str())];
    let (gateway, api) = stack.start_gateway(&env).await;
    let batcher = stack.start_batcher(&env).await;

    let load = Load::start(&api, "user");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = kill(&mut cluster, &stack).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    cluster.restart(victim).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = load.stop().await;
    stack
        .wait_until_finished(sent.len() as i64, PATIENCE, &[&gateway, &batcher])
        .await;
    assert_all_completed_once(&stack, &format!("{what} (node {victim})"), sent.len()).await;
    let distinct: std::collections::HashSet<&String> = sent.iter().collect();
    assert_eq!(
        distinct.len(),
        sent.len(),
        "one request ID per registration"
    );
    batcher.terminate().await;
    gateway.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_complete_once_while_a_broker_is_killed_and_restarted() {
    registrations_while("a broker killed and restarted", async |cluster, stack| {
        // A node that leads no partition 0 of the registration topic (it may still lead
        // others, coordinate the group or be the active controller).
        let leader = cluster.leader_of(&stack.topic.name, 0);
        let victim = (1..=3).find(|&id| id != leader).expect("another node");
        cluster.kill(victim).await;
        victim
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_complete_once_while_a_partition_leader_is_killed_and_restarted() {
    registrations_while(
        "the leader of user.registration/0 killed and restarted",
        async |cluster, stack| {
            let leader = cluster.leader_of(&stack.topic.name, 0);
            cluster.kill(leader).await;
            // The controller fences the node once its broker session (9 s) has passed without a
            // heartbeat, and moves leadership to an in-sync follower.
            let new_leader = cluster
                .wait_for_new_leader(&stack.topic.name, 0, leader)
                .await;
            eprintln!("partition 0: leader {leader} killed, {new_leader} took over");
            leader
        },
    )
    .await;
}
