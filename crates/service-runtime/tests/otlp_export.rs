//! With an OTLP endpoint configured, spans leave the process as OTLP/HTTP protobuf on
//! `<endpoint>/v1/traces`. A minimal HTTP receiver on loopback records what arrives.
//! (Its own test binary: it installs the process-wide subscriber.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use service_runtime::telemetry::{LogFormat, Telemetry, TelemetryConfig};

/// One received request: request line and body.
type Received = (String, Vec<u8>);

/// Accepts connections and answers 200 to each request, reporting what it received.
fn receiver() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (sender, received) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut stream = stream;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            let _ = sender.send((request_line.trim().to_owned(), body));
        }
    });
    (endpoint, received)
}

#[test]
fn spans_are_exported_over_otlp_http_when_an_endpoint_is_set() {
    let (endpoint, received) = receiver();
    let telemetry = Telemetry::init(&TelemetryConfig {
        log_format: LogFormat::Json,
        log_filter: "info".into(),
        otlp_endpoint: Some(endpoint),
        service_name: "otlp-test-service".into(),
        log_to_stderr: false,
    })
    .unwrap();

    tracing::info_span!("registration.batch_flush", batch.size = 3).in_scope(|| {
        tracing::info!("inside the span");
    });
    // Shutdown flushes the batch exporter.
    telemetry.shutdown();

    let (request_line, body) = received
        .recv_timeout(Duration::from_secs(30))
        .expect("no export");
    assert_eq!(request_line, "POST /v1/traces HTTP/1.1");
    let contains = |needle: &str| body.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        contains("registration.batch_flush"),
        "the span name is not in the export"
    );
    assert!(
        contains("otlp-test-service"),
        "the service name is not in the export"
    );
}
