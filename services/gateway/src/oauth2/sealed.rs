//! Values sealed with AES-256-GCM (authenticated encryption): only this service, holding the
//! key, can read them or make ones it accepts. The text form is base64url of
//! IV (12 bytes) ‖ ciphertext ‖ tag (16 bytes); `aad` binds a sealed value to its use.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};

/// Seals `plain` under `key`.
pub(crate) fn seal(
    key: &[u8; 32],
    aad: &[u8],
    plain: &[u8],
) -> Result<String, openssl::error::ErrorStack> {
    let mut iv = [0_u8; 12];
    openssl::rand::rand_bytes(&mut iv)?;
    let mut tag = [0_u8; 16];
    let cipher = encrypt_aead(Cipher::aes_256_gcm(), key, Some(&iv), aad, plain, &mut tag)?;
    let mut sealed = iv.to_vec();
    sealed.extend_from_slice(&cipher);
    sealed.extend_from_slice(&tag);
    Ok(URL_SAFE_NO_PAD.encode(sealed))
}

/// The plain value, when `sealed` was sealed under `key` with the same `aad` and not altered.
pub(crate) fn open(key: &[u8; 32], aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
    let sealed = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if sealed.len() < 28 {
        return None;
    }
    let (iv, rest) = sealed.split_at(12);
    let (cipher, tag) = rest.split_at(rest.len() - 16);
    decrypt_aead(Cipher::aes_256_gcm(), key, Some(iv), aad, cipher, tag).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_purpose_and_unaltered() {
        let key = [7_u8; 32];
        let sealed = seal(&key, b"purpose", b"hello").unwrap();
        assert_eq!(
            open(&key, b"purpose", &sealed).as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(open(&[8_u8; 32], b"purpose", &sealed), None);
        assert_eq!(open(&key, b"other", &sealed), None);
        let mut altered = sealed.into_bytes();
        altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open(&key, b"purpose", &String::from_utf8(altered).unwrap()),
            None
        );
        assert_eq!(open(&key, b"purpose", "short"), None);
    }
}
