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
}

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
}
