//! Registration bodies, checked field by field so that every refusal names its field. Parsed
//! from a JSON value rather than derived, to say exactly which field is unknown, missing or of
//! the wrong type.

use domain::{Email, Phone};
use serde_json::{Map, Value};

use crate::errors::ApiError;

/// Password length bounds, in characters (Argon2 takes any length; these keep it sane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PasswordRules {
    pub(crate) min_length: usize,
    pub(crate) max_length: usize,
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

const FIELDS: &[&str] = &["email", "phone", "password", "consent"];

/// One registration: `{email | phone, password, consent}`. `prefix` is prepended to field
/// names (`users[3].`).
pub(crate) fn registration(
    body: &Value,
    rules: PasswordRules,
    prefix: &str,
) -> Result<RegistrationInput, ApiError> {
    let field = |name: &str| format!("{prefix}{name}");
    let object = as_object(body, prefix.trim_end_matches('.'))?;
    reject_unknown(object, FIELDS, prefix)?;
    let email = optional_string(object, "email", prefix)?
        .map(|email| {
            Email::parse(email)
                .map_err(|e| ApiError::invalid(field("email"), format!("email {}", e.reason)))
        })
        .transpose()?;
    let phone = optional_string(object, "phone", prefix)?
        .map(|phone| {
            Phone::parse(phone)
                .map_err(|e| ApiError::invalid(field("phone"), format!("phone {}", e.reason)))
        })
        .transpose()?;
    if email.is_none() && phone.is_none() {
        return Err(ApiError::invalid(
            field("email"),
            "one of email and phone is required",
        ));
    }
    let password = match object.get("password") {
        Some(Value::String(password)) => password,
        Some(_) => {
            return Err(ApiError::invalid(
                field("password"),
                "password must be a string",
            ));
        }
        None => return Err(ApiError::invalid(field("password"), "password is required")),
    };
    let length = password.chars().count();
    if length < rules.min_length || length > rules.max_length {
        return Err(ApiError::invalid(
            field("password"),
            format!(
                "password must be {} to {} characters long",
                rules.min_length, rules.max_length
            ),
        ));
    }
    let consent = match object.get("consent") {
        Some(Value::Bool(consent)) => *consent,
        Some(_) => {
            return Err(ApiError::invalid(
                field("consent"),
                "consent must be true or false",
            ));
        }
        None => return Err(ApiError::invalid(field("consent"), "consent is required")),
    };
    Ok(RegistrationInput {
        email,
        phone,
        password: password.clone(),
        consent,
    })
}

/// A bulk request: `{users: [...]}` with 1 to `max_users` registrations. All or nothing: one
/// invalid user refuses the request, naming `users[i].field`.
pub(crate) fn bulk(
    body: &Value,
    rules: PasswordRules,
    max_users: usize,
) -> Result<Vec<RegistrationInput>, ApiError> {
    let object = as_object(body, "")?;
    reject_unknown(object, &["users"], "")?;
    let users = match object.get("users") {
        Some(Value::Array(users)) => users,
        Some(_) => return Err(ApiError::invalid("users", "users must be an array")),
        None => return Err(ApiError::invalid("users", "users is required")),
    };
    if users.is_empty() {
        return Err(ApiError::invalid("users", "users must not be empty"));
    }
    if users.len() > max_users {
        return Err(ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "bulk_too_large",
            format!("at most {max_users} users per request; got {}", users.len()),
        )
        .with_field("users"));
    }
    users
        .iter()
        .enumerate()
        .map(|(index, user)| registration(user, rules, &format!("users[{index}].")))
        .collect()
}

fn as_object<'v>(body: &'v Value, name: &str) -> Result<&'v Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| {
        if name.is_empty() {
            ApiError::bad_request("invalid_body", "the body must be a JSON object")
        } else {
            ApiError::invalid(name, format!("{name} must be an object"))
        }
    })
}

fn reject_unknown(
    object: &Map<String, Value>,
    known: &[&str],
    prefix: &str,
) -> Result<(), ApiError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(unknown) => Err(ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            format!(
                "unknown field {unknown:?}; expected one of {}",
                known.join(", ")
            ),
        )
        .with_field(format!("{prefix}{unknown}"))),
        None => Ok(()),
    }
}

fn optional_string<'v>(
    object: &'v Map<String, Value>,
    name: &str,
    prefix: &str,
) -> Result<Option<&'v str>, ApiError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(ApiError::invalid(
            format!("{prefix}{name}"),
            format!("{name} must be a string"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(body: Value) -> Result<RegistrationInput, ApiError> {
        registration(&body, PasswordRules::default(), "")
    }

    fn refusal(body: Value) -> (&'static str, Option<String>) {
        let error = check(body).unwrap_err();
        (error.code, error.field)
    }

    #[test]
    fn a_valid_registration_passes() {
        let input =
            check(json!({"email": "a@example.com", "password": "long enough", "consent": true}))
                .unwrap();
        assert_eq!(input.email.unwrap().as_str(), "a@example.com");
        let input =
            check(json!({"phone": "+14155550100", "password": "long enough", "consent": false}))
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
        let field = |name: &str| Some(name.to_owned());
        assert_eq!(
            refusal(with("email", json!("nope"))),
            ("validation_failed", field("email"))
        );
        assert_eq!(
            refusal(with("phone", json!("0123"))),
            ("validation_failed", field("phone"))
        );
        assert_eq!(
            refusal(without("email")),
            ("validation_failed", field("email"))
        );
        assert_eq!(
            refusal(with("password", json!("short"))),
            ("validation_failed", field("password"))
        );
        assert_eq!(
            refusal(with("password", json!("x".repeat(129)))),
            ("validation_failed", field("password"))
        );
        assert_eq!(
            refusal(without("password")),
            ("validation_failed", field("password"))
        );
        assert_eq!(
            refusal(with("password", json!(12345678))),
            ("validation_failed", field("password"))
        );
        assert_eq!(
            refusal(without("consent")),
            ("validation_failed", field("consent"))
        );
        assert_eq!(
            refusal(with("consent", json!("yes"))),
            ("validation_failed", field("consent"))
        );
        assert_eq!(
            refusal(with("admin", json!(true))),
            ("unknown_field", field("admin"))
        );
        assert_eq!(check(json!([1])).unwrap_err().code, "invalid_body");
    }

    #[test]
    fn bulk_requests_are_bounded_and_name_the_bad_user() {
        let user = json!({"email": "a@example.com", "password": "long enough", "consent": true});
        let rules = PasswordRules::default();
        assert_eq!(
            bulk(&json!({"users": [user, user]}), rules, 2)
                .unwrap()
                .len(),
            2
        );
        let error = bulk(&json!({"users": [user, user, user]}), rules, 2).unwrap_err();
        assert_eq!(error.code, "bulk_too_large");
        let error = bulk(&json!({"users": []}), rules, 2).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("users"));
        let error = bulk(
            &json!({"users": [user, {"email": "b@example.com"}]}),
            rules,
            2,
        )
        .unwrap_err();
        assert_eq!(error.field.as_deref(), Some("users[1].password"));
        let error = bulk(&json!({"users": [user], "extra": 1}), rules, 2).unwrap_err();
        assert_eq!(error.code, "unknown_field");
    }
}
