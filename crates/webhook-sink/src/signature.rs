//! Standard Webhooks signatures: `webhook-signature: v1,<base64(HMAC-SHA256(key,
//! "{webhook-id}.{webhook-timestamp}.{body}"))>`, the key being the bytes of the
//! `whsec_<base64>` secret. Receivers verify with the specification's published
//! libraries (or four lines of their own) and reject stale timestamps, so every attempt
//! is signed afresh with its own timestamp.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The signing key (zeroed on drop, never shown by `Debug`).
pub struct SigningKey(SecretBox<Vec<u8>>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(REDACTED)")
    }
}

impl Clone for SigningKey {
    fn clone(&self) -> Self {
        Self(SecretBox::new(Box::new(self.0.expose_secret().clone())))
    }
}

impl SigningKey {
    /// Reads a secret as the specification writes it, `whsec_` + base64 of 24 to 64
    /// random bytes (the prefix may be left out). The error never contains the secret.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key =
            STANDARD.decode(encoded).map_err(|_| "not whsec_ followed by base64".to_owned())?;
        if key.len() < 24 || key.len() > 64 {
            return Err(format!(
                "the secret decodes to {} bytes; Standard Webhooks secrets have 24 to 64",
                key.len()
            ));
        }
        Ok(Self(SecretBox::new(Box::new(key))))
    }

    /// `v1,<signature>` for one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes keys of any length.
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.0.expose_secret()) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// Whether `header` (space-separated `v1,<sig>` entries) holds the signature of
    /// this message: what a receiver checks (used by the tests' receiver).
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let expected = self.sign(id, timestamp, body);
        header.split(' ').any(|candidate| constant_time_eq(candidate, &expected))
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn matches_the_specifications_test_vector() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let body = br#"{"test": 2432232314}"#;
        let signature = key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(key.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body, &signature));
        assert!(!key.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_331, body, &signature));
        assert!(!format!("{key:?}").contains("MfKQ"));
    }

    #[test]
    fn bad_secrets_are_refused_without_being_shown() {
        let err = SigningKey::parse("whsec_not*base64").expect_err("invalid");
        assert!(!err.contains("not*base64"), "{err}");
        assert!(SigningKey::parse("whsec_c2hvcnQ=").is_err(), "5 bytes is too short");
        assert!(SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok(), "prefix optional");
    }
}
