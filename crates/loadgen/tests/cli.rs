//! The command line as a user meets it. (Also what makes `cargo test --workspace` build the
//! binary that the system tests run against a real gateway.)

use std::process::Command;

#[test]
fn bad_arguments_and_an_absent_gateway_are_clear_errors() {
    let loadgen = env!("CARGO_BIN_EXE_loadgen");
    let bad = Command::new(loadgen)
        .args(["--rate", "0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rate"));

    let absent = Command::new(loadgen)
        .args(["--url", "http://127.0.0.1:9", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(absent.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&absent.stderr);
    assert!(
        stderr.starts_with("loadgen: the gateway at http://127.0.0.1:9 does not answer"),
        "{stderr}"
    );
}
