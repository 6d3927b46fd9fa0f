//! Apache Kafka clusters of a test's own, for failure tests: KRaft nodes (each broker and
//! controller in one process) on loopback ports, each run by `deploy/local/kafka.sh run` with a
//! data folder of its own, which a test can kill with SIGKILL and start again.
//!
//! Every node has two listeners besides the controller's: `CLIENT`, the one services are given
//! (plaintext, or SASL_SSL for the security tests), and `INTERNAL`, plaintext, for the traffic
//! between brokers and for the test's own administration (creating topics, finding leaders).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use std::collections::HashSet;
use std::net::TcpListener;

use events::KafkaConfig;
use events::rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::process::{Child, Command};

/// What kind of cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// How many nodes; each is a broker and a controller voter.
    pub nodes: usize,
    /// The security protocol of the `CLIENT` listener: `PLAINTEXT` or `SASL_SSL`.
    pub client_protocol: String,
    /// More `server.properties` lines for every node (TLS and SASL settings, say).
    pub extra_properties: Vec<(String, String)>,
    /// More `kafka-storage format` arguments (`--add-scram …` to create SASL users).
    pub format_args: Vec<String>,
    /// Heap of each node's JVM.
    pub heap: String,
}

impl ClusterSpec {
    /// `nodes` plaintext nodes with replication-3 defaults where they fit: internal topics and
    /// new topics get `min(nodes, 3)` replicas and `min.insync.replicas` one less (at least 1).
    pub fn plaintext(nodes: usize) -> Self {
        Self {
            nodes,
            client_protocol: "PLAINTEXT".into(),
            extra_properties: Vec::new(),
            format_args: Vec::new(),
            heap: "-Xmx512m -Xms256m".into(),
        }
    }
}

/// One node's process and folder.
#[derive(Debug)]
struct Node {
    dir: PathBuf,
    client_port: u16,
    internal_port: u16,
    process: Option<Child>,
}

/// A running cluster; stopped (SIGKILL) and its folders removed when dropped.
#[derive(Debug)]
pub struct KafkaCluster {
    dir: PathBuf,
    spec: ClusterSpec,
    nodes: Vec<Node>,
}

/// The repository's root, where `deploy/local/kafka.sh` lives.
fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

fn kafka_script() -> PathBuf {
    repository_root().join("deploy/local/kafka.sh")
}

impl KafkaCluster {
    /// Writes every node's settings, formats their storage with one cluster ID, starts them all
    /// and waits until every broker is registered. Panics with the nodes' logs after two minutes
    /// (a hang guard).
    pub async fn start(spec: ClusterSpec) -> Self {
        let dir = std::env::temp_dir().join(events::testing::unique_name("kafka-cluster"));
        std::fs::create_dir_all(&dir).expect("cluster folder");
        let cluster_id = cluster_id().await;
        let mut taken = HashSet::new();
        let ports: Vec<(u16, u16, u16)> = (0..spec.nodes)
            .map(|_| {
                (
                    cluster_port(&mut taken),
                    cluster_port(&mut taken),
                    cluster_port(&mut taken),
                )
            })
            .collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, (_, _, controller))| format!("{}@127.0.0.1:{controller}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let replicas = spec.nodes.min(3);
        let min_isr = replicas.saturating_sub(1).max(1);
        let mut nodes = Vec::new();
        for (i, (client, internal, controller)) in ports.iter().copied().enumerate() {
            let id = i + 1;
            let node_dir = dir.join(format!("node-{id}"));
            std::fs::create_dir_all(&node_dir).expect("node folder");
            std::fs::write(node_dir.join("cluster-id"), &cluster_id).expect("cluster-id");
            let mut properties = vec![
                ("process.roles".to_owned(), "broker,controller".to_owned()),
                ("node.id".into(), id.to_string()),
                ("controller.quorum.voters".into(), voters.clone()),
                (
                    "listeners".into(),
                    format!(
                        "CLIENT://127.0.0.1:{client},INTERNAL://127.0.0.1:{internal},\
                         CONTROLLER://127.0.0.1:{controller}"
                    ),
                ),
                (
                    "advertised.listeners".into(),
                    format!("CLIENT://127.0.0.1:{client},INTERNAL://127.0.0.1:{internal}"),
                ),
                ("controller.listener.names".into(), "CONTROLLER".into()),
                ("inter.broker.listener.name".into(), "INTERNAL".into()),
                (
                    "listener.security.protocol.map".into(),
                    format!(
                        "CLIENT:{},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
                        spec.client_protocol
                    ),
                ),
                (
                    "log.dirs".into(),
                    node_dir.join("data").display().to_string(),
                ),
                ("auto.create.topics.enable".into(), "false".into()),
                ("default.replication.factor".into(), replicas.to_string()),
                ("min.insync.replicas".into(), min_isr.to_string()),
                (
                    "offsets.topic.replication.factor".into(),
                    replicas.to_string(),
                ),
                ("offsets.topic.num.partitions".into(), "10".into()),
                (
                    "transaction.state.log.replication.factor".into(),
                    replicas.to_string(),
                ),
                ("transaction.state.log.min.isr".into(), min_isr.to_string()),
                (
                    "share.coordinator.state.topic.replication.factor".into(),
                    replicas.to_string(),
                ),
                (
                    "share.coordinator.state.topic.min.isr".into(),
                    min_isr.to_string(),
                ),
                ("group.initial.rebalance.delay.ms".into(), "0".into()),
                ("unclean.leader.election.enable".into(), "false".into()),
            ];
            properties.extend(spec.extra_properties.iter().cloned());
            let text: String = properties
                .iter()
                .map(|(key, value)| format!("{key}={value}\n"))
                .collect();
            std::fs::write(node_dir.join("server.properties"), text).expect("server.properties");
            nodes.push(Node {
                dir: node_dir,
                client_port: client,
                internal_port: internal,
                process: None,
            });
        }
        let mut cluster = Self { dir, spec, nodes };
        for id in 1..=cluster.nodes.len() {
            cluster.start_node(id);
        }
        cluster.wait_for_brokers(cluster.nodes.len()).await;
        cluster
    }

    /// `host:port` of every node's `CLIENT` listener, comma-separated: what services are given
    /// as `KAFKA_BROKERS`.
    pub fn client_brokers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A plaintext client configuration on the `INTERNAL` listeners, for the test's own
    /// administration and producing.
    pub fn admin_config(&self) -> KafkaConfig {
        let brokers = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.internal_port))
            .collect::<Vec<_>>()
            .join(",");
        KafkaConfig::new(brokers, "cluster-test")
    }

    /// Whatever node `id` has logged.
    pub fn logs(&self, id: usize) -> String {
        std::fs::read_to_string(self.node(id).dir.join("kafka.log")).unwrap_or_default()
    }

    fn node(&self, id: usize) -> &Node {
        &self.nodes[id - 1]
    }

    fn start_node(&mut self, id: usize) {
        let heap = self.spec.heap.clone();
        let format_args = self.spec.format_args.join(" ");
        let node = &mut self.nodes[id - 1];
        assert!(node.process.is_none(), "node {id} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("kafka.log"))
            .expect("node log");
        let child = Command::new("bash")
            .arg(kafka_script())
            .arg("run")
            .arg(&node.dir)
            .env("KAFKA_HEAP_OPTS", heap)
            .env("KAFKA_FORMAT_ARGS", format_args)
            // The node dies with this test process, even one killed with SIGKILL.
            .env("KAFKA_STOP_WITH_PID", std::process::id().to_string())
            // A group of its own, so that `kill` reaches the script and its JVM at once.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start a Kafka node");
        node.process = Some(child);
    }

    /// Kills node `id` with SIGKILL, as a crashed or evicted host would stop, and waits for it.
    pub async fn kill(&mut self, id: usize) {
        let node = &mut self.nodes[id - 1];
        let mut child = node.process.take().expect("the node is running");
        kill_group(&child);
        child.wait().await.expect("wait for the node");
    }

    /// Starts node `id` again on its data, and waits until the cluster has every broker back.
    pub async fn restart(&mut self, id: usize) {
        self.start_node(id);
        self.wait_for_brokers(self.nodes.len()).await;
    }

    /// The node leading `partition` of `topic`, as the cluster's metadata says.
    pub fn leader_of(&self, topic: &str, partition: i32) -> usize {
        let leader = self.leader(topic, partition);
        usize::try_from(leader).unwrap_or_else(|_| panic!("{topic}/{partition} has no leader"))
    }

    /// Waits until a node other than `old` leads `partition` of `topic`; that node. Panics after
    /// two minutes (a hang guard).
    pub async fn wait_for_new_leader(&self, topic: &str, partition: i32, old: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let leader = self.leader(topic, partition);
            if let Ok(leader) = usize::try_from(leader)
                && leader != old
            {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "{topic}/{partition} still has leader {leader} two minutes after {old} died"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The broker ID leading `partition` of `topic`; -1 while it has none.
    fn leader(&self, topic: &str, partition: i32) -> i32 {
        let metadata = self.metadata(Some(topic));
        metadata.topics()[0]
            .partitions()
            .iter()
            .find(|p| p.id() == partition)
            .unwrap_or_else(|| panic!("{topic} has no partition {partition}"))
            .leader()
    }

    fn metadata(&self, topic: Option<&str>) -> events::rdkafka::metadata::Metadata {
        let client: BaseConsumer = self
            .admin_config()
            .client_config()
            .create()
            .expect("metadata client");
        client
            .fetch_metadata(topic, Duration::from_secs(20))
            .expect("cluster metadata")
    }

    async fn wait_for_brokers(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let client: BaseConsumer = self
            .admin_config()
            .client_config()
            .create()
            .expect("metadata client");
        loop {
            let registered = client
                .fetch_metadata(None, Duration::from_secs(5))
                .map(|m| m.brokers().len())
                .unwrap_or(0);
            if registered >= count {
                return;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = (1..=self.nodes.len())
                    .map(|id| {
                        let log = self.logs(id);
                        let tail: Vec<&str> = log.lines().rev().take(30).collect();
                        format!(
                            "node {id}:\n{}",
                            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                        )
                    })
                    .collect();
                panic!(
                    "only {registered} of {count} brokers registered after two minutes\n{}",
                    logs.join("\n----\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Some(child) = node.process.as_ref() {
                kill_group(child);
            }
        }
        // Give the processes a moment to let go of their files.
        std::thread::sleep(Duration::from_millis(500));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGKILL to a node's process group: its script and its JVM.
fn kill_group(child: &Child) {
    if let Some(pid) = child.id() {
        // The group's ID is the script's PID (`process_group(0)`).
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
    }
}

/// A loopback port for a node's listener, below Linux's ephemeral range (32768 and up), so
/// that no client socket of this or another test takes it between now and the node's start;
/// one nothing listens on yet and not handed out before.
fn cluster_port(taken: &mut HashSet<u16>) -> u16 {
    loop {
        let random = uuid::Uuid::new_v4().as_u128();
        let port = 20_000 + u16::try_from(random % 12_000).expect("below 12,000");
        if !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
}

/// A new cluster ID from Kafka's own storage tool.
async fn cluster_id() -> String {
    let output = Command::new("bash")
        .arg(kafka_script())
        .arg("cluster-id")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run kafka.sh cluster-id");
    assert!(
        output.status.success(),
        "kafka.sh cluster-id failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("a UTF-8 cluster ID")
        .trim()
        .to_owned()
}
