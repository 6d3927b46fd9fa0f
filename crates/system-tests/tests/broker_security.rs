//! The services on a broker that requires SASL_SSL: SCRAM-SHA-512 credentials and TLS with a
//! certificate of a certificate authority the test makes, configured through
//! `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*` and `KAFKA_SSL_CA_LOCATION` only. Registrations
//! flow end to end; a service with a wrong password says why it is not ready, logs no password,
//! and loses nothing once its password is fixed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use events::testing::message_count;
use serde_json::{Value, json};
use service_runtime::testing::ServiceProcess;
use system_tests::{ClusterSpec, KafkaCluster, RegistrationStack, wait_until};

const USER: &str = "signup-services";
const PASSWORD: &str = "right-password-7f3a";
const WRONG_PASSWORD: &str = "wrong-password-91c2";
const PATIENCE: Duration = Duration::from_secs(120);

/// A scratch folder (it holds the CA's private key), removed however the test ends.
struct ScratchDir(std::path::PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The batcher's `/readyz`: status and the broker check's error (status 0 while the process
/// does not listen yet).
async fn readiness(service: &ServiceProcess) -> (u16, String) {
    let Some((status, body)) = service.try_get("/readyz").await else {
        return (0, String::new());
    };
    let said = serde_json::from_str::<Value>(&body).unwrap_or_default();
    let reason = said["checks"]["broker"]["error"]
        .as_str()
        .unwrap_or_default();
    (status, reason.to_owned())
}

/// Runs `openssl` with `command`'s words in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, command: &str) {
    let args: Vec<&str> = command.split_whitespace().collect();
    let output = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A certificate authority and a broker certificate for 127.0.0.1 signed by it, in `dir`:
/// `ca.pem` (for the clients) and `broker.pem` (the broker's key and certificate, PEM).
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -subj /CN=test-ca -days 2",
    );
    openssl(
        dir,
        "req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj /CN=127.0.0.1",
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write san.ext");
    openssl(
        dir,
        "x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.crt \
         -extfile san.ext -days 2",
    );
    let key = std::fs::read_to_string(dir.join("broker.key")).expect("broker.key");
    let certificate = std::fs::read_to_string(dir.join("broker.crt")).expect("broker.crt");
    std::fs::write(dir.join("broker.pem"), format!("{key}{certificate}")).expect("broker.pem");
}

/// One node whose `CLIENT` listener takes only SASL_SSL with SCRAM-SHA-512, and one user.
fn secured_cluster(dir: &Path) -> ClusterSpec {
    let mut spec = ClusterSpec::plaintext(1);
    spec.client_protocol = "SASL_SSL".into();
    let keystore = dir.join("broker.pem").display().to_string();
    spec.extra_properties = [
        ("sasl.enabled.mechanisms", "SCRAM-SHA-512"),
        (
            "listener.name.client.scram-sha-512.sasl.jaas.config",
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        ),
        ("ssl.keystore.type", "PEM"),
        ("ssl.keystore.location", keystore.as_str()),
        ("ssl.client.auth", "none"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    spec.format_args = vec![
        "--add-scram".into(),
        format!("SCRAM-SHA-512=[name={USER},password={PASSWORD}]"),
    ];
    spec
}

#[tokio::test(flavor = "multi_thread")]
async fn services_work_over_sasl_ssl_and_a_wrong_password_is_reported_and_loses_nothing() {
    let scratch = ScratchDir(std::env::temp_dir().join(events::testing::unique_name("kafka-tls")));
    let certificates = scratch.0.clone();
    std::fs::create_dir_all(&certificates).expect("certificate folder");
    make_certificates(&certificates);
    let cluster = KafkaCluster::start(secured_cluster(&certificates)).await;
    let stack = RegistrationStack::on(&cluster.admin_config(), 1).await;

    let brokers = cluster.client_brokers();
    let ca = certificates.join("ca.pem").display().to_string();
    let secured = |password: &str| -> Vec<(String, String)> {
        system_tests::owned(&[
            ("KAFKA_BROKERS", &brokers),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", USER),
            ("KAFKA_SASL_PASSWORD", password),
            ("KAFKA_SSL_CA_LOCATION", &ca),
        ])
    };
    let (right, wrong) = (secured(PASSWORD), secured(WRONG_PASSWORD));
    // The gateway publishes over SASL_SSL; the batcher has a wrong password.
    let (gateway, api) = stack.start_gateway(&refs(&right)).await;
    let batcher = stack.spawn_batcher(&refs(&wrong));
    wait_until(
        "the batcher's /readyz to report the failed authentication",
        PATIENCE,
        || batcher.logs(),
        || async {
            let (status, reason) = readiness(&batcher).await;
            status == 503 && reason.contains("authentication failed")
        },
    )
    .await;
    eprintln!("wrong password: /readyz {:?}", readiness(&batcher).await);

    let http = reqwest::Client::new();
    let mut accepted = Vec::new();
    for i in 0..50 {
        let response = http
            .post(format!("{api}/api/v1/auth/register-async"))
            .json(&json!({"email": format!("tls-{i}@example.com"), "password": "password123", "consent": true}))
            .send()
            .await
            .expect("POST register-async");
        assert_eq!(
            response.status(),
            202,
            "the gateway publishes over SASL_SSL"
        );
        let body: Value = response.json().await.expect("JSON");
        accepted.push(body["request_id"].as_str().expect("request_id").to_owned());
    }
    // A few seconds with the wrong password: nothing gets through, nothing is dead-lettered.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stack
            .count("SELECT count(*) AS n FROM registration_requests")
            .await,
        0,
        "nothing is consumed with a wrong password"
    );
    let refused = batcher.terminate().await;
    for password in [PASSWORD, WRONG_PASSWORD] {
        assert!(
            !refused.logs.contains(password),
            "a password was logged:\n{}",
            refused.logs
        );
    }

    // Fixed: everything accepted meanwhile completes, once.
    let batcher = stack.start_batcher(&refs(&right)).await;
    stack
        .wait_until_finished(50, PATIENCE, &[&gateway, &batcher])
        .await;
    assert_eq!(
        stack
            .count("SELECT count(*) AS n FROM registration_requests WHERE status = 'completed'")
            .await,
        50
    );
    assert_eq!(stack.count("SELECT count(*) AS n FROM users").await, 50);
    assert_eq!(message_count(&stack.retry_topic), 0);
    assert_eq!(message_count(&stack.parking_topic), 0);
    eprintln!(
        "SASL_SSL: {} accepted while the batcher could not authenticate, 50 completed once fixed",
        accepted.len()
    );

    let (status, _) = batcher.get("/readyz").await;
    assert_eq!(status, 200);
    let stopped = batcher.terminate().await;
    assert!(!stopped.logs.contains(PASSWORD), "{}", stopped.logs);
    let stopped = gateway.terminate().await;
    assert!(!stopped.logs.contains(PASSWORD), "{}", stopped.logs);
}
