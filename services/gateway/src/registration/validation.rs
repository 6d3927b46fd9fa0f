//! Registration bodies: their types (the shapes the OpenAPI document shows), and the checks
//! beyond their types, each refusal naming its field.

use domain::{Email, Phone};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::errors::{ApiError, ErrorCode};

/// Password length bounds, in characters (Argon2 takes any length; these keep it sane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PasswordRules {
    pub(crate) min_length: usize,
    pub(crate) max_length: usize,
}

impl PasswordRules {
    /// 422 naming `field` when the password's length is outside the bounds.
    pub(crate) fn check(&self, field: &str, password: &str) -> Result<(), ApiError> {
        let length = password.chars().count();
        if length < self.min_length || length > self.max_length {
            return Err(ApiError::invalid(
                field,
                format!(
                    "{field} must be {} to {} characters long",
                    self.min_length, self.max_length
                ),
            ));
        }
        Ok(())
    }
}

impl Default for PasswordRules {
    /// OWASP: at least 8; at most 128 keeps hashing cost and abuse bounded.
    fn default() -> Self {
        Self {
            min_length: 8,
            max_length: 128,
        }
    }
}

/// A valid registration request. The password is kept only until it is hashed.
#[derive(Clone)]
pub(crate) struct RegistrationInput {
    pub(crate) email: Option<Email>,
    pub(crate) phone: Option<Phone>,
    pub(crate) password: String,
    pub(crate) consent: bool,
}

impl RegistrationInput {
    /// What the registration is counted by, per identifier: the email address, else the phone
    /// number, in canonical form.
    pub(crate) fn identifier(&self) -> String {
        match (&self.email, &self.phone) {
            (Some(email), _) => email.as_str().to_owned(),
            (None, Some(phone)) => phone.as_str().to_owned(),
            (None, None) => String::new(),
        }
    }
}

impl std::fmt::Debug for RegistrationInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationInput")
            .field("email", &self.email)
            .field("phone", &self.phone)
            .field("password", &"<redacted>")
            .field("consent", &self.consent)
            .finish()
    }
}

/// One registration, as posted: `email` or `phone` (or both), a password and the consent flag.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery", "consent": true}))]
pub(crate) struct RegistrationRequest {
    /// An email address; one of `email` and `phone` is required.
    #[serde(default)]
    #[schema(format = Email)]
    pub(crate) email: Option<String>,
    /// A phone number in E.164 form (`+14155550100`); one of `email` and `phone` is required.
    #[serde(default)]
    #[schema(pattern = r"^\s*\+[1-9][0-9]{1,14}\s*$")]
    pub(crate) phone: Option<String>,
    /// `PASSWORD_MIN_LENGTH` to `PASSWORD_MAX_LENGTH` characters (8 to 128 by default). Hashed
    /// with Argon2id before it leaves the gateway; never stored or logged as sent.
    #[schema(format = Password)]
    pub(crate) password: String,
    /// Whether the user agreed to the terms.
    pub(crate) consent: bool,
}

impl std::fmt::Debug for RegistrationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationRequest")
            .field("email", &self.email)
            .field("phone", &self.phone)
            .field("password", &"<redacted>")
            .field("consent", &self.consent)
            .finish()
    }
}

impl RegistrationRequest {
    /// The checked input, or 422 naming the field (under `prefix`, such as `users[3].`).
    pub(crate) fn validate(
        self,
        rules: PasswordRules,
        prefix: &str,
    ) -> Result<RegistrationInput, ApiError> {
        let email = self
            .email
            .as_deref()
            .map(Email::parse)
            .transpose()
            .map_err(|e| ApiError::from(e).within(prefix))?;
        let phone = self
            .phone
            .as_deref()
            .map(Phone::parse)
            .transpose()
            .map_err(|e| ApiError::from(e).within(prefix))?;
        if email.is_none() && phone.is_none() {
            return Err(
                ApiError::invalid("email", "one of email and phone is required").within(prefix),
            );
        }
        rules
            .check("password", &self.password)
            .map_err(|e| e.within(prefix))?;
        Ok(RegistrationInput {
            email,
            phone,
            password: self.password,
            consent: self.consent,
        })
    }
}

/// Up to `BULK_MAX_USERS` registrations in one request, all or nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkRegistrationRequest {
    /// 1 to `BULK_MAX_USERS` (1000 by default) registrations.
    #[schema(min_items = 1)]
    pub(crate) users: Vec<RegistrationRequest>,
}

impl BulkRegistrationRequest {
    /// Every registration checked; one invalid user refuses the request, naming
    /// `users[i].field`.
    pub(crate) fn validate(
        self,
        rules: PasswordRules,
        max_users: usize,
    ) -> Result<Vec<RegistrationInput>, ApiError> {
        if self.users.is_empty() {
            return Err(ApiError::invalid("users", "users must not be empty"));
        }
        if self.users.len() > max_users {
            return Err(ApiError::new(
                ErrorCode::BulkTooLarge,
                format!(
                    "at most {max_users} users per request; got {}",
                    self.users.len()
                ),
            )
            .with_field("users"));
        }
        self.users
            .into_iter()
            .enumerate()
            .map(|(index, user)| user.validate(rules, &format!("users[{index}].")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::json::parse_body;

    fn check(body: Value) -> Result<RegistrationInput, ApiError> {
        parse_body::<RegistrationRequest>(&body.to_string())?.validate(PasswordRules::default(), "")
    }

    fn refusal(body: Value) -> (ErrorCode, Option<String>) {
        let error = check(body).unwrap_err();
        (error.code, error.field)
    }

    fn bulk(body: Value, max: usize) -> Result<Vec<RegistrationInput>, ApiError> {
        parse_body::<BulkRegistrationRequest>(&body.to_string())?
            .validate(PasswordRules::default(), max)
    }

    #[test]
    fn a_valid_registration_passes() {
        let input =
            check(json!({"email": "a@example.com", "password": "long enough", "consent": true}))
                .unwrap();
        assert_eq!(input.email.unwrap().as_str(), "a@example.com");
        let input = check(
            json!({"phone": "+14155550100", "email": null, "password": "long enough", "consent": false}),
        )
        .unwrap();
        assert!(!input.consent);
        assert!(
            !format!("{input:?}").contains("long enough"),
            "the password is never printed"
        );
    }

    #[test]
    fn each_kind_of_bad_field_is_named() {
        let ok = json!({"email": "a@example.com", "password": "long enough", "consent": true});
        let with = |key: &str, value: Value| {
            let mut body = ok.clone();
            body[key] = value;
            body
        };
        let without = |key: &str| {
            let mut body = ok.clone();
            body.as_object_mut().unwrap().remove(key);
            body
        };
        let invalid = |name: &str| (ErrorCode::ValidationFailed, Some(name.to_owned()));
        assert_eq!(refusal(with("email", json!("nope"))), invalid("email"));
        assert_eq!(refusal(with("email", json!(7))), invalid("email"));
        assert_eq!(refusal(with("phone", json!("0123"))), invalid("phone"));
        assert_eq!(refusal(without("email")), invalid("email"));
        assert_eq!(
            refusal(with("password", json!("short"))),
            invalid("password")
        );
        assert_eq!(
            refusal(with("password", json!("x".repeat(129)))),
            invalid("password")
        );
        assert_eq!(refusal(without("password")), invalid("password"));
        assert_eq!(
            refusal(with("password", json!(12345678))),
            invalid("password")
        );
        assert_eq!(refusal(without("consent")), invalid("consent"));
        assert_eq!(refusal(with("consent", json!("yes"))), invalid("consent"));
        assert_eq!(
            refusal(with("admin", json!(true))),
            (ErrorCode::UnknownField, Some("admin".to_owned()))
        );
        assert_eq!(check(json!([1])).unwrap_err().code, ErrorCode::InvalidBody);
    }

    #[test]
    fn bulk_requests_are_bounded_and_name_the_bad_user() {
        let user = json!({"email": "a@example.com", "password": "long enough", "consent": true});
        assert_eq!(bulk(json!({"users": [user, user]}), 2).unwrap().len(), 2);
        let error = bulk(json!({"users": [user, user, user]}), 2).unwrap_err();
        assert_eq!(error.code, ErrorCode::BulkTooLarge);
        let error = bulk(json!({"users": []}), 2).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("users"));
        let error = bulk(json!({"users": [user, {"email": "b@example.com"}]}), 2).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("users[1].password"));
        let error = bulk(
            json!({"users": [user, {"phone": "12", "password": "long enough", "consent": true}]}),
            2,
        )
        .unwrap_err();
        assert_eq!(error.field.as_deref(), Some("users[1].phone"));
        let error = bulk(json!({"users": [user], "extra": 1}), 2).unwrap_err();
        assert_eq!(error.code, ErrorCode::UnknownField);
    }
}
