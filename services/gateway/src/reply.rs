//! [`Reply`]: a handler's typed answer, its status and its JSON body of type `T`.

use actix_web::body::BoxBody;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, Responder};
use serde::Serialize;

use crate::observe::KnownUser;

/// A successful answer: a status, a `T` as the JSON body, and for most 201s the `Location` of
/// what was created.
#[derive(Debug)]
pub(crate) struct Reply<T> {
    status: StatusCode,
    location: Option<String>,
    user: Option<String>,
    no_store: bool,
    body: T,
}

impl<T> Reply<T> {
    /// 200 OK.
    pub(crate) fn ok(body: T) -> Self {
        Self {
            status: StatusCode::OK,
            location: None,
            user: None,
            no_store: false,
            body,
        }
    }

    /// 202 Accepted: queued, done later.
    pub(crate) fn accepted(body: T) -> Self {
        Self {
            status: StatusCode::ACCEPTED,
            location: None,
            user: None,
            no_store: false,
            body,
        }
    }

    /// 201 Created.
    pub(crate) fn created(body: T) -> Self {
        Self {
            status: StatusCode::CREATED,
            location: None,
            user: None,
            no_store: false,
            body,
        }
    }

    /// The same answer, about `user_id` (the `user_id` of the request's `api.request` event).
    pub(crate) fn for_user(mut self, user_id: String) -> Self {
        self.user = Some(user_id);
        self
    }

    /// The same answer with `Cache-Control: no-store`: it holds tokens or personal data no
    /// cache may keep (RFC 6749 section 5.1).
    pub(crate) fn no_store(mut self) -> Self {
        self.no_store = true;
        self
    }

    /// The same answer with the path of what was created in `Location`.
    pub(crate) fn at(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }
}

impl<T: Serialize> Responder for Reply<T> {
    type Body = BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(location) = self.location {
            response.insert_header((header::LOCATION, location));
        }
        if self.no_store {
            response.insert_header((header::CACHE_CONTROL, "no-store"));
        }
        let mut response = response.json(self.body);
        if let Some(user_id) = self.user {
            response.extensions_mut().insert(KnownUser(user_id));
        }
        response
    }
}

/// Middleware: a `HEAD` request is answered as the `GET` of the same resource would be, without
/// the body (RFC 9110 section 9.3.2; the HTTP layer leaves the body of an answer to `HEAD` out
/// and keeps its `Content-Length`).
pub(crate) async fn head_as_get(
    mut request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if request.method() == actix_web::http::Method::HEAD {
        request.head_mut().method = actix_web::http::Method::GET;
    }
    next.call(request).await
}
