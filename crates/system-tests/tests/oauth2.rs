//! The OAuth2 authorization server and OpenID Connect provider end to end, driven by
//! independent implementations: Authlib (PyPI) as the relying party and resource server, and
//! Debian's Chromium through Selenium clicking through the sign-in and consent pages. Both run
//! against the gateway as a process, on real PostgreSQL and the broker. The tools are
//! installed once by `deploy/local/oauth2-tools.sh` (into `.stack/tools`, Chromium from apt).
//!
//! The client registration API, consents and the audit log are checked here directly.

use std::path::Path;

use events::testing::TestTopic;
use serde_json::{Value, json};
use service_runtime::testing::{ServiceProcess, free_local_addr};
use system_tests::{
    WaitlistStack, call, oauth2_tools, platform_admin_json_lines, run_oauth2_client, signed_in_user,
};

const PASSWORD: &str = "correct horse battery";
/// The PKCE code verifier of the flows run here.
const VERIFIER: &str = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv";

/// The gateway of one test, and the users and clients it made.
struct Provider {
    waitlist: WaitlistStack,
    _registrations: TestTopic,
    gateway: ServiceProcess,
    issuer: String,
    http: reqwest::Client,
    /// Follows no redirect, as the flows look at each 303.
    browser: reqwest::Client,
}

impl Provider {
    async fn start() -> Self {
        let waitlist = WaitlistStack::new().await;
        let registrations = TestTopic::create("user.registration", 1).await;
        let addr = free_local_addr().to_string();
        let issuer = format!("http://{addr}");
        let (gateway, api) = waitlist
            .start_gateway(&[
                ("HTTP_ADDR", &addr),
                ("OAUTH2_ISSUER", &issuer),
                ("REGISTRATION_TOPIC", &registrations.name),
                ("ARGON2_MEMORY_KIB", "1024"),
                ("ARGON2_ITERATIONS", "1"),
            ])
            .await;
        assert_eq!(api, issuer);
        Self {
            waitlist,
            _registrations: registrations,
            gateway,
            issuer,
            http: reqwest::Client::new(),
            browser: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// Registers a user and signs them in; their first-party access token.
    async fn user(&self, email: &str) -> String {
        signed_in_user(&self.issuer, email, PASSWORD).await
    }

    async fn as_user(&self, token: &str, request: reqwest::RequestBuilder) -> (u16, Value) {
        call(request.bearer_auth(token)).await
    }

    /// Registers a client as the user; the created client (with its secret, if any).
    async fn client(&self, token: &str, body: Value) -> Value {
        let (status, created) = self
            .as_user(
                token,
                self.http
                    .post(self.url("/api/v1/oauth2/clients"))
                    .json(&body),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created
    }

    /// Runs the code flow as a browser without JavaScript would (the sign-in form, then the
    /// consent form when it comes) and exchanges the code; the token answer.
    async fn code_flow(&self, client: &Value, redirect_uri: &str, email: &str) -> Value {
        let code = self.authorize(client, redirect_uri, email).await;
        let (status, tokens) = self.exchange(client, redirect_uri, &code).await;
        assert_eq!(status, 200, "{tokens}");
        tokens
    }

    /// The sign-in form posted for `client` (PKCE with [`VERIFIER`]); the answer: the consent
    /// page, or the 303 when consent was given before.
    async fn sign_in_page(
        &self,
        client: &Value,
        redirect_uri: &str,
        email: &str,
    ) -> reqwest::Response {
        let challenge = {
            use base64::Engine as _;
            use sha2::Digest as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(VERIFIER.as_bytes()))
        };
        let params = [
            ("response_type", "code"),
            ("client_id", client["client_id"].as_str().unwrap()),
            ("redirect_uri", redirect_uri),
            ("scope", "openid email"),
            ("state", "s-1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ];
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.extend([("username", email), ("password", PASSWORD)]);
        self.browser
            .post(self.url("/oauth2/authorize"))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// The consent form's ticket on a consent page.
    async fn ticket(page: reqwest::Response) -> String {
        let html = page.text().await.unwrap();
        html.split("name=\"ticket\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a consent page with a ticket")
            .to_owned()
    }

    async fn consent(&self, ticket: &str, decision: &str) -> reqwest::Response {
        self.browser
            .post(self.url("/oauth2/consent"))
            .form(&[("ticket", ticket), ("decision", decision)])
            .send()
            .await
            .unwrap()
    }

    /// A code for `client`, consenting when asked.
    async fn authorize(&self, client: &Value, redirect_uri: &str, email: &str) -> String {
        let answer = self.sign_in_page(client, redirect_uri, email).await;
        let answer = if answer.status() == 200 {
            let ticket = Self::ticket(answer).await;
            self.consent(&ticket, "allow").await
        } else {
            answer
        };
        assert_eq!(answer.status(), 303);
        let location = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
        location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("a code")
    }

    /// The token endpoint's answer to `code`, `client` authenticating with its secret.
    async fn exchange(&self, client: &Value, redirect_uri: &str, code: &str) -> (u16, Value) {
        self.token(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
    }

    async fn token(&self, client: &Value, form: &[(&str, &str)]) -> (u16, Value) {
        call(
            self.http
                .post(self.url("/oauth2/token"))
                .basic_auth(
                    client["client_id"].as_str().unwrap(),
                    client["client_secret"].as_str(),
                )
                .form(form),
        )
        .await
    }

    /// What introspection (as `client`) says of `token`.
    async fn introspect(&self, client: &Value, token: &str) -> Value {
        let (status, answer) = call(
            self.http
                .post(self.url("/oauth2/introspect"))
                .basic_auth(
                    client["client_id"].as_str().unwrap(),
                    client["client_secret"].as_str(),
                )
                .form(&[("token", token)]),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    async fn audit_count(&self, event_type: &str) -> i64 {
        self.waitlist
            .count(&format!(
                "SELECT count(*) AS n FROM oauth2_audit_logs WHERE event_type = '{event_type}'"
            ))
            .await
    }
}

/// Authlib runs every flow and the security BCP's negative cases (see `authlib_flows.py`):
/// code + PKCE for a confidential and a public client, ID token and JWKS verification,
/// userinfo, remembered consent, refresh rotation and reuse detection, client credentials,
/// revocation, introspection, replayed codes, wrong verifiers and redirect URIs, grants a
/// client is not registered for, a denied consent and a wrong password.
#[tokio::test(flavor = "multi_thread")]
async fn authlib_drives_every_flow_and_the_refusals_of_the_security_bcp() {
    let tools = oauth2_tools();
    let provider = Provider::start().await;
    let owner = provider.user("owner@example.com").await;
    provider.user("relying@example.com").await;
    let redirect_uri = format!("http://{}/callback", free_local_addr());
    let all_scopes = json!(["openid", "profile", "email", "phone", "offline_access"]);
    let confidential = provider
        .client(
            &owner,
            json!({"name": "Confidential app", "client_type": "confidential", "redirect_uris": [redirect_uri],
                   "grant_types": ["authorization_code", "refresh_token"], "scopes": all_scopes}),
        )
        .await;
    let public = provider
        .client(
            &owner,
            json!({"name": "Public app", "client_type": "public", "redirect_uris": [redirect_uri],
                   "grant_types": ["authorization_code", "refresh_token"], "scopes": all_scopes}),
        )
        .await;
    let service = provider
        .client(
            &owner,
            json!({"name": "Service", "client_type": "confidential", "redirect_uris": [redirect_uri],
                   "grant_types": ["client_credentials"], "scopes": []}),
        )
        .await;
    assert!(public.get("client_secret").is_none(), "{public}");
    let text = |v: &Value, key: &str| v[key].as_str().unwrap().to_owned();
    let output = run_oauth2_client(
        &tools["PYTHON"],
        "authlib_flows.py",
        &[
            ("ISSUER", &provider.issuer),
            ("USERNAME", "relying@example.com"),
            ("PASSWORD", PASSWORD),
            ("REDIRECT_URI", &redirect_uri),
            ("CONFIDENTIAL_CLIENT_ID", &text(&confidential, "client_id")),
            (
                "CONFIDENTIAL_CLIENT_SECRET",
                &text(&confidential, "client_secret"),
            ),
            ("PUBLIC_CLIENT_ID", &text(&public, "client_id")),
            ("SERVICE_CLIENT_ID", &text(&service, "client_id")),
            ("SERVICE_CLIENT_SECRET", &text(&service, "client_secret")),
        ],
        || provider.gateway.logs(),
    )
    .await;
    assert!(!output.contains("FAIL"), "{output}");
    assert!(
        output.lines().filter(|l| l.starts_with("ok ")).count() >= 30,
        "{output}"
    );

    // What the flows did is in the audit log.
    for event in [
        "client_created",
        "authorization_code_issued",
        "consent_granted",
        "consent_denied",
        "token_issued",
        "token_refused",
        "token_revoked",
        "refresh_token_reuse",
        "authorization_code_replay",
        "client_authentication_failed",
        "authorization_sign_in_failed",
    ] {
        assert!(
            provider.audit_count(event).await > 0,
            "no {event} in the audit log"
        );
    }
    // No token, code or secret is stored in clear.
    for (table, column) in [
        ("oauth2_access_tokens", "token_hash"),
        ("oauth2_refresh_tokens", "token_hash"),
        ("oauth2_authorization_codes", "code_hash"),
    ] {
        let clear = provider
            .waitlist
            .count(&format!(
                "SELECT count(*) AS n FROM {table} WHERE {column} !~ '^[0-9a-f]{{64}}$'"
            ))
            .await;
        assert_eq!(
            clear, 0,
            "{table}.{column} holds something else than SHA-256 hashes"
        );
    }
    let secret = text(&confidential, "client_secret");
    assert_eq!(
        provider
            .waitlist
            .count(&format!(
                "SELECT count(*) AS n FROM oauth2_clients WHERE client_secret_hash = '{secret}'"
            ))
            .await,
        0
    );
}

/// Headless Chromium signs in on the page, sees the consent page (saved as a screenshot whose
/// path is printed), clicks Allow, and the code it brings back is exchanged for tokens.
#[tokio::test(flavor = "multi_thread")]
async fn chromium_clicks_through_the_sign_in_and_consent_pages() {
    let tools = oauth2_tools();
    let provider = Provider::start().await;
    let owner = provider.user("browser-owner@example.com").await;
    provider.user("browser-user@example.com").await;
    let redirect_uri = format!("http://{}/callback", free_local_addr());
    let client = provider
        .client(
            &owner,
            json!({"name": "Ada's <b>Dashboard</b>", "client_type": "confidential", "redirect_uris": [redirect_uri],
                   "grant_types": ["authorization_code"], "scopes": ["openid", "email"]}),
        )
        .await;
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/oauth2-consent-page.png")
        .to_string_lossy()
        .into_owned();
    let output = run_oauth2_client(
        &tools["PYTHON"],
        "consent_browser.py",
        &[
            ("ISSUER", &provider.issuer),
            ("CLIENT_ID", client["client_id"].as_str().unwrap()),
            ("CLIENT_SECRET", client["client_secret"].as_str().unwrap()),
            // Shown as text: the markup of the name is escaped, not rendered.
            ("CLIENT_NAME", "Ada's <b>Dashboard</b>"),
            ("USERNAME", "browser-user@example.com"),
            ("PASSWORD", PASSWORD),
            ("REDIRECT_URI", &redirect_uri),
            ("SCREENSHOT", &screenshot),
            ("CHROMEDRIVER", &tools["CHROMEDRIVER"]),
            ("CHROMIUM", &tools["CHROMIUM"]),
        ],
        || provider.gateway.logs(),
    )
    .await;
    assert!(Path::new(&screenshot).exists(), "{output}");
    eprintln!("consent page screenshot: {screenshot}");
}

/// Clients belong to the user who registered them: listed, read, updated, their secret
/// rotated (the old one stops working) and deleted by them only; bad settings are refused by
/// field. Consents are listed and withdrawn from `/me`, which revokes the client's tokens.
#[tokio::test(flavor = "multi_thread")]
async fn clients_and_consents_are_managed_by_their_users() {
    let provider = Provider::start().await;
    let ada = provider.user("ada@example.com").await;
    let bob = provider.user("bob@example.com").await;
    let http = &provider.http;

    // Refused settings name their field.
    for (body, field) in [
        (
            json!({"name": "x", "client_type": "public", "redirect_uris": ["http://example.com/cb"], "grant_types": ["authorization_code"]}),
            "redirect_uris[0]",
        ),
        (
            json!({"name": "x", "client_type": "public", "redirect_uris": [], "grant_types": ["client_credentials"]}),
            "grant_types",
        ),
        (
            json!({"name": "x", "client_type": "confidential", "redirect_uris": [], "grant_types": ["implicit"]}),
            "grant_types[0]",
        ),
        (
            json!({"name": "x", "client_type": "confidential", "redirect_uris": ["https://a.example/cb"], "grant_types": ["authorization_code"], "scopes": ["admin"]}),
            "scopes[0]",
        ),
        (
            json!({"name": " ", "client_type": "confidential", "grant_types": ["client_credentials"]}),
            "name",
        ),
        (
            json!({"name": "App\u{202E}gnp.exe", "client_type": "confidential", "grant_types": ["client_credentials"]}),
            "name",
        ),
        (
            json!({"name": "x", "client_type": "public", "redirect_uris": ["https://good.example@evil.example/cb"], "grant_types": ["authorization_code"]}),
            "redirect_uris[0]",
        ),
    ] {
        let (status, refused) = provider
            .as_user(
                &ada,
                http.post(provider.url("/api/v1/oauth2/clients"))
                    .json(&body),
            )
            .await;
        assert_eq!(
            (status, refused["error"]["field"].as_str()),
            (422, Some(field)),
            "{body} → {refused}"
        );
    }
    let (status, _) = call(
        http.post(provider.url("/api/v1/oauth2/clients"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 401);

    let created = provider
        .client(
            &ada,
            json!({"name": "Ada's service", "client_type": "confidential", "grant_types": ["client_credentials"]}),
        )
        .await;
    let client_id = created["client_id"].as_str().unwrap().to_owned();
    let first_secret = created["client_secret"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/oauth2/clients/{client_id}");

    let (status, listed) = provider
        .as_user(&ada, http.get(provider.url("/api/v1/oauth2/clients")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert!(listed[0].get("client_secret").is_none(), "{listed}");
    // Bob sees none of Ada's.
    let (status, listed) = provider
        .as_user(&bob, http.get(provider.url("/api/v1/oauth2/clients")))
        .await;
    assert_eq!((status, listed), (200, json!([])));
    for request in [
        http.get(provider.url(&path)),
        http.delete(provider.url(&path)),
        http.post(provider.url(&format!("{path}/secret"))),
    ] {
        let (status, body) = provider.as_user(&bob, request).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("client_not_found"))
        );
    }

    let token_url = provider.url("/oauth2/token");
    let token = |secret: String| {
        let client_id = client_id.clone();
        let token_url = token_url.clone();
        async move {
            let response = http
                .post(token_url)
                .basic_auth(&client_id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }
    };
    assert_eq!(token(first_secret.clone()).await, 200);
    let (status, rotated) = provider
        .as_user(&ada, http.post(provider.url(&format!("{path}/secret"))))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(token(first_secret).await, 401);
    assert_eq!(token(second_secret.clone()).await, 200);

    let (status, updated) = provider
        .as_user(
            &ada,
            http.put(provider.url(&path))
                .json(&json!({"name": "Renamed", "grant_types": ["client_credentials"]})),
        )
        .await;
    assert_eq!(
        (status, updated["name"].as_str()),
        (200, Some("Renamed")),
        "{updated}"
    );

    let (status, _) = provider
        .as_user(&ada, http.delete(provider.url(&path)))
        .await;
    assert_eq!(status, 204);
    assert_eq!(token(second_secret).await, 401);
    let (status, _) = provider.as_user(&ada, http.get(provider.url(&path))).await;
    assert_eq!(status, 404);

    // Consents: none yet; withdrawing one that does not exist is a 404.
    let (status, consents) = provider
        .as_user(&ada, http.get(provider.url("/api/v1/me/consents")))
        .await;
    assert_eq!((status, consents), (200, json!([])));
    let (status, body) = provider
        .as_user(
            &ada,
            http.delete(provider.url("/api/v1/me/consents/nobody")),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("consent_not_found"))
    );
    for event in [
        "client_created",
        "client_secret_rotated",
        "client_updated",
        "client_deleted",
    ] {
        assert_eq!(provider.audit_count(event).await, 1, "{event}");
    }

    // Bob grants Ada's app; he sees the consent and withdraws it, which revokes its tokens.
    let redirect_uri = "https://app.example.com/callback";
    let app = provider
        .client(
            &ada,
            json!({"name": "Ada's app", "client_type": "confidential", "redirect_uris": [redirect_uri],
                   "grant_types": ["authorization_code", "refresh_token"], "scopes": ["openid", "email"]}),
        )
        .await;
    let tokens = provider
        .code_flow(&app, redirect_uri, "bob@example.com")
        .await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(provider.introspect(&app, access).await["active"], true);
    let (status, consents) = provider
        .as_user(&bob, http.get(provider.url("/api/v1/me/consents")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(consents[0]["client_name"], "Ada's app", "{consents}");
    assert_eq!(consents[0]["scopes"], json!(["email", "openid"]));
    // A third-party access token does not act as the user on the first-party API: a valid
    // token of the wrong kind.
    let (status, refused) = provider
        .as_user(access, http.get(provider.url("/api/v1/me")))
        .await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (403, &json!("forbidden"))
    );
    let consent_path = format!("/api/v1/me/consents/{}", app["client_id"].as_str().unwrap());
    let (status, _) = provider
        .as_user(&bob, http.delete(provider.url(&consent_path)))
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        provider.introspect(&app, access).await,
        json!({"active": false})
    );
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(
        provider.introspect(&app, refresh).await,
        json!({"active": false})
    );
    let (status, consents) = provider
        .as_user(&bob, http.get(provider.url("/api/v1/me/consents")))
        .await;
    assert_eq!((status, consents), (200, json!([])));
    // Granted again, then all consents withdrawn at once.
    let tokens = provider
        .code_flow(&app, redirect_uri, "bob@example.com")
        .await;
    let (status, revoked) = provider
        .as_user(&bob, http.delete(provider.url("/api/v1/me/consents")))
        .await;
    assert_eq!((status, revoked), (200, json!({"revoked": 1})));
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        provider.introspect(&app, access).await,
        json!({"active": false})
    );

    // Platform operators read the audit log with platform-admin.
    let entries = platform_admin_json_lines(
        provider.waitlist.db.schema(),
        &["oauth2-audit-log", "--limit", "500"],
        &[],
    )
    .await;
    for event in [
        "consent_granted",
        "consent_revoked",
        "consents_revoked",
        "token_issued",
        "client_deleted",
    ] {
        assert!(
            entries.iter().any(|e| e["event_type"] == event),
            "no {event} in {entries:?}"
        );
    }
}

/// The refusals the security BCP asks for, where a race or a second client is involved: of
/// concurrent redemptions of one code at most one gets tokens, and none stays active;
/// a code presented by another client is refused; a refresh asking for more scopes is refused
/// without costing the refresh token; a forged consent ticket, and a genuine one after a
/// password change, are refused.
#[tokio::test(flavor = "multi_thread")]
async fn codes_refresh_tokens_and_tickets_refuse_what_they_must() {
    let provider = Provider::start().await;
    let ada = provider.user("ada@example.com").await;
    provider.user("bob@example.com").await;
    let redirect_uri = "https://app.example.com/callback";
    let client = |name: &str| {
        json!({"name": name, "client_type": "confidential", "redirect_uris": [redirect_uri],
               "grant_types": ["authorization_code", "refresh_token"], "scopes": ["openid", "email"]})
    };
    let app = provider.client(&ada, client("App")).await;
    let other = provider.client(&ada, client("Other app")).await;

    // Four concurrent exchanges of one code: at most one gets tokens (none, when a replay
    // revoked the grant before the first exchange wrote them), and no token stays active.
    let code = provider
        .authorize(&app, redirect_uri, "bob@example.com")
        .await;
    let answers =
        futures::future::join_all((0..4).map(|_| provider.exchange(&app, redirect_uri, &code)))
            .await;
    let winners: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert!(winners.len() <= 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(
            (*status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
    for winner in winners {
        let access = winner["access_token"].as_str().unwrap();
        assert_eq!(
            provider.introspect(&app, access).await,
            json!({"active": false})
        );
    }

    // Another client's code.
    let code = provider
        .authorize(&app, redirect_uri, "bob@example.com")
        .await;
    let (status, body) = provider.exchange(&other, redirect_uri, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // A refresh asking for more than was granted; the refresh token still works after.
    let code = provider
        .authorize(&app, redirect_uri, "bob@example.com")
        .await;
    let (_, tokens) = provider.exchange(&app, redirect_uri, &code).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let wider = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("scope", "openid email phone"),
    ];
    let (status, body) = provider.token(&app, &wider).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    let narrower = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("scope", "openid"),
    ];
    let (status, body) = provider.token(&app, &narrower).await;
    assert_eq!(
        (status, body["scope"].as_str()),
        (200, Some("openid")),
        "{body}"
    );
    // Another client cannot use it (nor learn of it), and its holder is not told it exists.
    let refresh = body["refresh_token"].as_str().unwrap();
    let (status, body) = provider
        .token(
            &other,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(
        provider.introspect(&other, refresh).await,
        json!({"active": false})
    );
    assert_eq!(provider.introspect(&app, refresh).await["active"], true);

    // A forged ticket; a genuine one after the password changed.
    let forged = provider.consent("eyJ1c2VyX2lkIjoxfQ.AAAA", "allow").await;
    assert_eq!(forged.status(), 400);
    let carol = provider.user("carol@example.com").await;
    let page = provider
        .sign_in_page(&app, redirect_uri, "carol@example.com")
        .await;
    assert_eq!(page.status(), 200);
    let ticket = Provider::ticket(page).await;
    let (status, body) = provider
        .as_user(
            &carol,
            provider.http.post(provider.url("/api/v1/me/password")).json(
                &json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let stale = provider.consent(&ticket, "allow").await;
    assert_eq!(stale.status(), 400);
    assert!(stale.headers().get("location").is_none());

    // A ticket answers once: a second Allow (or a Deny after it) is refused.
    let page = provider
        .sign_in_page(&other, redirect_uri, "bob@example.com")
        .await;
    let ticket = Provider::ticket(page).await;
    assert_eq!(provider.consent(&ticket, "allow").await.status(), 303);
    for decision in ["allow", "deny"] {
        let again = provider.consent(&ticket, decision).await;
        assert_eq!(again.status(), 400, "{decision}");
    }

    // The pages take forms only as a browser sends them, and say which methods they take.
    let plain = provider
        .browser
        .post(provider.url("/oauth2/consent"))
        .header("Content-Type", "text/plain")
        .body(format!("ticket={ticket}&decision=allow"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    let put = provider
        .browser
        .put(provider.url("/oauth2/authorize"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "GET, HEAD, POST");

    // A client ID with a NUL (through Basic) is an unknown client, not a server error.
    let (status, body) = call(
        provider
            .http
            .post(provider.url("/oauth2/token"))
            .header("Authorization", "Basic JTAwOng=")
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );

    // A first-party token is no OAuth2 token: unknown at userinfo; another client's token is
    // answered as unknown at revocation, and stays live.
    let (status, _) = call(
        provider
            .http
            .get(provider.url("/oauth2/userinfo"))
            .bearer_auth(&ada),
    )
    .await;
    assert_eq!(status, 401);
    let code = provider
        .authorize(&app, redirect_uri, "bob@example.com")
        .await;
    let (_, tokens) = provider.exchange(&app, redirect_uri, &code).await;
    let access = tokens["access_token"].as_str().unwrap();
    let (status, _) = call(
        provider
            .http
            .post(provider.url("/oauth2/revoke"))
            .basic_auth(
                other["client_id"].as_str().unwrap(),
                other["client_secret"].as_str(),
            )
            .form(&[("token", access)]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(provider.introspect(&app, access).await["active"], true);
}
