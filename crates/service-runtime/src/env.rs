use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// A variable that is missing or does not parse. The message names the variable, so an operator
/// knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is required")]
    Missing { name: String },
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    /// A key that would let anyone who guesses it sign tokens. The value is not repeated.
    #[error(
        "environment variable {name} is not a usable signing key: {reason}; \
         generate one with `openssl rand -hex 32`"
    )]
    WeakSecret { name: String, reason: String },
}

/// Signing keys are at least this many bytes (256 bits, the output size of HMAC-SHA256 as
/// RFC 2104 section 3 recommends for its key).
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

/// Words that mark a value copied from an example rather than generated.
const PLACEHOLDER_MARKERS: &[&str] = &[
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "replaceme",
    "replace_me",
    "placeholder",
    "example",
    "your-secret",
    "your_secret",
    "development-only",
    "not-a-secret",
];

/// Environment variables, read once. Tests build one from pairs instead of touching the
/// process environment. An empty value counts as unset.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        Self { vars }
    }

    pub fn optional(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.optional(name).unwrap_or_else(|| default.to_owned())
    }

    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.optional(name).ok_or_else(|| ConfigError::Missing {
            name: name.to_owned(),
        })
    }

    /// A secret: wrapped so that it never shows in logs or debug output.
    pub fn secret(&self, name: &str) -> Option<SecretString> {
        self.optional(name).map(SecretString::from)
    }

    pub fn required_secret(&self, name: &str) -> Result<SecretString, ConfigError> {
        self.required(name).map(SecretString::from)
    }

    /// A key that signs tokens (HMAC): required, at least [`MIN_SIGNING_KEY_BYTES`] bytes, and
    /// not a placeholder (a value containing a marker such as `change-me` or `example`, or made
    /// of fewer than 8 distinct bytes, such as `000…`).
    ///
    /// # Errors
    /// [`ConfigError::Missing`] when unset, [`ConfigError::WeakSecret`] (which does not repeat the
    /// value) when too short or a placeholder.
    pub fn required_signing_key(&self, name: &str) -> Result<SecretString, ConfigError> {
        let value = self.required(name)?;
        let weak = |reason: String| ConfigError::WeakSecret {
            name: name.to_owned(),
            reason,
        };
        if value.len() < MIN_SIGNING_KEY_BYTES {
            return Err(weak(format!(
                "it has {} bytes, at least {MIN_SIGNING_KEY_BYTES} are required",
                value.len()
            )));
        }
        let lower = value.to_ascii_lowercase();
        if let Some(marker) = PLACEHOLDER_MARKERS.iter().find(|m| lower.contains(*m)) {
            return Err(weak(format!("it is a placeholder (contains {marker:?})")));
        }
        let distinct = value
            .bytes()
            .collect::<std::collections::HashSet<u8>>()
            .len();
        if distinct < 8 {
            return Err(weak(format!(
                "it is a placeholder (only {distinct} distinct characters)"
            )));
        }
        Ok(SecretString::from(value))
    }

    /// A value parsed with `FromStr`, or `default` when unset.
    pub fn parse<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.vars.get(name) {
            None => Ok(default),
            Some(value) => value
                .trim()
                .parse()
                .map_err(|e: T::Err| invalid(name, value, e)),
        }
    }

    /// A duration such as `100ms`, `5s` or `1m 30s`, or `default` when unset.
    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.vars.get(name) {
            None => Ok(default),
            Some(value) => {
                humantime::parse_duration(value.trim()).map_err(|e| invalid(name, value, e))
            }
        }
    }
}

fn invalid(name: &str, value: &str, reason: impl Display) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_defaults_and_errors() {
        let env = Env::from_pairs([
            ("SIZE", "12"),
            ("WAIT", "250ms"),
            ("BLANK", "  "),
            ("BAD", "x"),
        ]);
        assert_eq!(env.parse("SIZE", 1usize).unwrap(), 12);
        assert_eq!(env.parse("UNSET", 7usize).unwrap(), 7);
        assert_eq!(
            env.duration("WAIT", Duration::ZERO).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(env.string("BLANK", "fallback"), "fallback");

        let error = env.parse("BAD", 1usize).unwrap_err().to_string();
        assert!(error.contains("BAD=\"x\""), "{error}");
        let error = env.duration("BAD", Duration::ZERO).unwrap_err().to_string();
        assert!(error.contains("BAD"), "{error}");
        let error = env.required("BLANK").unwrap_err().to_string();
        assert_eq!(error, "environment variable BLANK is required");
    }

    #[test]
    fn signing_keys_are_long_random_values_never_placeholders() {
        let good = "3f9a1c0e7b2d4a6f8e1c3b5d7f9a2c4e6b8d0f1a3c5e7b9d";
        let env = Env::from_pairs([
            ("GOOD", good),
            ("SHORT", "s3cr3t-but-short"),
            ("CHANGE_ME", "change-me-change-me-change-me-change-me"),
            ("EXAMPLE", "an-Example-value-that-is-long-enough-to-pass"),
            ("DEV", "local-development-only-0123456789abcdef"),
            ("ZEROS", "00000000000000000000000000000000000000000000"),
            ("AB", "abababababababababababababababababababab"),
        ]);
        use secrecy::ExposeSecret;
        assert_eq!(
            env.required_signing_key("GOOD").unwrap().expose_secret(),
            good
        );
        for name in ["SHORT", "CHANGE_ME", "EXAMPLE", "DEV", "ZEROS", "AB"] {
            let error = env.required_signing_key(name).unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
            assert!(error.contains("openssl rand -hex 32"), "{error}");
            // The value itself never shows in the message.
            assert!(
                !error.contains("0000000000") && !error.contains("s3cr3t"),
                "{error}"
            );
        }
        assert!(matches!(
            env.required_signing_key("UNSET"),
            Err(ConfigError::Missing { .. })
        ));
    }
}
