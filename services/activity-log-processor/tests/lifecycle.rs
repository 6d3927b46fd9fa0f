#[tokio::test(flavor = "multi_thread")]
async fn starts_ready_and_stops_cleanly_on_sigterm() {
    let binary = env!("CARGO_BIN_EXE_activity-log-processor");
    service_runtime::testing::assert_starts_serves_and_stops(binary, "activity-log-processor")
        .await;
}
