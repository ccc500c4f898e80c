//! RFC 5802 §7 SCRAM message syntax (client-first-message with its GS2 header, and
//! client-final-message), parsed strictly: attribute order, `saslname` escapes, printable
//! nonces. Semantic checks (channel binding policy, nonce and proof) live in `mod.rs`.

use crate::failure::Failure;

/// The GS2 channel-binding flag (RFC 5802 §7 `gs2-cbind-flag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CbindFlag<'a> {
    /// `n`: the client does not support channel binding.
    NotSupported,
    /// `y`: the client supports it but thinks the server does not.
    ClientOnly,
    /// `p=cb-name`: the client requires this binding type.
    Required(&'a str),
}

/// A syntactically valid client-first-message.
#[derive(Debug)]
pub(crate) struct ClientFirstMessage<'a> {
    /// The GS2 header exactly as received, both commas included: the client echoes it in `c=`.
    pub gs2_header: &'a str,
    pub cbind_flag: CbindFlag<'a>,
    /// The authzid with `saslname` escapes decoded.
    pub authzid: Option<String>,
    /// The username with `saslname` escapes decoded; not yet SASLprep'ed.
    pub username: String,
    pub client_nonce: &'a str,
    /// client-first-message-bare exactly as received, for AuthMessage.
    pub bare: &'a str,
}

/// A syntactically valid client-final-message.
#[derive(Debug)]
pub(crate) struct ClientFinalMessage<'a> {
    /// The `c=` value, still base64.
    pub channel_binding: &'a str,
    pub nonce: &'a str,
    /// The `p=` value, still base64.
    pub proof: &'a str,
    /// client-final-message-without-proof exactly as received, for AuthMessage.
    pub without_proof: &'a str,
}

/// Attribute names RFC 5802 §5.1 defines. None of them may appear as an extension: `m` because
/// §5.1 says its presence MUST fail authentication, the others because they would be repeats
/// or out of their fixed position.
const DEFINED_ATTRIBUTES: &[u8] = b"acimnprsv";

pub(crate) fn parse_client_first(msg: &str) -> Result<ClientFirstMessage<'_>, Failure> {
    reject_nul(msg)?;
    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    let (flag, rest) = msg.split_once(',').ok_or(Failure::MalformedRequest)?;
    let (authzid, bare) = rest.split_once(',').ok_or(Failure::MalformedRequest)?;
    let gs2_header = &msg[..flag.len() + 1 + authzid.len() + 1];

    let cbind_flag = match flag {
        "n" => CbindFlag::NotSupported,
        "y" => CbindFlag::ClientOnly,
        _ => {
            let name = flag.strip_prefix("p=").ok_or(Failure::MalformedRequest)?;
            // cb-name = 1*(ALPHA / DIGIT / "." / "-")
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !valid {
                return Err(Failure::MalformedRequest);
            }
            CbindFlag::Required(name)
        }
    };
    let authzid = match authzid {
        "" => None,
        a => Some(decode_saslname(
            a.strip_prefix("a=").ok_or(Failure::MalformedRequest)?,
        )?),
    };

    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    let mut attributes = bare.split(',');
    let username = attribute(attributes.next(), b'n')?;
    let username = decode_saslname(username)?;
    let client_nonce = attribute(attributes.next(), b'r')?;
    check_nonce(client_nonce)?;
    check_extensions(attributes)?;

    Ok(ClientFirstMessage {
        gs2_header,
        cbind_flag,
        authzid,
        username,
        client_nonce,
        bare,
    })
}

pub(crate) fn parse_client_final(msg: &str) -> Result<ClientFinalMessage<'_>, Failure> {
    reject_nul(msg)?;
    // client-final-message = client-final-message-without-proof "," proof
    let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(Failure::MalformedRequest)?;
    if proof.is_empty() || proof.contains(',') {
        return Err(Failure::MalformedRequest);
    }
    // client-final-message-without-proof = channel-binding "," nonce ["," extensions]
    let mut attributes = without_proof.split(',');
    let channel_binding = attribute(attributes.next(), b'c')?;
    let nonce = attribute(attributes.next(), b'r')?;
    check_nonce(nonce)?;
    check_extensions(attributes)?;
    Ok(ClientFinalMessage {
        channel_binding,
        nonce,
        proof,
        without_proof,
    })
}

/// Decodes RFC 5802 §5.1 `saslname`: `,` travels as `=2C` and `=` as `=3D`; any other use of
/// `=` is invalid. The RFC's own error for that is `invalid-encoding`, but RFC 6120 §6.5.5
/// reserves `<incorrect-encoding/>` for base64, so a bad escape is a syntax error here:
/// [`Failure::MalformedRequest`].
pub(crate) fn decode_saslname(s: &str) -> Result<String, Failure> {
    if s.is_empty() {
        return Err(Failure::MalformedRequest);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(Failure::MalformedRequest),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Inverse of [`decode_saslname`], for building messages (the client side).
pub(crate) fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// Takes the next attribute, which must be `name=value`, and returns its value. A missing
/// attribute, a different one, or `m` where a mandatory one was due, is malformed.
fn attribute(next: Option<&str>, name: u8) -> Result<&str, Failure> {
    let attr = next.ok_or(Failure::MalformedRequest)?;
    match attr.as_bytes() {
        [n, b'=', ..] if *n == name => Ok(&attr[2..]),
        _ => Err(Failure::MalformedRequest),
    }
}

/// RFC 5802 §7 `c-nonce = printable`: `%x21-2B / %x2D-7E`, at least one character.
fn check_nonce(nonce: &str) -> Result<(), Failure> {
    let printable = |b: u8| (0x21..=0x7e).contains(&b) && b != b',';
    if nonce.is_empty() || !nonce.bytes().all(printable) {
        return Err(Failure::MalformedRequest);
    }
    Ok(())
}

/// `extensions = attr-val *("," attr-val)`, `attr-val = ALPHA "=" value`, `value = 1*value-char`.
/// Unknown extensions are ignored, as RFC 5802 §5.1 requires.
fn check_extensions<'a>(attributes: impl Iterator<Item = &'a str>) -> Result<(), Failure> {
    for attr in attributes {
        match attr.as_bytes() {
            [name, b'=', _, ..]
                if name.is_ascii_alphabetic() && !DEFINED_ATTRIBUTES.contains(name) => {}
            _ => return Err(Failure::MalformedRequest),
        }
    }
    Ok(())
}

fn reject_nul(msg: &str) -> Result<(), Failure> {
    // NUL is excluded from every SCRAM production (value-safe-char starts at %x01).
    if msg.contains('\0') {
        return Err(Failure::MalformedRequest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_plain() {
        let m = parse_client_first("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(m.gs2_header, "n,,");
        assert_eq!(m.cbind_flag, CbindFlag::NotSupported);
        assert_eq!(m.authzid, None);
        assert_eq!(m.username, "user");
        assert_eq!(m.client_nonce, "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(m.bare, "n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    }

    #[test]
    fn client_first_with_binding_authzid_and_extension() {
        let m = parse_client_first("p=tls-exporter,a=a=3Db=2Cc,n=u=2C,r=abc,x=ignored=").unwrap();
        assert_eq!(m.gs2_header, "p=tls-exporter,a=a=3Db=2Cc,");
        assert_eq!(m.cbind_flag, CbindFlag::Required("tls-exporter"));
        assert_eq!(m.authzid.as_deref(), Some("a=b,c"));
        assert_eq!(m.username, "u,");
        assert_eq!(m.bare, "n=u=2C,r=abc,x=ignored=");
    }

    #[test]
    fn client_first_malformed() {
        for msg in [
            "",
            "n",
            "n,",
            "n,,",
            "x,,n=user,r=abc",
            "F,n,,n=user,r=abc",
            "p=,,n=user,r=abc",
            "p=tls_unique,,n=user,r=abc",
            "n,user,n=user,r=abc",
            "n,a=,n=user,r=abc",
            "n,,m=ext,n=user,r=abc",
            "n,,r=abc,n=user",
            "n,,n=user",
            "n,,n=,r=abc",
            "n,,n=us=er,r=abc",
            "n,,n=us=2c,r=abc",
            "n,,n=user=2,r=abc",
            "n,,n=user,r=",
            "n,,n=user,r=a b",
            "n,,n=user,r=\u{e9}",
            "n,,n=user,r=abc,m=x",
            "n,,n=user,r=abc,r=again",
            "n,,n=user,r=abc,x=",
            "n,,n=user,r=abc,",
            "n,,n=user,r=abc,1=x",
            "n,,n=us\0er,r=abc",
        ] {
            assert_eq!(
                parse_client_first(msg).err(),
                Some(Failure::MalformedRequest),
                "{msg:?}"
            );
        }
    }

    #[test]
    fn client_final() {
        let m = parse_client_final("c=biws,r=abcdef,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=").unwrap();
        assert_eq!(m.channel_binding, "biws");
        assert_eq!(m.nonce, "abcdef");
        assert_eq!(m.proof, "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
        assert_eq!(m.without_proof, "c=biws,r=abcdef");

        let m = parse_client_final("c=biws,r=abc,x=y,p=AAAA").unwrap();
        assert_eq!(m.without_proof, "c=biws,r=abc,x=y");
    }

    #[test]
    fn client_final_malformed() {
        for msg in [
            "",
            "c=biws,r=abc",
            "c=biws,r=abc,p=",
            "r=abc,c=biws,p=AAAA",
            "c=biws,p=AAAA",
            "c=biws,r=abc,p=AAAA,x=y",
            "c=biws,r=abc,m=x,p=AAAA",
            "c=biws,r=abc,p=AAAA,p=AAAA",
            "c=biws,r=a\u{7f}c,p=AAAA",
        ] {
            assert_eq!(
                parse_client_final(msg).err(),
                Some(Failure::MalformedRequest),
                "{msg:?}"
            );
        }
    }

    #[test]
    fn saslname_round_trip() {
        for name in ["plain", "a,b", "a=b", "=,=2C", "jüliet"] {
            assert_eq!(decode_saslname(&encode_saslname(name)).unwrap(), name);
        }
    }
}
