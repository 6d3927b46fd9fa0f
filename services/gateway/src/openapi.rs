//! The API's routes and its OpenAPI 3.1 document, both from one list: each handler's
//! `#[utoipa::path]` describes its parameters, body and answers from the Rust types it takes
//! and returns, and `utoipa_actix_web` registers the handler at the path it documents, so the
//! document cannot name a route the gateway does not serve, or miss one.
//!
//! What every operation may answer beyond its own (the API error body on 500 and 503 with
//! `Retry-After`; 400, 413 and 415 for operations with a body; `Retry-After` on a 429) is added
//! in [`document`]. The document is served at `/api/v1/openapi.json`; a snapshot test keeps
//! every change to it a visible diff (`src/snapshots/`).

use actix_web::{App, HttpResponse, get, web};
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt as _;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::errors::{ErrorBody, ErrorCode};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Signup platform gateway",
        version = "1.0.0",
        description = "Registrations, waitlist campaigns and user activity logs. Every error is \
            `{\"error\": {\"code\", \"message\", \"field\"?}}` with a stable `code`; 503s carry \
            `Retry-After`."
    ),
    components(schemas(ErrorBody, ErrorCode, crate::oauth2::OAuthErrorBody)),
    tags(
        (name = "accounts", description = "Sign-in, sessions, verification, recovery and deletion"),
        (name = "oauth2", description = "The OAuth2 authorization server and OpenID Connect provider: clients, tokens, consents"),
        (name = "registration", description = "Users registered through the queue or at once"),
        (name = "activity", description = "User activity events, published and read back"),
        (name = "waitlist", description = "Campaigns, signups, referrals and rewards"),
        (name = "admin", description = "Platform administration (the `admin` scope)"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// Every route of the API, documented.
pub(crate) fn routes(config: &mut ServiceConfig<'_>) {
    config
        .configure(crate::registration::routes)
        .configure(crate::accounts::routes::routes)
        .configure(crate::federation::routes::routes)
        .configure(crate::oauth2::clients::routes)
        .configure(crate::oauth2::token::routes)
        .configure(crate::oauth2::discovery::routes)
        .configure(crate::activity::routes)
        .configure(crate::campaigns::routes)
        .configure(crate::admin::routes)
        .service(openapi_document);
}

/// The served document, built once at startup.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    json: String,
}

impl Document {
    pub(crate) fn build() -> Self {
        Self {
            json: serde_json::to_string(&document()).expect("the document serializes"),
        }
    }
}

/// This document.
#[utoipa::path(
    tag = "meta",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of the API", content_type = "application/json", body = Object))
)]
#[get("/api/v1/openapi.json")]
async fn openapi_document(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.json.clone())
}

/// The whole document: the routes' own descriptions plus the answers every operation may give.
pub(crate) fn document() -> Value {
    let (_, openapi) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes)
        .split_for_parts();
    let mut value = serde_json::to_value(&openapi).expect("the document serializes");
    add_common_answers(&mut value);
    // Who may call each operation, from the route table.
    value["components"]["securitySchemes"] = crate::access::security_schemes();
    crate::access::document_security(&mut value);
    value
}

fn add_common_answers(document: &mut Value) {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        })
    };
    let mut unavailable = error(
        "Overloaded, or the database or broker is down (`busy`, `database_unavailable`, `queue_unavailable`)",
    );
    unavailable["headers"] = json!({
        "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer", "minimum": 0}}
    });
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        if path.starts_with("/oauth2/") {
            add_oauth2_answers(item);
            continue;
        }
        for operation in item.values_mut() {
            let has_body = operation.get("requestBody").is_some();
            let Some(responses) = operation["responses"].as_object_mut() else {
                continue;
            };
            let mut add = |status: &str, response: Value| {
                responses.entry(status).or_insert(response);
            };
            if has_body {
                add(
                    "400",
                    error("Not JSON (`invalid_json`), or not an object (`invalid_body`)"),
                );
                add(
                    "413",
                    error("The body is larger than `MAX_BODY_BYTES` (`payload_too_large`)"),
                );
                add(
                    "415",
                    error("The body is not `application/json` (`unsupported_media_type`)"),
                );
            }
            add(
                "422",
                error("A value is refused (`validation_failed`, with `field`)"),
            );
            add("500", error("An internal error (`internal_error`)"));
            if let Some(existing) = responses.get_mut("503") {
                existing["headers"] = unavailable["headers"].clone();
            } else {
                responses.insert("503".into(), unavailable.clone());
            }
            // Every throttled answer says when its window ends.
            if let Some(throttled) = responses.get_mut("429") {
                throttled["headers"] = json!({
                    "Retry-After": {"description": "Seconds until the window ends", "schema": {"type": "integer", "format": "int32", "minimum": 0}}
                });
            }
            responses.insert(
                "default".into(),
                error("Any other refusal, in the same shape: 404 `not_found` for a malformed path, 405 `method_not_allowed` (with `Allow`) for a method the path does not take; a `HEAD` is answered as its `GET`, without the body"),
            );
        }
    }
}

/// The OAuth2 endpoints answer every error of their own in RFC 6749's shape (a body that does
/// not parse is an `invalid_request`, not a 4xx of the API's shape).
fn add_oauth2_answers(item: &mut serde_json::Map<String, Value>) {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthErrorBody"}}}
        })
    };
    for operation in item.values_mut() {
        let has_body = operation.get("requestBody").is_some();
        let Some(responses) = operation["responses"].as_object_mut() else {
            continue;
        };
        if has_body {
            responses.entry("400").or_insert_with(|| {
                error("`invalid_request`: not a form, a parameter repeated or malformed")
            });
        }
        responses.insert("500".into(), error("`server_error`"));
        let mut unavailable =
            error("`temporarily_unavailable`: the database or the hashing pool is overloaded");
        unavailable["headers"] = json!({
            "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer", "minimum": 0}}
        });
        responses.insert("503".into(), unavailable);
        responses.insert(
            "default".into(),
            json!({
                "description": "404 `not_found` or 405 `method_not_allowed` (with `Allow`), in the API's error shape",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_matches_its_snapshot() {
        insta::assert_json_snapshot!("openapi", document());
    }

    #[test]
    fn every_operation_answers_errors_in_the_api_shape() {
        let document = document();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().unwrap();
        assert!(paths.len() >= 14, "{} paths", paths.len());
        for (path, item) in paths {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                for status in ["500", "503", "default"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} documents no {status}"
                    );
                }
                assert!(
                    responses["503"]["headers"]["Retry-After"].is_object(),
                    "{method} {path}: 503 without Retry-After"
                );
            }
        }
    }
}
