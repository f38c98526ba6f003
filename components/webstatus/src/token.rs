//! Opaque URL tokens: 128 random bits, written as 22 URL-safe base64 characters.
//!
//! A token is the only thing a web status URL contains. It is drawn from the OS-seeded
//! CSPRNG, never derived from the JID, and can be rotated; parsing accepts exactly the
//! canonical 22-character form, so every other path segment is simply "not a token".

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of the textual form: 16 bytes in unpadded base64.
pub const TOKEN_LEN: usize = 22;

/// A web status URL token (a capability: whoever has it can read the status).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token([u8; 16]);

impl Token {
    /// A fresh random token.
    pub fn generate() -> Token {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        Token(bytes)
    }

    /// Parses the canonical 22-character form; anything else is `None`.
    pub fn parse(text: &str) -> Option<Token> {
        if text.len() != TOKEN_LEN {
            return None;
        }
        let mut bytes = [0u8; 16];
        // The engine rejects non-canonical trailing bits, so one text maps to one token.
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(16) => Some(Token(bytes)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = [0u8; TOKEN_LEN];
        // 16 bytes always encode to exactly 22 characters.
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .unwrap_or_default();
        f.write_str(std::str::from_utf8(&buf[..n]).unwrap_or_default())
    }
}

impl std::fmt::Debug for Token {
    /// Only a prefix: logs must not hand out working URLs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.to_string();
        write!(f, "Token({}…)", &text[..4])
    }
}

impl Serialize for Token {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Token::parse(&text).ok_or_else(|| serde::de::Error::custom("not a 22-character token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_url_safe() {
        for _ in 0..100 {
            let token = Token::generate();
            let text = token.to_string();
            assert_eq!(text.len(), TOKEN_LEN);
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(Token::parse(&text), Some(token));
        }
    }

    #[test]
    fn rejects_everything_else() {
        let good = Token::generate().to_string();
        for bad in [
            "",
            "short",
            &good[..21],
            &format!("{good}A"),
            "!!!!!!!!!!!!!!!!!!!!!!",
            "YWxpY2VAbG9jYWxob3N0Cg==",
            "AAAAAAAAAAAAAAAAAAAAAB", // non-canonical trailing bits
        ] {
            assert_eq!(Token::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn two_tokens_differ_and_debug_hides_the_value() {
        let (a, b) = (Token::generate(), Token::generate());
        assert_ne!(a, b);
        let shown = format!("{a:?}");
        assert!(!shown.contains(&a.to_string()));
    }
}
