//! The OpenAPI 3.1 document of the API, kept beside the code in `openapi.json`; a test checks
//! that every route the gateway serves is in it and answers as documented.

use actix_web::HttpResponse;

pub(crate) const DOCUMENT: &str = include_str!("../openapi.json");

pub(crate) async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT)
}
