use service_runtime::testing::{ServiceProcess, assert_starts_serves_and_stops, free_local_addr};

#[tokio::test(flavor = "multi_thread")]
async fn starts_ready_and_stops_cleanly_on_sigterm() {
    assert_starts_serves_and_stops(env!("CARGO_BIN_EXE_gateway"), "gateway").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_get_the_json_error_shape() {
    let http_addr = free_local_addr().to_string();
    let mut gateway =
        ServiceProcess::spawn(env!("CARGO_BIN_EXE_gateway"), &[("HTTP_ADDR", &http_addr)]);
    gateway.wait_ready().await;
    let url = format!("http://{http_addr}/api/v1/nothing-here");
    gateway.wait_for_listener(&url).await;

    let (status, body) = gateway.get_url(&url).await;
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(
        body["error"]["message"],
        "no route for GET /api/v1/nothing-here"
    );

    let exited = gateway.terminate().await;
    assert_eq!(exited.status.code(), Some(0), "{}", exited.logs);
}
