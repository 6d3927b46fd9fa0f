//! Text PostgreSQL cannot store.
//!
//! PostgreSQL's `text` and `jsonb` cannot hold the character U+0000 (NUL): an insert of such a
//! value fails with SQLSTATE 22021 or 22P05, and a batch statement carrying it fails whole. JSON
//! can carry it (`"\u0000"`), so every JSON input (HTTP bodies, Kafka records) is checked for it
//! before it is stored and refused with the path of the offending value.

use serde_json::{Map, Value};

/// The escape JSON writes U+0000 as; no other spelling exists (JSON forbids raw control
/// characters in strings, and `\u` takes four hex digits).
const NUL_ESCAPE: &[u8] = b"\\u0000";

/// Why a JSON document was refused: the path of the first string (or object key) holding
/// U+0000, such as `metadata.note` or `users[2].email`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} contains the character U+0000 (NUL), which cannot be stored")]
pub struct NulInText {
    pub path: String,
}

/// Checks a JSON document's bytes: `Ok` when no string in it holds U+0000. A quick scan of the
/// bytes decides in almost every case; only a document with the escape is parsed (and an
/// unparsable one is left to its real decoder to refuse).
///
/// # Errors
/// [`NulInText`] with the value's path (`$` for the document itself).
pub fn check_json_bytes(json: &[u8]) -> Result<(), NulInText> {
    if memchr::memmem::find(json, NUL_ESCAPE).is_none() {
        return Ok(());
    }
    match serde_json::from_slice::<Value>(json) {
        Ok(value) => check_json(&value),
        Err(_) => Ok(()),
    }
}

/// Checks a parsed JSON value: `Ok` when no string or object key in it holds U+0000.
///
/// # Errors
/// [`NulInText`] with the value's path, dotted for object members and bracketed for array
/// items (`events[1].metadata.note`); `$` for a top-level string.
pub fn check_json(value: &Value) -> Result<(), NulInText> {
    match find(value, &mut String::new()) {
        Some(path) if path.is_empty() => Err(NulInText { path: "$".into() }),
        Some(path) => Err(NulInText { path }),
        None => Ok(()),
    }
}

/// Checks one string field.
///
/// # Errors
/// [`NulInText`] with `path`.
pub fn check_str(path: &str, value: &str) -> Result<(), NulInText> {
    if value.contains('\0') {
        Err(NulInText { path: path.into() })
    } else {
        Ok(())
    }
}

/// Checks the members of a JSON object that sits at `prefix` (`metadata`), without building a
/// `Value` around it.
///
/// # Errors
/// [`NulInText`] with the path under `prefix` (`metadata.note`).
pub fn check_members(prefix: &str, members: &Map<String, Value>) -> Result<(), NulInText> {
    match find_members(members, &mut prefix.to_owned()) {
        Some(path) => Err(NulInText { path }),
        None => Ok(()),
    }
}

fn find_members(members: &Map<String, Value>, path: &mut String) -> Option<String> {
    members.iter().find_map(|(key, item)| {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        // A key holding NUL is named with the character escaped.
        path.push_str(&key.replace('\0', "\\u0000"));
        let found = if key.contains('\0') {
            Some(path.clone())
        } else {
            find(item, path)
        };
        path.truncate(len);
        found
    })
}

fn find(value: &Value, path: &mut String) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(path.clone()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = find(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(members) => find_members(members, path),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(json: &str) -> Option<String> {
        check_json_bytes(json.as_bytes()).err().map(|e| e.path)
    }

    #[test]
    fn nul_is_found_with_its_path() {
        assert_eq!(
            path(r#"{"metadata":{"note":"a\u0000b"}}"#).as_deref(),
            Some("metadata.note")
        );
        assert_eq!(
            path(r#"{"users":[{"email":"a@b.c"},{"email":"x\u0000"}]}"#).as_deref(),
            Some("users[1].email")
        );
        assert_eq!(path(r#"{"k\u0000":1}"#).as_deref(), Some("k\\u0000"));
        assert_eq!(path(r#""\u0000""#).as_deref(), Some("$"));
    }

    #[test]
    fn clean_or_look_alike_text_passes() {
        assert_eq!(path(r#"{"a":"b","n":[1,2,{"c":null}]}"#), None);
        // An escaped backslash followed by "u0000" is six ordinary characters.
        assert_eq!(path(r#"{"a":"\\u0000"}"#), None);
        assert_eq!(path(r#"{"a":"\u0001"}"#), None);
        // Not JSON: left to the real decoder.
        assert_eq!(path("\\u0000 {"), None);
        assert!(check_str("name", "x\0").is_err());
        assert!(check_str("name", "x").is_ok());
    }
}
