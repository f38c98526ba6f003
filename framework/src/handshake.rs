//! The XEP-0114 handshake: the stream header we send and the token that proves the secret
//! (computed by `xmpp_parsers::component::Handshake`).

use minidom::Element;
use xmpp_parsers::component::Handshake;

use crate::serialize::escaped;

/// The opening of our stream to the server (XEP-0114 §3): a `jabber:component:accept`
/// stream addressed to the component's domain.
pub fn stream_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
        escaped(domain)
    )
}

/// The handshake token: lowercase hex of SHA-1(stream id ‖ secret).
///
/// Lowercase matters: ejabberd rejects an uppercase token with `not-authorized`.
pub fn token(stream_id: &str, secret: &str) -> String {
    Element::from(Handshake::from_stream_id_and_password(
        stream_id.to_owned(),
        secret,
    ))
    .text()
}

/// The `<handshake>` element carrying [`token`].
pub fn handshake_element(stream_id: &str, secret: &str) -> String {
    format!("<handshake>{}</handshake>", token(stream_id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0114_example_vector() {
        // XEP-0114 Example 3: stream id 3BF96D32; the example's token is the one for secret "test".
        assert_eq!(
            token("3BF96D32", "test"),
            "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"
        );
    }

    #[test]
    fn token_is_lowercase_hex_of_forty_digits() {
        let ours = token("d085d8f5-12b7-4510-a34f-15facafc418a", "echo-secret");
        assert!(
            ours.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{ours}"
        );
        assert_eq!(ours.len(), 40);
    }

    #[test]
    fn header_escapes_the_domain() {
        let header = stream_header("a'b");
        assert!(header.contains("to='a&apos;b'"));
        assert!(header.contains("xmlns='jabber:component:accept'"));
    }
}
