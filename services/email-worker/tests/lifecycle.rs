#[tokio::test(flavor = "multi_thread")]
async fn starts_ready_and_stops_cleanly_on_sigterm() {
    let binary = env!("CARGO_BIN_EXE_email-worker");
    service_runtime::testing::assert_starts_serves_and_stops(binary, "email-worker").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_to_start_with_a_placeholder_or_short_verification_secret() {
    service_runtime::testing::assert_refuses_weak_verification_secrets(env!(
        "CARGO_BIN_EXE_email-worker"
    ))
    .await;
}
