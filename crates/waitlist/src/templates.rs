//! Email templates: plain-text files, `Subject: …` on the first line, a blank line, the body;
//! `{{name}}` placeholders. The files in `crates/waitlist/templates/` are built in;
//! `EMAIL_TEMPLATES_DIR` may hold replacements with the same names, read at startup.

use std::collections::BTreeMap;
use std::path::Path;

/// Every template the workers send, with its built-in text.
const BUILT_IN: &[(&str, &str)] = &[
    ("welcome", include_str!("../templates/welcome.txt")),
    (
        "verification",
        include_str!("../templates/verification.txt"),
    ),
    ("verified", include_str!("../templates/verified.txt")),
    (
        "position_update",
        include_str!("../templates/position_update.txt"),
    ),
    (
        "reward_earned",
        include_str!("../templates/reward_earned.txt"),
    ),
    (
        "reward_delivery",
        include_str!("../templates/reward_delivery.txt"),
    ),
    ("milestone", include_str!("../templates/milestone.txt")),
    // Accounts.
    (
        "verify_email",
        include_str!("../templates/verify_email.txt"),
    ),
    (
        "confirm_email_change",
        include_str!("../templates/confirm_email_change.txt"),
    ),
    (
        "email_change_requested",
        include_str!("../templates/email_change_requested.txt"),
    ),
    (
        "email_changed",
        include_str!("../templates/email_changed.txt"),
    ),
    (
        "password_reset",
        include_str!("../templates/password_reset.txt"),
    ),
    (
        "password_changed",
        include_str!("../templates/password_changed.txt"),
    ),
    (
        "account_deleted",
        include_str!("../templates/account_deleted.txt"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("no template named {0}")]
    Unknown(String),
    #[error("template {template}: {reason}")]
    Malformed { template: String, reason: String },
    #[error("template {template} uses {{{{{name}}}}}, which has no value")]
    MissingValue { template: String, name: String },
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct Templates {
    texts: BTreeMap<&'static str, String>,
}

impl Templates {
    pub fn built_in() -> Self {
        Self {
            texts: BUILT_IN
                .iter()
                .map(|(name, text)| (*name, (*text).to_owned()))
                .collect(),
        }
    }

    /// The built-in templates, each replaced by `<dir>/<name>.txt` where that file exists.
    /// Every template is checked for its subject line.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut templates = Self::built_in();
        if let Some(dir) = dir {
            for (name, text) in &mut templates.texts {
                let path = dir.join(format!("{name}.txt"));
                match std::fs::read_to_string(&path) {
                    Ok(replacement) => *text = replacement,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        return Err(TemplateError::Io {
                            path: path.display().to_string(),
                            error,
                        });
                    }
                }
            }
        }
        for (name, text) in &templates.texts {
            split(name, text)?;
        }
        Ok(templates)
    }

    /// Fills in `template` with `values`; every placeholder must have a value.
    pub fn render(
        &self,
        template: &str,
        values: &[(&str, String)],
    ) -> Result<Rendered, TemplateError> {
        let text = self
            .texts
            .get(template)
            .ok_or_else(|| TemplateError::Unknown(template.to_owned()))?;
        let (subject, body) = split(template, text)?;
        Ok(Rendered {
            subject: fill(template, subject, values)?,
            body: fill(template, body, values)?,
        })
    }
}

fn split<'t>(name: &str, text: &'t str) -> Result<(&'t str, &'t str), TemplateError> {
    let malformed = |reason: &str| TemplateError::Malformed {
        template: name.to_owned(),
        reason: reason.to_owned(),
    };
    let (first, rest) = text.split_once('\n').ok_or_else(|| malformed("no body"))?;
    let subject = first
        .strip_prefix("Subject:")
        .ok_or_else(|| malformed("the first line must be `Subject: …`"))?;
    let body = rest
        .strip_prefix('\n')
        .ok_or_else(|| malformed("a blank line must follow the subject"))?;
    Ok((subject.trim(), body))
}

fn fill(template: &str, text: &str, values: &[(&str, String)]) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| TemplateError::Malformed {
            template: template.to_owned(),
            reason: "`{{` without `}}`".to_owned(),
        })?;
        let name = after[..end].trim();
        let value =
            values
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| TemplateError::MissingValue {
                    template: template.to_owned(),
                    name: name.to_owned(),
                })?;
        out.push_str(&value.1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_templates_render_with_their_values() {
        let templates = Templates::load(None).unwrap();
        let milestone = templates
            .render(
                "milestone",
                &[
                    ("campaign_name", "Launch".into()),
                    ("participant_count", "1000".into()),
                    ("milestone", "1000_participants".into()),
                ],
            )
            .unwrap();
        assert_eq!(milestone.subject, "Launch reached 1000 participants");
        assert!(
            milestone
                .body
                .contains("the milestone 1000_participants: 1000")
        );
    }

    #[test]
    fn a_missing_value_or_template_is_an_error() {
        let templates = Templates::built_in();
        assert!(matches!(
            templates.render("milestone", &[]),
            Err(TemplateError::MissingValue { .. })
        ));
        assert!(matches!(
            templates.render("nope", &[]),
            Err(TemplateError::Unknown(_))
        ));
    }

    #[test]
    fn files_in_the_folder_replace_built_in_templates() {
        let dir = std::env::temp_dir().join(format!("templates-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("milestone.txt"), "Subject: {{milestone}}!\n\nYay").unwrap();
        let templates = Templates::load(Some(&dir)).unwrap();
        let rendered = templates
            .render("milestone", &[("milestone", "10_participants".into())])
            .unwrap();
        assert_eq!(rendered.subject, "10_participants!");
        std::fs::write(dir.join("welcome.txt"), "no subject").unwrap();
        assert!(Templates::load(Some(&dir)).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
