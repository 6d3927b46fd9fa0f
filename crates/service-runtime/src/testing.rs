//! Runs a service binary the way Kubernetes does, for the services' own tests: start it with
//! its environment, wait for `/readyz`, and stop it with SIGTERM.

use std::net::{SocketAddr, TcpListener};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// The `OAUTH2_KEY_SECRET` of gateways started by tests (random-looking, 40 bytes).
pub const TEST_OAUTH2_KEY_SECRET: &str = "c7a1e94f02b8d6350e7f1a9c4b2d8e6f03a5c7e9";

/// The `VERIFICATION_SECRET` of services started by tests (random-looking, 40 bytes).
pub const TEST_VERIFICATION_SECRET: &str = "5b0e8f2a7c1d9e3b6a4f0c8d2e7b1a9f3c5d8e0a";

/// Variables every service needs, pointing at the test database and the local broker.
pub fn base_env() -> Vec<(String, String)> {
    vec![
        ("DATABASE_URL".into(), repo::testing::test_database_url()),
        (
            "KAFKA_BROKERS".into(),
            events::testing::test_kafka_config().brokers.join(","),
        ),
        // The gateway and the email-worker must share it.
        (
            "VERIFICATION_SECRET".into(),
            TEST_VERIFICATION_SECRET.into(),
        ),
        // The gateway's OAuth2 signing keys are sealed under it.
        ("OAUTH2_KEY_SECRET".into(), TEST_OAUTH2_KEY_SECRET.into()),
        // Emails of workers without SMTP_URL go to a scratch folder, not the source tree.
        (
            "EMAIL_OUTBOX_DIR".into(),
            std::env::temp_dir()
                .join("signup-test-email-outbox")
                .to_string_lossy()
                .into_owned(),
        ),
        // Text messages too.
        (
            "SMS_OUTBOX_DIR".into(),
            std::env::temp_dir()
                .join("signup-test-sms-outbox")
                .to_string_lossy()
                .into_owned(),
        ),
        ("LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "info".into()),
    ]
}

/// The path of another workspace binary, built beside the running test (`cargo test
/// --workspace`, as `make test` runs it, builds every service binary before any test runs).
pub fn workspace_binary(name: &str) -> String {
    let test_exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let binary = test_exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the test runs from target/<profile>/deps")
        .join(name);
    assert!(
        binary.exists(),
        "{} is not built; run the tests with `cargo test --workspace` (make test)",
        binary.display()
    );
    binary.to_string_lossy().into_owned()
}

/// A free TCP port on 127.0.0.1, for a service to listen on.
pub fn free_local_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address")
}

/// A service process started by a test.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    pub ops_addr: SocketAddr,
    logs: Arc<Mutex<String>>,
    http: reqwest::Client,
}

/// How a service process ended.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    /// From SIGTERM to exit.
    pub took: Duration,
    pub logs: String,
}

impl ServiceProcess {
    /// Starts `binary` with `base_env`, `OPS_ADDR` on a free port, and `extra_env` on top.
    pub fn spawn(binary: &str, extra_env: &[(&str, &str)]) -> Self {
        let ops_addr = free_local_addr();
        let mut command = Command::new(binary);
        command
            .envs(base_env())
            .env("OPS_ADDR", ops_addr.to_string())
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let logs = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().expect("piped stdout"), logs.clone());
        collect(child.stderr.take().expect("piped stderr"), logs.clone());
        Self {
            child,
            ops_addr,
            logs,
            http: reqwest::Client::new(),
        }
    }

    /// The process ID, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Everything the process has written so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").clone()
    }

    /// GETs `path` from the operations server; `None` while nothing listens there yet (a
    /// process just spawned, on a busy machine).
    pub async fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let response = self
            .http
            .get(format!("http://{}{path}", self.ops_addr))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// GETs `path` from the operations server: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        self.get_url(&format!("http://{}{path}", self.ops_addr))
            .await
    }

    /// GETs any URL: status and body.
    pub async fn get_url(&self, url: &str) -> (u16, String) {
        let response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}\nlogs:\n{}", self.logs()));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Polls `url` until something answers HTTP there (a listener the service opens after its
    /// operations server). Panics after a minute.
    pub async fn wait_for_listener(&mut self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(error) = self
            .http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            assert!(
                Instant::now() < deadline,
                "nothing answers at {url}: {error}\nlogs:\n{}",
                self.logs()
            );
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                panic!("the service exited with {status}\nlogs:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `/readyz` until it answers 200. Panics with the logs if the process exits first or
    /// is still not ready after a minute (a hang guard, not a performance limit).
    pub async fn wait_ready(&mut self) {
        let url = format!("http://{}/readyz", self.ops_addr);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                panic!(
                    "the service exited with {status} before it was ready\nlogs:\n{}",
                    self.logs()
                );
            }
            let answer = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if matches!(&answer, Ok(response) if response.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready after 60s: {answer:?}\nlogs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the process to exit by itself (at most a minute, as a hang guard), for a
    /// service that must refuse to start.
    pub async fn wait_exit(self) -> Exited {
        self.exit_since(Instant::now(), "still running after a minute")
            .await
    }

    /// Kills the process with SIGKILL, as a crash or an OOM kill would, and waits for it.
    pub async fn kill(mut self) -> String {
        self.child.kill().await.expect("SIGKILL the service");
        self.logs()
    }

    /// Sends SIGTERM and waits for the process to exit (at most a minute, as a hang guard).
    pub async fn terminate(self) -> Exited {
        let pid = self.child.id().expect("the service is still running");
        let started = Instant::now();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(kill.success(), "kill -TERM {pid} failed");
        self.exit_since(started, "still running a minute after SIGTERM")
            .await
    }

    /// Waits (at most a minute, then panics with `hang`) for the exit, timed from `started`.
    async fn exit_since(mut self, started: Instant, hang: &str) -> Exited {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{hang}\nlogs:\n{}", self.logs()))
            .expect("wait for the child");
        let took = started.elapsed();
        // Let the log readers drain what the process wrote last.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Exited {
            status,
            took,
            logs: self.logs(),
        }
    }
}

fn collect(stream: impl AsyncRead + Unpin + Send + 'static, logs: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut logs = logs.lock().expect("log lock");
            logs.push_str(&line);
            logs.push('\n');
        }
    });
}

/// A service started with `VERIFICATION_SECRET` set to a placeholder or a short value exits
/// non-zero at once, naming the variable and how to generate a key.
pub async fn assert_refuses_weak_verification_secrets(binary: &str) {
    for weak in ["change-me", "local-development-only", "0123456789"] {
        let service = ServiceProcess::spawn(binary, &[("VERIFICATION_SECRET", weak)]);
        let exited = service.wait_exit().await;
        assert!(
            !exited.status.success(),
            "started with {weak:?}: {}",
            exited.logs
        );
        assert!(
            exited.logs.contains("VERIFICATION_SECRET") && exited.logs.contains("openssl rand"),
            "{}",
            exited.logs
        );
        assert!(
            !exited.logs.contains(weak),
            "the value was logged: {}",
            exited.logs
        );
    }
}

/// The life every service binary must get right: it starts, becomes ready (database and broker
/// reachable), serves liveness and metrics, and on SIGTERM logs that it is shutting down and
/// exits 0. Returns how it ended, for further checks.
pub async fn assert_starts_serves_and_stops(binary: &str, service_name: &str) -> Exited {
    // A migrated schema of its own, for services that lease node IDs or read tables at start.
    let db = repo::testing::TestDatabase::new().await;
    let mut service = ServiceProcess::spawn(binary, &[("DATABASE_SCHEMA", db.schema())]);
    service.wait_ready().await;

    let (status, body) = service.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = service.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("readyz answers JSON");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"]["status"], "up");
    assert_eq!(ready["checks"]["broker"]["status"], "up");
    let (status, metrics) = service.get("/metrics").await;
    assert_eq!(status, 200);
    let info = format!("service_info{{service=\"{service_name}\"");
    assert!(metrics.contains(&info), "no {info} in /metrics:\n{metrics}");
    assert!(
        metrics.contains("service_dependency_up{dependency=\"database\"} 1"),
        "{metrics}"
    );

    let exited = service.terminate().await;
    assert_eq!(
        exited.status.code(),
        Some(0),
        "exit status {}\nlogs:\n{}",
        exited.status,
        exited.logs
    );
    assert!(
        exited.logs.contains("received SIGTERM, shutting down"),
        "logs:\n{}",
        exited.logs
    );
    assert!(
        exited.logs.contains("shutdown complete"),
        "logs:\n{}",
        exited.logs
    );
    exited
}

/// A TCP proxy a test can cut, to make a dependency unreachable and bring it back (the idea of
/// crates.io's chaos proxy). While cut, open connections are closed and new ones are closed as
/// soon as they are accepted, as a dead host behind a load balancer would look.
#[derive(Debug)]
pub struct ChaosProxy {
    pub addr: SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<Mutex<tokio_util::sync::CancellationToken>>,
    task: tokio::task::JoinHandle<()>,
}

impl ChaosProxy {
    /// Starts forwarding a free local port to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let generation = Arc::new(Mutex::new(tokio_util::sync::CancellationToken::new()));
        let task = {
            let cut = cut.clone();
            let generation = generation.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(std::sync::atomic::Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let stop = generation.lock().expect("proxy lock").clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            () = stop.cancelled() => {}
                        }
                    });
                }
            })
        };
        Self {
            addr,
            cut,
            generation,
            task,
        }
    }

    /// Closes every connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut generation = self.generation.lock().expect("proxy lock");
        generation.cancel();
        *generation = tokio_util::sync::CancellationToken::new();
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
