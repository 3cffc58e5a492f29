//! API keys: `ck_<prefix>_<secret>`. The prefix (12 lowercase letters and digits) is public
//! and finds the stored record; the secret (32 random bytes, base64url) is shown once and
//! only its Argon2id hash is kept.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;

const PREFIX_CHARS: usize = 12;
const SECRET_BYTES: usize = 32;
/// base64url of 32 bytes, unpadded.
const SECRET_CHARS: usize = 43;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A key just made: the whole key (to show once) and the parts the store keeps.
pub struct Minted {
    pub key: String,
    pub prefix: String,
    pub secret_hash: String,
}

/// The two parts of a string shaped like a key, or `None`.
pub fn split(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("ck_")?;
    let (prefix, secret) = rest.split_at_checked(PREFIX_CHARS)?;
    let secret = secret.strip_prefix('_')?;
    let plain_prefix = prefix.bytes().all(|b| ALPHABET.contains(&b));
    let plain_secret =
        secret.len() == SECRET_CHARS && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (plain_prefix && plain_secret).then_some((prefix, secret))
}

/// A new key from the operating system's random source.
pub fn mint() -> Result<Minted, String> {
    let mut random = [0u8; PREFIX_CHARS + SECRET_BYTES];
    getrandom::fill(&mut random).map_err(|e| format!("no random source: {e}"))?;
    let (head, tail) = random.split_at(PREFIX_CHARS);
    // 256 is a multiple of 36 plus 4, so the first letters are a hair likelier: the prefix
    // is an identifier, not a secret, and this does not weaken anything.
    let prefix: String = head.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tail);
    let secret_hash = hash(&secret)?;
    Ok(Minted { key: format!("ck_{prefix}_{secret}"), prefix, secret_hash })
}

/// The Argon2id hash (PHC string, default parameters) of a key's secret.
pub fn hash(secret: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no random source: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(secret.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `secret` is the one `stored` is the hash of. A stored value that is not a hash
/// matches nothing.
pub fn verify(secret: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_key_reads_back_and_verifies_against_its_hash_only() {
        let minted = mint().unwrap();
        let (prefix, secret) = split(&minted.key).expect("a minted key has the key's shape");
        assert_eq!(prefix, minted.prefix);
        assert!(minted.secret_hash.starts_with("$argon2id$"));
        assert!(!minted.secret_hash.contains(secret));
        assert!(verify(secret, &minted.secret_hash));
        let mut wrong = secret.to_owned();
        wrong.replace_range(0..1, if wrong.starts_with('A') { "B" } else { "A" });
        assert!(!verify(&wrong, &minted.secret_hash));
        assert!(!verify(secret, "not a hash"));
        assert_ne!(mint().unwrap().prefix, minted.prefix);
    }

    #[test]
    fn strings_of_another_shape_are_not_keys() {
        let secret = "a".repeat(SECRET_CHARS);
        assert!(split(&format!("ck_abcdefghijkl_{secret}")).is_some());
        assert!(split(&format!("ck_ABCDEFGHIJKL_{secret}")).is_none());
        assert!(split(&format!("ck_abcdefghijk_{secret}")).is_none());
        assert!(split(&format!("ck_abcdefghijkl_{secret}a")).is_none());
        assert!(split(&format!("ck_abcdefghijkl_{}", "a/".repeat(21) + "a")).is_none());
        assert!(split("ck_").is_none());
        assert!(split("Bearer x").is_none());
        assert!(split("ck_ééééééééééé_x").is_none());
    }
}
