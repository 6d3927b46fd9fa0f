//! Sign-in with another OpenID Connect provider, end to end: the gateway as a relying party of
//! (1) an independent provider, panva's `oidc-provider` from the npm registry run with the
//! machine's Node.js, and (2) another gateway of this project, as a separate deployment with
//! its own database schema. A Python script (`oauth2/federation_flows.py`) plays the browser:
//! first sign-in creating the account, the same user again, linking and unlinking from `/me`,
//! and the refusals (a callback in another browser, a replayed or made-up state, a provider's
//! error, a provider account linked elsewhere, unlinking the last way to sign in).

use std::process::Stdio;
use std::time::Duration;

use events::testing::TestTopic;
use serde_json::{Value, json};
use service_runtime::testing::{ServiceProcess, free_local_addr};
use system_tests::{
    WaitlistStack, call, oauth2_tools, platform_admin_json_lines, run_oauth2_client, signed_in_user,
};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const PASSWORD: &str = "correct horse battery";

/// A gateway of its own (schema, topics), at an address chosen first so that it can be its
/// own `OAUTH2_ISSUER`.
struct Gateway {
    waitlist: WaitlistStack,
    _registrations: TestTopic,
    process: ServiceProcess,
    url: String,
}

impl Gateway {
    async fn start(addr: &str, extra: &[(&str, &str)]) -> Self {
        let waitlist = WaitlistStack::new().await;
        let registrations = TestTopic::create("user.registration", 1).await;
        let url = format!("http://{addr}");
        let mut env = vec![
            ("HTTP_ADDR", addr),
            ("OAUTH2_ISSUER", url.as_str()),
            ("REGISTRATION_TOPIC", registrations.name.as_str()),
            ("ARGON2_MEMORY_KIB", "1024"),
            ("ARGON2_ITERATIONS", "1"),
            ("NO_PROXY", "127.0.0.1,localhost"),
            ("no_proxy", "127.0.0.1,localhost"),
        ];
        env.extend_from_slice(extra);
        let (process, api) = waitlist.start_gateway(&env).await;
        assert_eq!(api, url);
        Self {
            waitlist,
            _registrations: registrations,
            process,
            url,
        }
    }

    /// Registers a user with a password; their first-party access token.
    async fn user(&self, email: &str) -> String {
        signed_in_user(&self.url, email, PASSWORD).await
    }
}

/// Runs `federation_flows.py`; panics with its output and the gateways' logs unless it passed.
async fn run_flows(python: &str, env: &[(&str, &str)], logs: impl Fn() -> String) -> String {
    run_oauth2_client(python, "federation_flows.py", env, logs).await
}

/// The gateway signs users in with `oidc-provider` (npm), an independent implementation.
#[tokio::test(flavor = "multi_thread")]
async fn users_sign_in_with_an_independent_openid_provider() {
    let tools = oauth2_tools();
    let gateway_addr = free_local_addr().to_string();
    let upstream_addr = free_local_addr();
    let upstream_issuer = format!("http://{upstream_addr}");
    let secret = "9f2c61d0b8e34a7f5c1e0d9b8a7f6e5d4c3b2a19";
    let callback = format!("http://{gateway_addr}/api/v1/auth/providers/upstream/callback");
    let mut upstream = tokio::process::Command::new(&tools["NODE"])
        .arg(&tools["UPSTREAM_PROVIDER"])
        .env("ISSUER", &upstream_issuer)
        .env("PORT", upstream_addr.port().to_string())
        .env("CLIENT_ID", "gateway")
        .env("CLIENT_SECRET", secret)
        .env("REDIRECT_URI", &callback)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts the provider");
    let mut lines = BufReader::new(upstream.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("listening") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "oidc-provider did not start");

    let gateway = Gateway::start(
        &gateway_addr,
        &[
            ("OIDC_PROVIDERS", "upstream"),
            ("OIDC_PROVIDER_UPSTREAM_ISSUER", &upstream_issuer),
            ("OIDC_PROVIDER_UPSTREAM_CLIENT_ID", "gateway"),
            ("OIDC_PROVIDER_UPSTREAM_CLIENT_SECRET", secret),
            ("OIDC_PROVIDER_UPSTREAM_DISPLAY_NAME", "Upstream"),
        ],
    )
    .await;
    run_flows(
        &tools["PYTHON"],
        &[
            ("GATEWAY", &gateway.url),
            ("PROVIDER", "upstream"),
            ("UPSTREAM_KIND", "oidc-provider"),
            ("UPSTREAM_LOGIN", "grace@upstream.example"),
            ("UPSTREAM_PASSWORD", "anything"),
            ("LOCAL_PASSWORD", PASSWORD),
        ],
        || gateway.process.logs(),
    )
    .await;

    // Operators see how many accounts the provider linked, and the latest links.
    let lines = platform_admin_json_lines(
        gateway.waitlist.db.schema(),
        &["oauth-accounts", "--recent", "5"],
        &[("OIDC_PROVIDERS", "upstream")],
    )
    .await;
    assert_eq!(lines[0]["provider"], "upstream", "{lines:?}");
    assert!(
        lines[0]["linked_accounts"].as_i64().unwrap() >= 1,
        "{lines:?}"
    );
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.get("access_token_hash").is_none()),
        "{lines:?}"
    );
}

/// One deployment of this project signs its users in with another's OpenID provider.
#[tokio::test(flavor = "multi_thread")]
async fn users_sign_in_with_another_deployment_of_this_provider() {
    let tools = oauth2_tools();
    let upstream_addr = free_local_addr().to_string();
    let gateway_addr = free_local_addr().to_string();
    let upstream = Gateway::start(&upstream_addr, &[]).await;
    let owner = upstream.user("owner@upstream.example").await;
    upstream.user("hopper@upstream.example").await;
    upstream.user("lovelace@upstream.example").await;
    // A new account needs an address its provider verified: these two followed their link
    // (no email-worker runs here).
    let verified = upstream
        .waitlist
        .count(
            "WITH v AS (UPDATE users SET is_email_verified = true
                        WHERE email IN ('hopper@upstream.example', 'lovelace@upstream.example')
                        RETURNING 1)
             SELECT count(*) AS n FROM v",
        )
        .await;
    assert_eq!(verified, 2);
    let callback = format!("http://{gateway_addr}/api/v1/auth/providers/self/callback");
    let (status, client) = call(
        reqwest::Client::new()
            .post(format!("{}/api/v1/oauth2/clients", upstream.url))
            .bearer_auth(&owner)
            .json(
                &json!({"name": "Downstream gateway", "client_type": "confidential",
                          "redirect_uris": [callback], "grant_types": ["authorization_code"],
                          "scopes": ["openid", "email"]}),
            ),
    )
    .await;
    assert_eq!(status, 201, "{client}");
    let text = |v: &Value, k: &str| v[k].as_str().unwrap().to_owned();
    let (client_id, secret) = (text(&client, "client_id"), text(&client, "client_secret"));
    let gateway = Gateway::start(
        &gateway_addr,
        &[
            ("OIDC_PROVIDERS", "self"),
            ("OIDC_PROVIDER_SELF_ISSUER", &upstream.url),
            ("OIDC_PROVIDER_SELF_CLIENT_ID", &client_id),
            ("OIDC_PROVIDER_SELF_CLIENT_SECRET", &secret),
        ],
    )
    .await;
    run_flows(
        &tools["PYTHON"],
        &[
            ("GATEWAY", &gateway.url),
            ("PROVIDER", "self"),
            ("UPSTREAM_KIND", "self"),
            ("UPSTREAM_LOGIN", "hopper@upstream.example"),
            ("UPSTREAM_PASSWORD", PASSWORD),
            ("UPSTREAM_LOGIN2", "lovelace@upstream.example"),
            ("UPSTREAM_PASSWORD2", PASSWORD),
            ("LOCAL_PASSWORD", PASSWORD),
        ],
        || {
            format!(
                "downstream gateway:\n{}\nupstream gateway:\n{}",
                gateway.process.logs(),
                upstream.process.logs()
            )
        },
    )
    .await;
}
