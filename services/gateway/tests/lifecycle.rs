//! The API itself is tested end to end in `crates/system-tests/tests/gateway_api.rs`.

#[tokio::test(flavor = "multi_thread")]
async fn starts_ready_and_stops_cleanly_on_sigterm() {
    service_runtime::testing::assert_starts_serves_and_stops(
        env!("CARGO_BIN_EXE_gateway"),
        "gateway",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_to_start_with_a_placeholder_or_short_verification_secret() {
    service_runtime::testing::assert_refuses_weak_verification_secrets(env!(
        "CARGO_BIN_EXE_gateway"
    ))
    .await;
}
