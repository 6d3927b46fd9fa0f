//! The secrets an account hands out: session tokens, tokens mailed in links and codes sent by
//! text message. Each is random from the operating system's source, given to the user once and
//! stored only as its SHA-256 [`TokenHash`].

use std::fmt;

use crate::{TokenHash, UserId};

/// What a one-time account token is for (the `purpose` column of `account_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenPurpose {
    /// Confirms the email address it was mailed to.
    VerifyEmail,
    /// Confirms the phone number it was texted to (a six-digit code).
    VerifyPhone,
    /// Sets a new password without the old one.
    ResetPassword,
    /// Undoes the deletion of an account within its grace period.
    RestoreAccount,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::VerifyPhone => "verify_phone",
            Self::ResetPassword => "reset_password",
            Self::RestoreAccount => "restore_account",
        }
    }
}

/// A random token: 32 bytes from the OS, as 64 lowercase hexadecimal characters. `Debug`
/// never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken(String);

impl SecretToken {
    /// # Panics
    /// When the operating system has no random source (no system this runs on).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source");
        Self(hex::encode(bytes))
    }

    /// A token as the user hands it back: 64 hexadecimal characters (either case); `None`
    /// for anything else, which no token this system issued can be.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(text.to_ascii_lowercase()))
    }

    /// The token as handed to the user.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored instead of the token.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

/// A six-digit code (`000000` to `999999`, uniformly), for text messages.
pub fn six_digit_code() -> String {
    // Rejection sampling: the largest multiple of 1,000,000 below 2^32 keeps every code equally
    // likely.
    const LIMIT: u32 = u32::MAX - u32::MAX % 1_000_000;
    loop {
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes).expect("the OS random source");
        let n = u32::from_le_bytes(bytes);
        if n < LIMIT {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

/// The stored form of a short code: bound to its user and purpose, so equal codes of two users
/// never collide, and a code of one purpose does nothing for another. A six-digit code is
/// guessable offline from its hash: what protects it is its short life and the limit on wrong
/// tries, not the hash.
pub fn code_hash(user_id: UserId, purpose: TokenPurpose, code: &str) -> TokenHash {
    TokenHash::of(&format!("{}:{}:{code}", purpose.as_str(), user_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_hidden_from_debug() {
        let (a, b) = (SecretToken::generate(), SecretToken::generate());
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.hash(), TokenHash::of(a.expose()));
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(
            SecretToken::parse(&a.expose().to_uppercase()),
            Some(a.clone())
        );
        for not_ours in [
            "",
            "abc",
            &"g".repeat(64),
            &"a".repeat(65),
            &"\u{e9}".repeat(32),
        ] {
            assert_eq!(SecretToken::parse(not_ours), None, "{not_ours:?}");
        }
    }

    #[test]
    fn codes_have_six_digits_and_hash_per_user_and_purpose() {
        for _ in 0..1000 {
            let code = six_digit_code();
            assert_eq!(code.len(), 6);
            assert!(code.chars().all(|c| c.is_ascii_digit()));
        }
        let (one, two) = (UserId::from_i64(1), UserId::from_i64(2));
        let verify = TokenPurpose::VerifyPhone;
        assert_ne!(
            code_hash(one, verify, "123456"),
            code_hash(two, verify, "123456")
        );
        assert_ne!(
            code_hash(one, verify, "123456"),
            code_hash(one, TokenPurpose::ResetPassword, "123456")
        );
    }
}
