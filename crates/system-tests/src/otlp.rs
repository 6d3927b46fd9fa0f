//! A loopback OTLP/HTTP receiver: services export their spans to it
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`), tests read which spans arrived and how they link.

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use service_runtime::testing::free_local_addr;

/// One received span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// `service.name` of the exporting process.
    pub service: String,
    pub name: String,
    /// Hex, 32 digits.
    pub trace_id: String,
    /// Hex, 16 digits.
    pub span_id: String,
    /// Hex, empty for a root span.
    pub parent_span_id: String,
    /// Linked span contexts, as `(trace_id, span_id)` in hex.
    pub links: Vec<(String, String)>,
}

/// The receiver; it stops with the test's runtime.
#[derive(Debug)]
pub struct OtlpReceiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let state = web::Data::new(spans.clone());
        let addr = free_local_addr();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route("/v1/traces", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .bind(addr)
        .expect("bind the OTLP receiver")
        .run();
        tokio::spawn(server);
        Self {
            endpoint: format!("http://{addr}"),
            spans,
        }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("spans").clone()
    }
}

async fn receive(
    body: web::Bytes,
    spans: web::Data<Arc<Mutex<Vec<ReceivedSpan>>>>,
) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut received = spans.lock().expect("spans");
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
            .map(|value| match value {
                AnyValue::StringValue(name) => name.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            received.push(ReceivedSpan {
                service: service.clone(),
                name: span.name,
                trace_id: hex::encode(&span.trace_id),
                span_id: hex::encode(&span.span_id),
                parent_span_id: hex::encode(&span.parent_span_id),
                links: span
                    .links
                    .iter()
                    .map(|link| (hex::encode(&link.trace_id), hex::encode(&link.span_id)))
                    .collect(),
            });
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .finish()
}
