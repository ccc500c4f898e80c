//! Account names typed on the command line (RFC 7622 bare JIDs), with errors in plain words:
//! what is wrong with the input and what a valid one looks like. The `jid` crate's own texts
//! ("doesn't pass nodeprep validation") name stringprep profiles, not the mistake.

use jid::BareJid;

/// Longer inputs are shortened in messages.
const SHOWN_CHARS: usize = 60;

/// An input as shown in a message: quoted, and shortened when long.
pub fn shown(input: &str) -> String {
    let count = input.chars().count();
    if count <= SHOWN_CHARS {
        format!("'{input}'")
    } else {
        let head: String = input.chars().take(SHOWN_CHARS - 20).collect();
        format!("'{head}…' ({count} characters)")
    }
}

/// Splits and normalises `input` into (domain, username). A name without '@' takes
/// `domains[0]`; the domain must be one of `domains`.
pub fn parse(input: &str, domains: &[String]) -> Result<(String, String), String> {
    let default = domains.first().map_or("localhost", String::as_str);
    let example = format!("alice@{default}");
    let input = input.trim();
    if input.is_empty() {
        return Err(format!("no account given; an account looks like {example}"));
    }
    let text = if input.contains('@') {
        input.to_string()
    } else {
        format!("{input}@{default}")
    };
    let jid = BareJid::new(&text).map_err(|e| {
        let why = explain(input, &text, e);
        format!(
            "{} is not a valid account: {why}; an account looks like {example}",
            shown(input)
        )
    })?;
    let Some(node) = jid.node() else {
        return Err(format!(
            "{} has no username before '@'; an account looks like {example}",
            shown(input)
        ));
    };
    let domain = jid.domain().as_str().to_string();
    if !domains.iter().any(|d| d == &domain) {
        return Err(format!(
            "this server does not host {} (server.domains is {}); an account looks like {example}",
            shown(&domain),
            domains.join(", ")
        ));
    }
    Ok((domain, node.as_str().to_string()))
}

/// What is wrong, in words, for the `jid` crate's error on `text` (`input` with the default
/// domain added when it had none).
fn explain(input: &str, text: &str, e: jid::Error) -> String {
    use jid::Error as E;
    let (node, rest) = text.split_once('@').unwrap_or(("", text));
    match e {
        E::NodeEmpty => "there is nothing before '@'".into(),
        E::TooManyAts => "it has more than one '@'".into(),
        E::ResourceInBareJid | E::ResourceEmpty | E::ResourcePrep | E::ResourceTooLong => {
            "it names a resource (after '/'); accounts are bare JIDs without one".into()
        }
        E::NodeTooLong => format!(
            "the username is {} bytes long; at most 1023 are allowed",
            node.len()
        ),
        E::NodePrep => match node.chars().find(|c| forbidden_in_username(*c)) {
            Some(' ') => "a username cannot contain spaces".into(),
            Some(c) if c.is_control() => "the username contains a control character".into(),
            Some(c) => format!("a username cannot contain '{c}'"),
            None => "the username contains a character that usernames cannot have".into(),
        },
        E::NamePrep | E::Idna if rest.is_empty() && input.ends_with('@') => {
            "there is no domain after '@'".into()
        }
        E::NamePrep | E::Idna => format!("{} is not a valid domain name", shown(rest)),
        E::ResourceMissingInFullJid => "it is not a bare JID".into(),
    }
}

/// RFC 7622 §3.3.1: the characters the UsernameCaseMapped profile excludes on top of
/// PRECIS's (spaces and controls).
fn forbidden_in_username(c: char) -> bool {
    c.is_whitespace() || c.is_control() || "\"&'/:<>@".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["localhost".to_string(), "example.org".to_string()]
    }

    #[test]
    fn valid_names() {
        assert_eq!(
            parse("Alice@localhost", &domains()).unwrap(),
            ("localhost".into(), "alice".into())
        );
        assert_eq!(
            parse("bob", &domains()).unwrap(),
            ("localhost".into(), "bob".into())
        );
        assert_eq!(
            parse("carol@example.org", &domains()).unwrap(),
            ("example.org".into(), "carol".into())
        );
    }

    #[test]
    fn mistakes_in_plain_words() {
        let err = |s: &str| parse(s, &domains()).unwrap_err();
        assert_eq!(
            err("eve@"),
            "'eve@' is not a valid account: there is no domain after '@'; an account looks like alice@localhost"
        );
        assert_eq!(
            err("not a jid"),
            "'not a jid' is not a valid account: a username cannot contain spaces; an account looks like alice@localhost"
        );
        assert!(err("@localhost").contains("nothing before '@'"));
        assert!(err("a@b@c").contains("more than one '@'"));
        assert!(err("alice@localhost/phone").contains("resource"));
        assert!(err("").contains("no account given"));
        assert_eq!(
            err("eve@elsewhere.test"),
            "this server does not host 'elsewhere.test' (server.domains is localhost, example.org); an account looks like alice@localhost"
        );
        let long = "x".repeat(1100);
        let message = err(&format!("{long}@localhost"));
        assert!(message.contains("1100 bytes long"), "{message}");
        assert!(message.contains("(1110 characters)"), "{message}");
        assert!(message.len() < 200, "{message}");
    }
}
