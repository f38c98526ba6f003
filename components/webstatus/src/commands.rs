//! Chat commands, for clients that cannot do in-band registration with a component:
//! parsing a message body into a [`Command`], and the fixed texts we answer with.

/// One chat command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `help` (also `?` and anything unknown gets help).
    Help,
    /// `register`: register with the default options.
    Register,
    /// `url`: tell me my URL.
    Url,
    /// `status on|off`: show the status message or not.
    Status(bool),
    /// `jid on|off`: show the JID or not.
    Jid(bool),
    /// `new url`: rotate the token.
    NewUrl,
    /// `unregister`: forget me.
    Unregister,
    /// Anything else (the text, trimmed and capped, for the reply).
    Unknown(String),
}

impl Command {
    /// Parses a message body: case-insensitive, surrounding and repeated spaces ignored.
    pub fn parse(body: &str) -> Command {
        let words: Vec<String> = body
            .split_whitespace()
            .take(4)
            .map(str::to_lowercase)
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["help"] | ["?"] => Command::Help,
            ["register"] => Command::Register,
            ["url"] => Command::Url,
            ["status", flag] => on_off(flag).map_or_else(|| unknown(body), Command::Status),
            ["jid", flag] => on_off(flag).map_or_else(|| unknown(body), Command::Jid),
            ["new", "url"] | ["newurl"] => Command::NewUrl,
            ["unregister"] => Command::Unregister,
            _ => unknown(body),
        }
    }
}

fn on_off(word: &str) -> Option<bool> {
    match word {
        "on" | "yes" | "1" | "true" => Some(true),
        "off" | "no" | "0" | "false" => Some(false),
        _ => None,
    }
}

fn unknown(body: &str) -> Command {
    Command::Unknown(body.trim().chars().take(40).collect())
}

/// The `help` text.
pub fn help(domain: &str) -> String {
    format!(
        "I publish your XMPP presence on the web (an iframe, an SVG badge, JSON, text).\n\
         Commands:\n\
         register: register with the default options (or add {domain} as a contact)\n\
         url: show your web status URL\n\
         status on|off: show your status message on the page or not (default off)\n\
         jid on|off: show your address on the page or not (default off)\n\
         new url: make a new URL (the old one stops working)\n\
         unregister: delete your registration\n\
         help: this text"
    )
}

/// The answer to a command from someone who is not registered.
pub fn not_registered(domain: &str) -> String {
    format!(
        "You are not registered. Send \"register\", add {domain} to your contacts, or \
         register with {domain} from your client's service discovery."
    )
}

/// The message telling a user their URL (after registering, `url` or `new url`).
pub fn your_url(url: &str, first_time: bool) -> String {
    if first_time {
        format!(
            "You are registered. Your web status URL is {url}\n\
             Approve my presence subscription request so the page can show your status. \
             Send \"help\" for options."
        )
    } else {
        format!("Your web status URL is {url}")
    }
}

/// The answer to an unknown command.
pub fn unknown_command(text: &str, domain: &str) -> String {
    format!("Unknown command \"{text}\".\n{}", help(domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let cases = [
            ("help", Command::Help),
            ("  HELP ", Command::Help),
            ("register", Command::Register),
            ("url", Command::Url),
            ("status on", Command::Status(true)),
            ("Status   OFF", Command::Status(false)),
            ("jid on", Command::Jid(true)),
            ("jid off", Command::Jid(false)),
            ("new url", Command::NewUrl),
            ("New  URL", Command::NewUrl),
            ("unregister", Command::Unregister),
        ];
        for (text, expected) in cases {
            assert_eq!(Command::parse(text), expected, "{text:?}");
        }
    }

    #[test]
    fn anything_else_is_unknown() {
        for text in [
            "",
            "status",
            "status maybe",
            "jid",
            "new",
            "url please",
            "hello",
        ] {
            assert!(
                matches!(Command::parse(text), Command::Unknown(_)),
                "{text:?}"
            );
        }
        let long = "x".repeat(1000);
        assert!(matches!(Command::parse(&long), Command::Unknown(t) if t.len() == 40));
    }

    #[test]
    fn texts_mention_what_matters() {
        assert!(help("ws.example").contains("new url"));
        assert!(not_registered("ws.example").contains("ws.example"));
        assert!(your_url("https://x/status/T", true).contains("https://x/status/T"));
    }
}
