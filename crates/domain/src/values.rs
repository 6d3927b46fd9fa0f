//! Validated values. Each constructor rejects bad input with an error that says what is wrong,
//! so a value of these types is valid wherever it travels.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a value was refused. `field` names the input, for API error bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidValue {
    InvalidValue {
        field,
        reason: reason.into(),
    }
}

/// An email address the system can send to, in its one canonical form. Every address stored,
/// compared or checked for uniqueness (users, participants, notify emails, the fraud rules)
/// goes through [`Email::parse`], so two spellings of one address are one address:
///
/// - the local part in Unicode NFKC (so full-width `ｂｏｂ` is `bob`, as IDNA maps domains),
///   lower-cased (Unicode's default case conversion; local parts are case-sensitive in theory,
///   in practice no provider tells `Ann` from `ann`), and a
///   dot-atom (RFC 5322 section 3.2.3, with RFC 6531's UTF-8 characters): no leading, trailing
///   or doubled dot, no quoted string, no comment;
/// - the domain in its ASCII form (IDNA 2008 via UTS #46 ToASCII, which also lower-cases and
///   normalizes, so `bücher.example` and `xn--bcher-kva.example` are one domain), a host name of
///   at least two labels, no IP literal;
/// - at most 64 bytes before the `@` and 254 in all (RFC 5321 section 4.5.3.1), no whitespace
///   or control character.
///
/// The local part and the domain pass the checks of `email_address`, the crate lettre (the
/// mailer) validates recipients with, so an accepted address is one the mailer takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Checks `input` and returns it in canonical form (surrounding whitespace removed).
    ///
    /// # Errors
    /// [`InvalidValue`] on field `email`, saying which rule the input breaks.
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        use unicode_normalization::UnicodeNormalization as _;
        let email = input.trim();
        let reject = |reason: &str| Err(invalid("email", reason));
        if email.is_empty() {
            return reject("is empty");
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return reject("contains whitespace or a control character");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return reject("has no @");
        };
        if local.starts_with('"') {
            return reject("has a quoted part before the @, which is not accepted");
        }
        let local: String = local.nfkc().collect::<String>().to_lowercase();
        if local.is_empty() || local.len() > 64 {
            return reject("has an invalid part before the @: 1 to 64 bytes");
        }
        if !email_address::EmailAddress::is_valid_local_part(&local) {
            return reject(
                "has an invalid part before the @ (a dot at its start or end, two dots in a row, \
                 or a character such as ( ) , ; : < > [ ] \\ outside quotes)",
            );
        }
        if domain.starts_with('[') {
            return reject("has an IP address for a domain");
        }
        let Ok(domain) = idna::domain_to_ascii(domain) else {
            return reject("has an invalid domain");
        };
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if !domain.contains('.')
            || !labels_ok
            || !email_address::EmailAddress::is_valid_domain(&domain)
        {
            return reject("has an invalid domain");
        }
        let canonical = format!("{local}@{domain}");
        if canonical.len() > 254 {
            return reject("is longer than 254 characters");
        }
        Ok(Self(canonical))
    }

    /// An address as the database holds it, unchecked: for rows accepted under earlier, looser
    /// rules. Never for input.
    pub fn stored(address: String) -> Self {
        Self(address)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164: `+`, then 2 to 15 digits, the first not 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let phone = input.trim();
        let digits = phone
            .strip_prefix('+')
            .ok_or_else(|| invalid("phone", "must be in E.164 form, starting with +"))?;
        let valid = (2..=15).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_digit())
            && !digits.starts_with('0');
        if !valid {
            return Err(invalid(
                "phone",
                "must be + and 2 to 15 digits, the first not 0 (E.164)",
            ));
        }
        Ok(Self(phone.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a user signs in: an email address or a phone number. An identifier with an `@` is an
/// email; one starting with `+` is a phone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identifier {
    Email(Email),
    Phone(Phone),
}

impl Identifier {
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        if input.trim_start().starts_with('+') {
            Phone::parse(input).map(Self::Phone)
        } else if input.contains('@') {
            Email::parse(input).map(Self::Email)
        } else {
            Err(invalid(
                "identifier",
                "is neither an email address nor an E.164 phone number",
            ))
        }
    }
}

/// The SHA-256 of a token, code or secret, in hex: the only form in which they are stored.
/// Built from the clear value with `of`, or from a stored hash with `from_hex`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenHash(String);

impl TokenHash {
    pub fn of(clear: &str) -> Self {
        Self(hex::encode(Sha256::digest(clear.as_bytes())))
    }

    pub fn from_hex(hash: &str) -> Result<Self, InvalidValue> {
        let valid = hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit());
        if !valid {
            return Err(invalid(
                "token_hash",
                "must be 64 hexadecimal characters (SHA-256)",
            ));
        }
        Ok(Self(hash.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.0[..8])
    }
}

macro_rules! string_value {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    )*};
}
string_value!(Email, Phone);

impl TryFrom<String> for TokenHash {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::from_hex(&value)
    }
}

impl From<TokenHash> for String {
    fn from(value: TokenHash) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for good in [
            "a@b.co",
            "First.Last+tag@Example.COM",
            " x@sub.example.org ",
        ] {
            assert!(Email::parse(good).is_ok(), "{good} should be accepted");
        }
        assert_eq!(Email::parse(" x@y.io ").unwrap().as_str(), "x@y.io");
        for (bad, why) in [
            ("", "is empty"),
            ("no-at.example.com", "has no @"),
            ("@example.com", "invalid part before"),
            ("a@localhost", "invalid domain"),
            ("a@exa mple.com", "whitespace"),
            ("a@-x.com", "invalid domain"),
            ("a@x..com", "invalid domain"),
            // What the mailer refuses: dots at the edges or doubled, comments, quotes, brackets.
            ("ann.@example.com", "invalid part before"),
            (".ann@example.com", "invalid part before"),
            ("a..b@example.com", "invalid part before"),
            ("a(b)@example.com", "invalid part before"),
            ("a,b@example.com", "invalid part before"),
            ("\"a b\"@example.com", "whitespace"),
            ("\"ab\"@example.com", "quoted"),
            ("a@[127.0.0.1]", "IP address"),
            ("a@exa_mple.com", "invalid domain"),
            ("a\u{0}@example.com", "control"),
        ] {
            let error = Email::parse(bad).unwrap_err();
            assert_eq!(error.field, "email");
            assert!(error.reason.contains(why), "{bad}: {error}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn one_spelling_per_address() {
        let canonical = |s: &str| Email::parse(s).unwrap().as_str().to_owned();
        // Precomposed é and e + U+0301 are one address; so are the cases.
        assert_eq!(canonical("jos\u{e9}@example.com"), "jos\u{e9}@example.com");
        assert_eq!(
            canonical("jose\u{301}@example.com"),
            "jos\u{e9}@example.com"
        );
        assert_eq!(canonical("JOS\u{c9}@Example.COM"), "jos\u{e9}@example.com");
        // Full-width letters are their ASCII letters, in the local part as in the domain.
        assert_eq!(
            canonical("\u{ff42}\u{ff4f}\u{ff42}@gmail.com"),
            "bob@gmail.com"
        );
        assert_eq!(canonical("bob@\u{ff47}mail.com"), "bob@gmail.com");
        // An internationalized domain and its ASCII form are one domain.
        assert_eq!(
            canonical("ann@b\u{fc}cher.example"),
            "ann@xn--bcher-kva.example"
        );
        assert_eq!(
            canonical("ann@XN--BCHER-KVA.example"),
            "ann@xn--bcher-kva.example"
        );
        assert_eq!(
            canonical("First.Last+tag@Example.COM"),
            "first.last+tag@example.com"
        );
        // Canonical already: parsing again changes nothing.
        for s in ["jos\u{e9}@xn--bcher-kva.example", "a.b+c@example.org"] {
            assert_eq!(canonical(&canonical(s)), canonical(s));
        }
    }

    #[test]
    fn phones() {
        assert_eq!(
            Phone::parse("+14155552671").unwrap().as_str(),
            "+14155552671"
        );
        for bad in [
            "14155552671",
            "+0123",
            "+1",
            "+1234567890123456",
            "+1 415 555",
            "+44abc",
        ] {
            assert_eq!(Phone::parse(bad).unwrap_err().field, "phone", "{bad}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(matches!(
            Identifier::parse("+4915112345678"),
            Ok(Identifier::Phone(_))
        ));
        assert!(matches!(
            Identifier::parse("u@example.com"),
            Ok(Identifier::Email(_))
        ));
        assert_eq!(
            Identifier::parse("username").unwrap_err().field,
            "identifier"
        );
    }

    #[test]
    fn token_hashes_never_show_the_clear_value() {
        let hash = TokenHash::of("s3cret-token");
        assert_eq!(hash.as_str().len(), 64);
        assert_ne!(hash.as_str(), "s3cret-token");
        assert_eq!(
            TokenHash::from_hex(&hash.as_str().to_uppercase()).unwrap(),
            hash
        );
        assert!(TokenHash::from_hex("abc").is_err());
        assert!(!format!("{hash:?}").contains(hash.as_str()));
        // Known SHA-256 vector.
        assert_eq!(
            TokenHash::of("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn json_round_trips_validate() {
        let email: Email = serde_json::from_str("\"a@b.io\"").unwrap();
        assert_eq!(serde_json::to_string(&email).unwrap(), "\"a@b.io\"");
        assert!(serde_json::from_str::<Email>("\"nope\"").is_err());
        assert!(serde_json::from_str::<Phone>("\"123\"").is_err());
    }
}
