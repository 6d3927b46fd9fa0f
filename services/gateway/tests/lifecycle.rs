//! The API itself is tested end to end in `crates/system-tests/tests/gateway_api.rs`.

#[tokio::test(flavor = "multi_thread")]
async fn starts_ready_and_stops_cleanly_on_sigterm() {
    service_runtime::testing::assert_starts_serves_and_stops(
        env!("CARGO_BIN_EXE_gateway"),
        "gateway",
    )
    .await;
}
