//! Waitlist campaigns end to end (issue #7): the gateway, the email-, position- and
//! reward-workers as processes, on real PostgreSQL and the broker, with an SMTP server and a
//! webhook receiver started here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use events::rdkafka::Message as _;
use events::testing::{message_count, read_from_start};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use service_runtime::testing::ServiceProcess;
use sha2::Sha256;
use system_tests::{SmtpSink, WaitlistStack, WebhookReceiver, call, wait_until};

const PATIENCE: Duration = Duration::from_secs(120);

/// A small deterministic generator (the seed is printed, so a failure can be replayed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

async fn create_campaign(
    http: &reqwest::Client,
    (gateway, api): (&ServiceProcess, &str),
    body: Value,
) -> Value {
    let (status, campaign) = call(http.post(format!("{api}/api/v1/campaigns")).json(&body)).await;
    if status != 201 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(status, 201, "{campaign}\n{}", gateway.logs());
    campaign
}

async fn sign_up(
    http: &reqwest::Client,
    api: &str,
    campaign: &str,
    email: &str,
    code: Option<&str>,
    ip: &str,
) -> (u16, Value) {
    let mut body = json!({"email": email});
    if let Some(code) = code {
        body["referral_code"] = json!(code);
    }
    call(
        http.post(format!("{api}/api/v1/campaigns/{campaign}/signups"))
            .header("X-Forwarded-For", ip)
            .json(&body),
    )
    .await
}

/// The position each participant should have, computed here from the issue's formula:
/// `max(original − verified × points, 1)`, ties by signup order, ranked 1, 2, 3…
fn expected_positions(verified_referrals: &[i64], points: i64) -> Vec<i64> {
    let mut order: Vec<usize> = (0..verified_referrals.len()).collect();
    let score = |i: usize| ((i as i64 + 1) - verified_referrals[i] * points).max(1);
    order.sort_by_key(|&i| (score(i), i));
    let mut positions = vec![0; order.len()];
    for (rank, i) in order.into_iter().enumerate() {
        positions[i] = rank as i64 + 1;
    }
    positions
}

/// Stored positions by signup order.
async fn stored_positions(stack: &WaitlistStack, campaign: &str) -> Vec<i64> {
    let mut conn = stack.db.database().connection().await.expect("connection");
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        position: i64,
    }
    use diesel_async::RunQueryDsl as _;
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT position FROM participants WHERE campaign_id = '{campaign}' ORDER BY original_position"
    ))
    .load(&mut *conn)
    .await
    .expect("positions");
    rows.into_iter().map(|r| r.position).collect()
}

/// Emails by template, told apart by their subjects.
fn by_template(messages: &[String]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for message in messages {
        let subject = message
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default();
        let template = if subject.starts_with("You're on the") {
            "welcome"
        } else if subject.starts_with("Confirm your email") {
            "verification"
        } else if subject.starts_with("Your email is confirmed") {
            "verified"
        } else if subject.starts_with("A friend joined") {
            "position_update"
        } else if subject.starts_with("You earned") {
            "reward_earned"
        } else if subject.starts_with("Your reward from") {
            "reward_delivery"
        } else if subject.contains("participants") {
            "milestone"
        } else {
            panic!("an email of no known template: {message}")
        };
        *counts.entry(template).or_insert(0) += 1;
    }
    counts
}

/// The verification token mailed to each address.
fn tokens(messages: &[String]) -> HashMap<String, String> {
    messages
        .iter()
        .filter_map(|m| {
            let to = m.lines().find_map(|l| l.strip_prefix("To: "))?;
            // The token has a line of its own, which quoted-printable leaves as it is.
            let mut lines = m
                .lines()
                .skip_while(|l| !l.contains("this verification token:"));
            let token = lines.find(|l| l.trim().len() > 40)?;
            Some((to.trim().to_owned(), token.trim().to_owned()))
        })
        .collect()
}

/// Seed 003's fields, type by type.
fn documented_data_fields(event_type: &str) -> &'static [&'static str] {
    match event_type {
        "user.signed_up" | "user.verified" => &["campaign_id", "email", "user_id"],
        "referral.created" => &["campaign_id", "referral_id", "referred_id", "referrer_id"],
        "referral.verified" => &[
            "campaign_id",
            "points_per_referral",
            "referral_id",
            "referred_id",
            "referrer_id",
        ],
        "reward.earned" => &["campaign_id", "reward_id", "user_id", "user_reward_id"],
        "campaign.milestone_reached" => &["campaign_id", "milestone", "participant_count"],
        other => panic!("an undocumented event type {other}"),
    }
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scripted_campaign_ranks_rewards_announces_and_mails_exactly_once() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("random seed {seed}");
    let mut random = Lcg(seed);
    let stack = WaitlistStack::new().await;
    let smtp = SmtpSink::start().await;
    let receiver = WebhookReceiver::start(2).await;
    // The receiver is on the loopback interface.
    let (gateway, api) = stack
        .start_gateway(&[("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")])
        .await;
    let smtp_env = [("SMTP_URL", smtp.url())];
    let smtp_env: Vec<(&str, &str)> = smtp_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let emailer = stack
        .start_worker("email-worker", "email-workers", &smtp_env)
        .await;
    let positioner = stack
        .start_worker("position-worker", "position-workers", &[])
        .await;
    let mut reward_env = smtp_env.clone();
    reward_env.push(("REWARD_RETRY_BACKOFF", "200ms"));
    // The receiver is on the loopback interface.
    reward_env.push(("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true"));
    let rewarder = stack
        .start_worker("reward-worker", "reward-workers", &reward_env)
        .await;
    let logs = || {
        format!(
            "gateway:\n{}\nemail-worker:\n{}\nposition-worker:\n{}\nreward-worker:\n{}",
            gateway.logs(),
            emailer.logs(),
            positioner.logs(),
            rewarder.logs()
        )
    };
    let http = system_tests::operator_http(&api, stack.db.schema()).await;

    let points = 2;
    let campaign = create_campaign(
        &http,
        (&gateway, &api),
        json!({
            "name": "Launch",
            "points_per_referral": points,
            "reward_tiers": [
                {"name": "Sticker", "referral_threshold": 1, "delivery": "email"},
                {"name": "Hoodie", "referral_threshold": 3, "delivery": "webhook", "webhook_url": receiver.url},
            ],
            "milestones": [25, 100],
            "notify_email": "owner@example.com",
        }),
    )
    .await;
    let campaign_id = campaign["id"].as_str().unwrap().to_owned();
    let secret = campaign["webhook_secret"].as_str().unwrap().to_owned();
    let sticker = campaign["reward_tiers"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hoodie = campaign["reward_tiers"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // 50 signups, each from its own address; participants 10 to 29 were referred, unevenly.
    let referrer_of: Vec<usize> = vec![0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 5, 0, 1, 2, 6, 7, 8, 9, 0];
    let mut participants: Vec<(String, String, String)> = Vec::new(); // (id, email, code)
    let mut referred_by: Vec<Option<usize>> = Vec::new();
    let mut standing_tokens = Vec::new();
    for i in 0..50 {
        let email = format!("p{i}@example.com");
        let referrer = (10..30).contains(&i).then(|| referrer_of[i - 10]);
        let code = referrer.map(|r| participants[r].2.clone());
        let (status, body) = sign_up(
            &http,
            &api,
            &campaign_id,
            &email,
            code.as_deref(),
            &format!("10.0.0.{i}"),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["original_position"], i + 1);
        assert_eq!(body["position"], i + 1);
        if referrer.is_some() {
            assert_eq!(body["referral"], json!({"counted": true}), "{body}");
        }
        assert!(body.get("email").is_none(), "{body}");
        standing_tokens.push(body["participant_token"].as_str().unwrap().to_owned());
        participants.push((
            body["participant_id"].as_str().unwrap().to_owned(),
            email,
            body["referral_code"].as_str().unwrap().to_owned(),
        ));
        referred_by.push(referrer);
    }

    // Tokens arrive by email; verify a random four fifths, in random order.
    wait_until("50 verification emails", PATIENCE, logs, || async {
        tokens(&smtp.messages()).len() == 50
    })
    .await;
    let mailed = tokens(&smtp.messages());
    let mut order: Vec<usize> = (0..50).filter(|_| random.next(5) != 0).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, random.next(i as u64 + 1) as usize);
    }
    let mut verified_referrals = vec![0i64; 50];
    for &i in &order {
        let token = &mailed[&participants[i].1];
        let (status, body) = call(
            http.post(format!("{api}/api/v1/campaigns/{campaign_id}/verify"))
                .json(&json!({"token": token})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["already_verified"], false);
        if let Some(r) = referred_by[i] {
            verified_referrals[r] += 1;
        }
    }
    // Verifying again changes nothing.
    let first = order[0];
    let (status, body) = call(
        http.post(format!("{api}/api/v1/campaigns/{campaign_id}/verify"))
            .json(&json!({"token": mailed[&participants[first].1]})),
    )
    .await;
    assert_eq!((status, &body["already_verified"]), (200, &json!(true)));

    // Positions: the formula, computed here.
    let expected = expected_positions(&verified_referrals, points);
    wait_until("positions to match the formula", PATIENCE, logs, || async {
        stored_positions(&stack, &campaign_id).await == expected
    })
    .await;
    for (i, (id, _, _)) in participants.iter().enumerate().step_by(7) {
        let (status, body) =
            call(http.get(format!("{api}/api/v1/campaigns/{campaign_id}/signups/{id}"))).await;
        assert_eq!(status, 200);
        assert_eq!(body["position"], expected[i], "{body}");
        assert_eq!(body["verified_referral_count"], verified_referrals[i]);
        // The participant reads the same with their participant token, and nobody else's.
        let (status, own) = call(
            reqwest::Client::new()
                .get(format!("{api}/api/v1/campaigns/{campaign_id}/me"))
                .bearer_auth(&standing_tokens[i]),
        )
        .await;
        assert_eq!(status, 200, "{own}");
        assert_eq!(own["position"], expected[i], "{own}");
        assert_eq!(own["referral_code"], participants[i].2.as_str());
        assert!(own.get("email").is_none() && own.get("participant_id").is_none());
    }
    let (_, board) = call(http.get(format!(
        "{api}/api/v1/campaigns/{campaign_id}/leaderboard?limit=5"
    )))
    .await;
    let leader = expected.iter().position(|&p| p == 1).unwrap();
    assert_eq!(
        board["entries"][0],
        json!({"position": 1, "email": "p***@example.com",
               "verified_referral_count": verified_referrals[leader]}),
        "masked, without participant IDs"
    );
    assert_eq!(board["entries"].as_array().unwrap().len(), 5);

    // Every event once, in seed 003's shape, keyed by the campaign.
    let verified = order.len();
    let counted: i64 = verified_referrals.iter().sum();
    let expected_rewards: BTreeSet<(String, String)> = verified_referrals
        .iter()
        .enumerate()
        .flat_map(|(i, &n)| {
            let id = participants[i].0.clone();
            let mut earned = Vec::new();
            if n >= 1 {
                earned.push((id.clone(), sticker.clone()));
            }
            if n >= 3 {
                earned.push((id, hoodie.clone()));
            }
            earned
        })
        .collect();
    let total = 50 + 20 + verified + counted as usize + expected_rewards.len() + 1;
    let messages = read_from_start(&stack.topic.name, total).await;
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    let mut rewards = BTreeSet::new();
    for message in &messages {
        let event: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        let event_type = event["type"].as_str().unwrap().to_owned();
        assert_eq!(
            keys(&event),
            BTreeSet::from([
                "account_id",
                "campaign_id",
                "data",
                "id",
                "timestamp",
                "type",
                "version"
            ]),
            "{event}"
        );
        assert_eq!(
            keys(&event["data"]),
            documented_data_fields(&event_type)
                .iter()
                .copied()
                .collect(),
            "{event}"
        );
        assert!(uuid::Uuid::try_parse(event["id"].as_str().unwrap()).is_ok());
        assert!(chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap()).is_ok());
        assert_eq!(event["campaign_id"], campaign_id.as_str());
        assert_eq!(event["account_id"], campaign_id.as_str());
        assert_eq!(event["data"]["campaign_id"], campaign_id.as_str());
        assert_eq!(message.key(), Some(campaign_id.as_bytes()));
        match event_type.as_str() {
            "referral.verified" => assert_eq!(event["data"]["points_per_referral"], points),
            "reward.earned" => {
                let earned = (
                    event["data"]["user_id"].as_str().unwrap().to_owned(),
                    event["data"]["reward_id"].as_str().unwrap().to_owned(),
                );
                assert!(rewards.insert(earned), "a reward earned twice: {event}");
            }
            "campaign.milestone_reached" => {
                assert_eq!(event["data"]["milestone"], "25_participants");
                assert_eq!(event["data"]["participant_count"], 25);
            }
            _ => {}
        }
        *types.entry(event_type).or_insert(0) += 1;
    }
    assert_eq!(rewards, expected_rewards);
    assert_eq!(
        types,
        BTreeMap::from([
            ("user.signed_up".to_owned(), 50),
            ("referral.created".to_owned(), 20),
            ("user.verified".to_owned(), verified),
            ("referral.verified".to_owned(), counted as usize),
            ("reward.earned".to_owned(), expected_rewards.len()),
            ("campaign.milestone_reached".to_owned(), 1),
        ])
    );
    assert_eq!(message_count(&stack.topic), total as i64, "no event more");

    // Rewards: the webhook ones after two refusals each, signed; every delivery recorded.
    let hoodies = expected_rewards
        .iter()
        .filter(|(_, tier)| *tier == hoodie)
        .count();
    let stickers = expected_rewards.len() - hoodies;
    wait_until("every reward delivered", PATIENCE, logs, || async {
        stack
            .count(
                "SELECT count(*) AS n FROM participant_rewards WHERE delivery_status = 'delivered'",
            )
            .await
            == expected_rewards.len() as i64
    })
    .await;
    let calls = receiver.calls();
    let delivered: Vec<_> = calls.iter().filter(|c| c.answered == 200).collect();
    assert_eq!(
        delivered.len(),
        hoodies,
        "each webhook reward accepted once"
    );
    assert_eq!(calls.len(), hoodies * 3, "two refusals, then the delivery");
    for call in &calls {
        let header = &call.headers["x-waitlist-signature"];
        let (t, v1) = header
            .strip_prefix("t=")
            .and_then(|rest| rest.split_once(",v1="))
            .expect("t=…,v1=…");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&call.body);
        mac.verify_slice(&hex::decode(v1).unwrap())
            .expect("the signature verifies");
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(
            call.headers["idempotency-key"],
            body["id"].as_str().unwrap()
        );
        assert_eq!(body["reward"]["id"], hoodie.as_str());
    }

    // Emails: each once.
    let expected_emails = BTreeMap::from([
        ("welcome", 50),
        ("verification", 50),
        ("verified", verified),
        ("position_update", counted as usize),
        ("reward_earned", expected_rewards.len()),
        ("reward_delivery", stickers),
        ("milestone", 1),
    ]);
    let all: usize = expected_emails.values().sum();
    wait_until("every email", PATIENCE, logs, || async {
        smtp.messages().len() >= all
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(by_template(&smtp.messages()), expected_emails);

    // Replayed from offset 0 by a new group, the events send no email again.
    let replayer = stack
        .start_worker("email-worker", "email-replay", &smtp_env)
        .await;
    let sent_by_email_worker = all - stickers;
    wait_until(
        "the replay to skip every email",
        PATIENCE,
        || replayer.logs(),
        || async {
            let (_, metrics) = replayer.get("/metrics").await;
            let skipped: f64 = metrics
                .lines()
                .filter(|l| l.starts_with("emails_skipped_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            skipped as usize >= sent_by_email_worker
        },
    )
    .await;
    assert_eq!(smtp.messages().len(), all, "a replay sends nothing");
    assert_eq!(message_count(&stack.dlq), 0, "nothing dead-lettered");
}

#[tokio::test(flavor = "multi_thread")]
async fn flagged_referrals_are_kept_and_move_nobody() {
    let stack = WaitlistStack::new().await;
    let (gateway, api) = stack.start_gateway(&[("SIGNUP_IP_LIMIT", "2")]).await;
    let positioner = stack
        .start_worker("position-worker", "position-workers", &[])
        .await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let campaign = create_campaign(
        &http,
        (&gateway, &api),
        json!({"name": "Fraud", "points_per_referral": 5,
               "reward_tiers": [{"name": "Sticker", "referral_threshold": 1, "delivery": "email"}]}),
    )
    .await;
    let campaign_id = campaign["id"].as_str().unwrap();
    let (_, alice) = sign_up(&http, &api, campaign_id, "alice@gmail.com", None, "1.1.1.1").await;
    let code = alice["referral_code"].as_str().unwrap();
    // Alice's own inbox under another spelling is Alice, already signed up: refused, not a
    // referral (see `one_inbox_gets_one_place_in_a_campaign`).
    let (status, body) = sign_up(
        &http,
        &api,
        campaign_id,
        "A.Lice+again@googlemail.com",
        Some(code),
        "2.2.2.2",
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("already_signed_up")),
        "{body}"
    );
    let mut flagged = Vec::new();
    for (email, ip, reason) in [
        ("bob@mailinator.com", "3.3.3.3", "disposable_email"),
        // One client behind the trusted proxy, writing its own X-Forwarded-For entries to the
        // left of what the proxy appended: still one IP.
        ("carol@example.com", "4.4.4.4", ""),
        ("dave@example.com", "5.5.5.5, 4.4.4.4", ""),
        (
            "erin@example.com",
            "6.6.6.6,4.4.4.4",
            "too_many_signups_from_ip",
        ),
    ] {
        let (status, body) = sign_up(&http, &api, campaign_id, email, Some(code), ip).await;
        assert_eq!(status, 201, "{body}");
        // The answer says only whether the referral counts; the reason stays with the owner.
        assert_eq!(
            body["referral"],
            json!({"counted": reason.is_empty()}),
            "{body}"
        );
        if !reason.is_empty() {
            let id = body["participant_id"].as_str().unwrap().to_owned();
            let query = format!(
                "SELECT count(*) AS n FROM referrals
                 WHERE referred_id = '{id}' AND status = 'flagged' AND fraud_reason = '{reason}'"
            );
            assert_eq!(stack.count(&query).await, 1, "{email}: {reason}");
            flagged.push(id);
        }
    }
    // The flagged ones verify (tokens minted with the test secret the services share).
    let tokens = waitlist::VerificationTokens::new(
        service_runtime::testing::TEST_VERIFICATION_SECRET
            .to_owned()
            .into(),
    );
    let campaign_uuid = uuid::Uuid::try_parse(campaign_id).unwrap();
    for id in &flagged {
        let token = tokens.issue(campaign_uuid, uuid::Uuid::try_parse(id).unwrap());
        let (status, body) = call(
            http.post(format!("{api}/api/v1/campaigns/{campaign_id}/verify"))
                .json(&json!({ "token": token })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        stack
            .count("SELECT count(*) AS n FROM referrals WHERE status = 'flagged'")
            .await,
        2,
        "flagged referrals are kept"
    );
    let alice_id = alice["participant_id"].as_str().unwrap();
    let (_, alice_now) = call(http.get(format!(
        "{api}/api/v1/campaigns/{campaign_id}/signups/{alice_id}"
    )))
    .await;
    assert_eq!(alice_now["verified_referral_count"], 0);
    assert_eq!(alice_now["rewards"], json!([]));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stored_positions(&stack, campaign_id).await,
        vec![1, 2, 3, 4, 5],
        "nobody moved\n{}",
        positioner.logs()
    );
    // Only the user.verified events: no referral.verified, no reward.earned.
    let events = read_from_start(&stack.topic.name, 5 + 4 + 2).await;
    assert!(events.iter().all(|m| {
        let event: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        !matches!(
            event["type"].as_str(),
            Some("referral.verified" | "reward.earned")
        )
    }));
    assert_eq!(message_count(&stack.topic), 5 + 4 + 2);
}

/// Verifies participants' addresses with tokens minted with the test secret the services
/// share, as their verification links would.
async fn verify_participants(http: &reqwest::Client, api: &str, campaign_id: &str, ids: &[&str]) {
    let tokens = waitlist::VerificationTokens::new(
        service_runtime::testing::TEST_VERIFICATION_SECRET
            .to_owned()
            .into(),
    );
    let campaign = uuid::Uuid::try_parse(campaign_id).unwrap();
    for id in ids {
        let token = tokens.issue(campaign, uuid::Uuid::try_parse(id).unwrap());
        let (status, body) = call(
            http.post(format!("{api}/api/v1/campaigns/{campaign_id}/verify"))
                .json(&json!({ "token": token })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Runs a statement on the test schema.
async fn execute(stack: &WaitlistStack, statement: &str) {
    use diesel_async::RunQueryDsl as _;
    let mut conn = stack.db.database().connection().await.expect("connection");
    diesel::sql_query(statement)
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn positions_are_rebuilt_by_replaying_the_domain_events() {
    let stack = WaitlistStack::new().await;
    let (gateway, api) = stack.start_gateway(&[]).await;
    let positioner = stack
        .start_worker("position-worker", "position-workers", &[])
        .await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let campaign = create_campaign(
        &http,
        (&gateway, &api),
        json!({"name": "Replay", "points_per_referral": 3,
               "reward_tiers": [{"name": "Sticker", "referral_threshold": 5, "delivery": "email"}]}),
    )
    .await;
    let campaign_id = campaign["id"].as_str().unwrap();
    let mut code = None;
    let mut referred = Vec::new();
    for (i, email) in ["ann", "bob", "carol", "dave", "erin"].iter().enumerate() {
        let ip = format!("10.0.0.{i}");
        let referral = if i >= 3 { code.as_deref() } else { None };
        let (status, body) = sign_up(
            &http,
            &api,
            campaign_id,
            &format!("{email}@example.com"),
            referral,
            &ip,
        )
        .await;
        assert_eq!(status, 201, "{body}");
        if *email == "carol" {
            code = body["referral_code"].as_str().map(str::to_owned);
        }
        if i >= 3 {
            referred.push(body["participant_id"].as_str().unwrap().to_owned());
        }
    }
    let referred: Vec<&str> = referred.iter().map(String::as_str).collect();
    verify_participants(&http, &api, campaign_id, &referred).await;
    let expected = expected_positions(&[0, 0, 2, 0, 0], 3);
    assert_ne!(expected, vec![1, 2, 3, 4, 5]);
    wait_until(
        "carol's referrals to move her up",
        PATIENCE,
        || positioner.logs(),
        || async { stored_positions(&stack, campaign_id).await == expected },
    )
    .await;

    let group = format!("position-workers-{}", stack.suffix);
    let replay = [
        "replay",
        "--group",
        group.as_str(),
        "--topic",
        stack.topic.name.as_str(),
        "--to-earliest",
    ];
    let schema = stack.db.schema();
    let (moved, _, stderr) = system_tests::platform_admin(schema, &replay, &[]).await;
    assert!(!moved && stderr.contains("active member"), "{stderr}");
    positioner.terminate().await;

    // The projection is lost: positions back to signup order, the ranked counts forgotten.
    execute(
        &stack,
        "UPDATE participants SET position = original_position, ranked_referral_count = 0",
    )
    .await;
    assert_eq!(
        stored_positions(&stack, campaign_id).await,
        vec![1, 2, 3, 4, 5]
    );

    let plan = system_tests::platform_admin_json_lines(schema, &replay, &[]).await;
    let to_process: i64 = plan.iter().filter_map(|l| l["to_process"].as_i64()).sum();
    assert!(
        to_process >= 2,
        "the referral.verified events among them: {plan:#?}"
    );
    let positioner = stack
        .start_worker("position-worker", "position-workers", &[])
        .await;
    wait_until(
        "the replay to rebuild the positions",
        PATIENCE,
        || positioner.logs(),
        || async { stored_positions(&stack, campaign_id).await == expected },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_inbox_gets_one_place_in_a_campaign() {
    let stack = WaitlistStack::new().await;
    let (gateway, api) = stack.start_gateway(&[]).await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let campaign = create_campaign(
        &http,
        (&gateway, &api),
        json!({"name": "Inbox", "points_per_referral": 1,
               "reward_tiers": [{"name": "Sticker", "referral_threshold": 1, "delivery": "email"}]}),
    )
    .await;
    let campaign_id = campaign["id"].as_str().unwrap();
    let (_, ann) = sign_up(&http, &api, campaign_id, "ann@example.com", None, "1.1.1.1").await;
    let code = ann["referral_code"].as_str().unwrap();
    let (status, bob) = sign_up(
        &http,
        &api,
        campaign_id,
        "bob+1@gmail.com",
        Some(code),
        "2.2.2.1",
    )
    .await;
    assert_eq!(status, 201, "{bob}");
    // Every other spelling of Bob's inbox, from other IPs: already signed up.
    for (email, ip) in [
        ("bob+2@gmail.com", "2.2.2.2"),
        ("b.o.b@gmail.com", "2.2.2.3"),
        ("BOB@googlemail.com", "2.2.2.4"),
        ("bob@gmail.com", "2.2.2.5"),
    ] {
        let (status, body) = sign_up(&http, &api, campaign_id, email, Some(code), ip).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("already_signed_up")),
            "{email}: {body}"
        );
    }
    // Precomposed and decomposed spellings of one address, and an internationalized domain
    // in both its forms.
    for (first, second) in [
        ("jos\u{e9}@example.com", "jose\u{301}@example.com"),
        ("eva@b\u{fc}cher.example", "EVA@xn--bcher-kva.example"),
    ] {
        let (status, body) = sign_up(&http, &api, campaign_id, first, None, "3.3.3.3").await;
        assert_eq!(status, 201, "{first}: {body}");
        let (status, body) = sign_up(&http, &api, campaign_id, second, None, "3.3.3.4").await;
        assert_eq!(status, 409, "{second}: {body}");
    }
    assert_eq!(
        stack.count("SELECT count(*) AS n FROM referrals").await,
        1,
        "one pending referral for Ann, not four"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors() {
    let stack = WaitlistStack::new().await;
    let (gateway, api) = stack.start_gateway(&[]).await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let campaigns = format!("{api}/api/v1/campaigns");
    for (body, status, code, field) in [
        (json!({"name": ""}), 422, "validation_failed", "name"),
        (
            json!({"name": "x", "points_per_referral": -1}),
            422,
            "validation_failed",
            "points_per_referral",
        ),
        (
            json!({"name": "x", "reward_tiers": [{"name": "t", "referral_threshold": 1, "delivery": "webhook"}]}),
            422,
            "validation_failed",
            "reward_tiers[0].webhook_url",
        ),
        (
            json!({"name": "x", "reward_tiers": [{"name": "t", "referral_threshold": 1, "delivery": "pigeon"}]}),
            422,
            "validation_failed",
            "reward_tiers[0].delivery",
        ),
        (
            json!({"name": "x", "reward_tiers": [{"name": "t", "referral_threshold": 1, "delivery": "webhook", "webhook_url": "http://169.254.169.254/latest/meta-data"}]}),
            422,
            "validation_failed",
            "reward_tiers[0].webhook_url",
        ),
        // IPv6 forms that reach a private IPv4 address: IPv4-compatible, local-use NAT64.
        (
            json!({"name": "x", "reward_tiers": [{"name": "t", "referral_threshold": 1, "delivery": "webhook", "webhook_url": "http://[::127.0.0.1]:9100/"}]}),
            422,
            "validation_failed",
            "reward_tiers[0].webhook_url",
        ),
        (
            json!({"name": "x", "reward_tiers": [{"name": "t", "referral_threshold": 1, "delivery": "webhook", "webhook_url": "http://[64:ff9b:1::a9fe:a9fe]/"}]}),
            422,
            "validation_failed",
            "reward_tiers[0].webhook_url",
        ),
        (
            json!({"name": "x", "reward_tiers": [{"name": "t", "referral_threshold": 1, "delivery": "webhook", "webhook_url": "https://"}]}),
            422,
            "validation_failed",
            "reward_tiers[0].webhook_url",
        ),
        (
            json!({"name": "x", "milestones": [10, 10]}),
            422,
            "validation_failed",
            "milestones[1]",
        ),
        (
            json!({"name": "x", "notify_email": "nope"}),
            422,
            "validation_failed",
            "notify_email",
        ),
    ] {
        let (got, answer) = call(http.post(&campaigns).json(&body)).await;
        assert_eq!(got, status, "{body} → {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    // Fields the type does not have, or of the wrong type, are named like any other.
    for (body, code, field) in [
        (
            json!({"name": "x", "colour": "red"}),
            "unknown_field",
            "colour",
        ),
        (
            json!({"name": "x", "status": "bogus"}),
            "validation_failed",
            "status",
        ),
        (
            json!({"name": "x", "status": null}),
            "validation_failed",
            "status",
        ),
        (
            json!({"name": "x", "reward_tiers": [{"name": "t", "referral_threshold": "3", "delivery": "email"}]}),
            "validation_failed",
            "reward_tiers[0].referral_threshold",
        ),
    ] {
        let (got, answer) = call(http.post(&campaigns).json(&body)).await;
        assert_eq!(
            (
                got,
                answer["error"]["code"].as_str(),
                answer["error"]["field"].as_str()
            ),
            (422, Some(code), Some(field)),
            "{body} → {answer}"
        );
    }

    let paused = create_campaign(
        &http,
        (&gateway, &api),
        json!({"name": "p", "status": "paused"}),
    )
    .await;
    let live = create_campaign(&http, (&gateway, &api), json!({"name": "l"})).await;
    let live_id = live["id"].as_str().unwrap();
    let unknown = uuid::Uuid::now_v7().to_string();
    let cases: Vec<(String, Value, u16, &str)> = vec![
        (
            paused["id"].as_str().unwrap().to_owned(),
            json!({"email": "a@example.com"}),
            409,
            "campaign_not_active",
        ),
        (
            unknown.clone(),
            json!({"email": "a@example.com"}),
            404,
            "campaign_not_found",
        ),
        (
            "not-an-id".to_owned(),
            json!({"email": "a@example.com"}),
            404,
            "campaign_not_found",
        ),
        (
            live_id.to_owned(),
            json!({"email": "not an email"}),
            422,
            "validation_failed",
        ),
        (
            live_id.to_owned(),
            json!({"email": "b@example.com", "referral_code": "NOPE1234"}),
            422,
            "validation_failed",
        ),
    ];
    for (campaign, body, status, code) in cases {
        let (got, answer) = call(
            http.post(format!("{campaigns}/{campaign}/signups"))
                .json(&body),
        )
        .await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body} → {answer}"
        );
    }
    let (got, _) = sign_up(&http, &api, live_id, "c@example.com", None, "9.9.9.9").await;
    assert_eq!(got, 201);
    let (got, answer) = sign_up(&http, &api, live_id, "C@Example.com", None, "9.9.9.9").await;
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (409, Some("already_signed_up"))
    );
    let (got, answer) = call(
        http.post(format!("{campaigns}/{live_id}/verify"))
            .json(&json!({"token": "forged.0000"})),
    )
    .await;
    assert_eq!(
        (got, answer["error"]["field"].as_str()),
        (422, Some("token"))
    );
    let (got, answer) =
        call(http.get(format!("{campaigns}/{live_id}/leaderboard?limit=1000"))).await;
    assert_eq!(
        (got, answer["error"]["field"].as_str()),
        (422, Some("limit"))
    );
    let (got, answer) = call(http.get(format!("{campaigns}/{live_id}/signups/{unknown}"))).await;
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (404, Some("participant_not_found"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_position_workers_keep_positions_right_under_a_burst() {
    let stack = WaitlistStack::new().await;
    let (gateway, api) = stack.start_gateway(&[]).await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    // Three campaigns, so that their events spread over the topic's partitions.
    let mut campaigns = Vec::new();
    for c in 0..3 {
        let campaign = create_campaign(
            &http,
            (&gateway, &api),
            json!({"name": format!("burst {c}"), "points_per_referral": 3}),
        )
        .await;
        let id = campaign["id"].as_str().unwrap().to_owned();
        let mut people: Vec<(String, Option<usize>)> = Vec::new();
        let mut codes: Vec<String> = Vec::new();
        for i in 0..30usize {
            let referrer = (i >= 5 && i % 3 != 0).then_some(i % 5);
            let code = referrer.map(|r| codes[r].clone());
            let (status, body) = sign_up(
                &http,
                &api,
                &id,
                &format!("c{c}p{i}@example.com"),
                code.as_deref(),
                &format!("10.{c}.0.{i}"),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            codes.push(body["referral_code"].as_str().unwrap().to_owned());
            people.push((
                body["participant_id"].as_str().unwrap().to_owned(),
                referrer,
            ));
        }
        campaigns.push((id, people));
    }
    let first = stack
        .start_worker("position-worker", "position-workers", &[])
        .await;
    let second = stack
        .start_worker("position-worker", "position-workers", &[])
        .await;
    // The burst: every referred participant verifies, all campaigns at once.
    let tokens = waitlist::VerificationTokens::new(
        service_runtime::testing::TEST_VERIFICATION_SECRET
            .to_owned()
            .into(),
    );
    let mut verifications = Vec::new();
    for (id, people) in &campaigns {
        for (person, referrer) in people {
            if referrer.is_some() {
                let token = tokens.issue(
                    uuid::Uuid::try_parse(id).unwrap(),
                    uuid::Uuid::try_parse(person).unwrap(),
                );
                verifications.push(
                    http.post(format!("{api}/api/v1/campaigns/{id}/verify"))
                        .json(&json!({ "token": token }))
                        .send(),
                );
            }
        }
    }
    for answer in futures::future::join_all(verifications).await {
        assert_eq!(answer.expect("verify").status(), 200);
    }
    for (id, people) in &campaigns {
        let mut verified = vec![0i64; people.len()];
        for (_, referrer) in people {
            if let Some(r) = referrer {
                verified[*r] += 1;
            }
        }
        let expected = expected_positions(&verified, 3);
        wait_until(
            "positions to match the formula",
            PATIENCE,
            || format!("{}\n{}", first.logs(), second.logs()),
            || async { stored_positions(&stack, id).await == expected },
        )
        .await;
    }
    assert_eq!(message_count(&stack.dlq), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_committed_before_a_gateway_dies_are_published_by_the_next_one() {
    let stack = WaitlistStack::new().await;
    // No relay may publish until the first gateway is dead.
    let hold = stack.db.hold_outbox_relay().await;
    let (gateway, api) = stack.start_gateway(&[]).await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let campaign = create_campaign(&http, (&gateway, &api), json!({"name": "Crash"})).await;
    let campaign_id = campaign["id"].as_str().unwrap();
    let (status, first) = sign_up(
        &http,
        &api,
        campaign_id,
        "first@example.com",
        None,
        "10.0.0.1",
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let code = first["referral_code"].as_str().unwrap();
    for i in 1..10 {
        let (status, body) = sign_up(
            &http,
            &api,
            campaign_id,
            &format!("p{i}@example.com"),
            Some(code),
            &format!("10.0.0.{}", i + 1),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // Ten user.signed_up and nine referral.created, committed and waiting.
    let mut conn = stack.db.database().connection().await.expect("connection");
    #[derive(diesel::QueryableByName)]
    struct EventId {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    let waiting: BTreeSet<String> = diesel_async::RunQueryDsl::load::<EventId>(
        diesel::sql_query("SELECT payload->>'id' AS id FROM outbox_events"),
        &mut conn,
    )
    .await
    .expect("outbox rows")
    .into_iter()
    .map(|row| row.id)
    .collect();
    drop(conn);
    assert_eq!(waiting.len(), 19);
    assert_eq!(message_count(&stack.topic), 0, "nothing relayed yet");

    gateway.kill().await;
    hold.release().await;
    let (next, _) = stack.start_gateway(&[]).await;
    wait_until(
        "the outbox to drain",
        PATIENCE,
        || next.logs(),
        || async { stack.count("SELECT count(*) AS n FROM outbox_events").await == 0 },
    )
    .await;
    let published: BTreeSet<String> = read_from_start(&stack.topic.name, waiting.len())
        .await
        .iter()
        .map(|m| {
            let event: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            event["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(published, waiting, "every committed event, none other");
    assert_eq!(message_count(&stack.topic), 19, "each once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reward_given_up_is_delivered_when_its_dead_letter_is_redriven() {
    let stack = WaitlistStack::new().await;
    let ledger = events::testing::TestTopic::create("dead-letter-redrives", 1).await;
    // Down for the first three requests: both tries of the worker, and one more.
    let receiver = WebhookReceiver::start(3).await;
    let (gateway, api) = stack
        .start_gateway(&[("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")])
        .await;
    let reward_env = [
        ("REWARD_MAX_ATTEMPTS", "2"),
        ("REWARD_RETRY_BACKOFF", "200ms"),
        ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true"),
    ];
    let rewarder = stack
        .start_worker("reward-worker", "reward-workers", &reward_env)
        .await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let campaign = create_campaign(
        &http,
        (&gateway, &api),
        json!({"name": "Redrive", "reward_tiers": [
            {"name": "Hook", "referral_threshold": 1, "delivery": "webhook", "webhook_url": receiver.url},
        ]}),
    )
    .await;
    let campaign_id = campaign["id"].as_str().unwrap();
    let (_, ann) = sign_up(&http, &api, campaign_id, "ann@example.com", None, "1.1.1.1").await;
    let code = ann["referral_code"].as_str().unwrap();
    let (status, bo) = sign_up(
        &http,
        &api,
        campaign_id,
        "bo@example.com",
        Some(code),
        "2.2.2.2",
    )
    .await;
    assert_eq!(status, 201, "{bo}");
    verify_participants(
        &http,
        &api,
        campaign_id,
        &[bo["participant_id"].as_str().unwrap()],
    )
    .await;
    let with_status = |status: &str| {
        format!("SELECT count(*) AS n FROM participant_rewards WHERE delivery_status = '{status}'")
    };
    wait_until(
        "the reward to fail for good",
        PATIENCE,
        || rewarder.logs(),
        || async {
            stack.count(&with_status("failed")).await == 1 && message_count(&stack.dlq) == 1
        },
    )
    .await;

    // The receiver is back (its next answer after one more failure is 200): redrive.
    let env = [
        ("WAITLIST_DLQ_TOPIC", stack.dlq.name.as_str()),
        ("DLQ_REDRIVE_LEDGER_TOPIC", ledger.name.as_str()),
    ];
    let schema = stack.db.schema();
    let listed = system_tests::platform_admin_json_lines(
        schema,
        &["dlq", "list", "--topic", &stack.dlq.name],
        &env,
    )
    .await;
    assert_eq!(
        listed[0]["error_code"], "reward_delivery_failed",
        "{listed:#?}"
    );
    assert_eq!(
        listed[0]["consumer_group"],
        format!("reward-workers-{}", stack.suffix)
    );
    // The topic named twice is read once: the dead letter goes once.
    let run = system_tests::platform_admin_json_lines(
        schema,
        &[
            "dlq",
            "redrive",
            "--topic",
            &stack.dlq.name,
            "--topic",
            &stack.dlq.name,
            "--error-code",
            "reward_delivery_failed",
        ],
        &env,
    )
    .await;
    assert_eq!(run.last().unwrap()["audit"]["sent"], 1, "{run:#?}");
    wait_until(
        "the reward to be delivered",
        PATIENCE,
        || rewarder.logs(),
        || async { stack.count(&with_status("delivered")).await == 1 },
    )
    .await;
    let answers: Vec<u16> = receiver.calls().iter().map(|c| c.answered).collect();
    assert_eq!(
        answers,
        [500, 500, 500, 200],
        "two tries, then two more after the redrive"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_to_internal_addresses_are_refused_and_recorded() {
    let stack = WaitlistStack::new().await;
    let receiver = WebhookReceiver::start(0).await;
    // The gateway lets the campaign through (it would refuse the IP literal otherwise, see
    // bad_requests_get_clear_errors): the worker's own check is what is tested here.
    let (gateway, api) = stack
        .start_gateway(&[("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")])
        .await;
    // WEBHOOK_ALLOW_PRIVATE_NETWORKS unset, as in production.
    let rewarder = stack
        .start_worker("reward-worker", "reward-workers", &[])
        .await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let campaign = create_campaign(
        &http,
        (&gateway, &api),
        json!({"name": "Internal", "reward_tiers": [
            {"name": "By address", "referral_threshold": 1, "delivery": "webhook", "webhook_url": receiver.url},
            {"name": "By name", "referral_threshold": 2, "delivery": "webhook", "webhook_url": by_name},
        ]}),
    )
    .await;
    let campaign_id = campaign["id"].as_str().unwrap();
    let (_, ann) = sign_up(&http, &api, campaign_id, "ann@example.com", None, "1.1.1.1").await;
    let code = ann["referral_code"].as_str().unwrap();
    let tokens = waitlist::VerificationTokens::new(
        service_runtime::testing::TEST_VERIFICATION_SECRET
            .to_owned()
            .into(),
    );
    let campaign_uuid = uuid::Uuid::try_parse(campaign_id).unwrap();
    for (email, ip) in [("bo@example.com", "2.2.2.2"), ("cy@example.com", "3.3.3.3")] {
        let (status, body) = sign_up(&http, &api, campaign_id, email, Some(code), ip).await;
        assert_eq!(status, 201, "{body}");
        let participant = uuid::Uuid::try_parse(body["participant_id"].as_str().unwrap()).unwrap();
        let (status, body) = call(
            http.post(format!("{api}/api/v1/campaigns/{campaign_id}/verify"))
                .json(&json!({ "token": tokens.issue(campaign_uuid, participant) })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    wait_until(
        "both rewards to fail",
        PATIENCE,
        || rewarder.logs(),
        || async {
            stack
            .count("SELECT count(*) AS n FROM participant_rewards WHERE delivery_status = 'failed'")
            .await
            == 2
        },
    )
    .await;
    assert_eq!(
        stack
            .count(
                "SELECT count(*) AS n FROM participant_rewards
                 WHERE delivery_attempts = 1 AND last_error LIKE '%has no public address%'"
            )
            .await,
        2,
        "refused at once, with the reason\n{}",
        rewarder.logs()
    );
    assert!(receiver.calls().is_empty(), "nothing reached the receiver");
    wait_until(
        "both events dead-lettered",
        PATIENCE,
        || rewarder.logs(),
        || async { message_count(&stack.dlq) == 2 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_campaign_creations_is_answered_not_stuck_on_the_pool() {
    let stack = WaitlistStack::new().await;
    // A small pool: each creation must do with one connection, or a burst holds them all.
    let (_gateway, api) = stack
        .start_gateway(&[("DATABASE_POOL_SIZE", "3"), ("DATABASE_POOL_TIMEOUT", "3s")])
        .await;
    let http = system_tests::operator_http(&api, stack.db.schema()).await;
    let creations = (0..20).map(|i| {
        let request = http
            .post(format!("{api}/api/v1/campaigns"))
            .json(&json!({"name": format!("burst {i}")}));
        call(request)
    });
    let answers = futures::future::join_all(creations).await;
    for (status, body) in &answers {
        assert_eq!(*status, 201, "{body}");
    }
    assert_eq!(
        stack
            .count("SELECT count(*) AS n FROM campaigns WHERE name LIKE 'burst %'")
            .await,
        20
    );
}
