//! Tests for the SCRAM server: the RFC 5802 §5 and RFC 7677 §3 vectors, and every failure path,
//! driven by the independent client in `test_client.rs`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::test_client::Client;
use super::*;

const ITERATIONS: u32 = 64;

fn creds(hash: Hash, password: &str) -> ScramCredentials {
    ScramCredentials::derive(hash, password, b"a-test-salt", ITERATIONS).unwrap()
}

fn bindings() -> ChannelBindings {
    ChannelBindings {
        tls_exporter: Some(vec![0xe0; 32]),
        tls_server_end_point: Some(vec![0x5e; 32]),
    }
}

/// Runs a whole exchange and returns the outcome of the final step.
fn run(
    mut server: ScramServer,
    client: &Client,
    credentials: Option<&ScramCredentials>,
) -> Result<Vec<u8>, Failure> {
    server.handle_client_first(&client.first())?;
    let server_first = server.server_first(credentials, 4096);
    let out = client.final_for(&server_first);
    let result = server.handle_client_final(out.message.as_bytes());
    if let Ok(v) = &result {
        assert_eq!(v, out.expected_server_final.as_bytes());
        assert!(server.is_success());
    }
    result
}

#[test]
fn rfc5802_sha1_vector() {
    let salt = BASE64.decode("QSXCR+Q6sek8bf92").unwrap();
    let credentials = ScramCredentials::derive(Hash::Sha1, "pencil", &salt, 4096).unwrap();
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false)
        .with_server_nonce("3rfcNHYJY1ZVvWVs7j");
    let first = server
        .handle_client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")
        .unwrap();
    assert_eq!(first.username, "user");
    assert_eq!(first.authzid, None);
    assert_eq!(
        server.server_first(Some(&credentials), 10_000),
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    );
    let server_final = server
        .handle_client_final(
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        )
        .unwrap();
    assert_eq!(server_final, b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    assert!(server.is_success());
}

#[test]
fn rfc7677_sha256_vector() {
    let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let credentials = ScramCredentials::derive(Hash::Sha256, "pencil", &salt, 4096).unwrap();
    let mut server = ScramServer::new(Hash::Sha256, false, ChannelBindings::default(), false)
        .with_server_nonce("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    server
        .handle_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        .unwrap();
    assert_eq!(
        server.server_first(Some(&credentials), 4096),
        &b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
            [..]
    );
    let server_final = server
        .handle_client_final(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .unwrap();
    assert_eq!(
        server_final,
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
}

#[test]
fn test_client_agrees_with_vector() {
    // Guards the helper: with the RFC 5802 inputs it must produce the RFC's proof.
    let mut client = Client::new(Hash::Sha1, "user", "pencil");
    client.nonce = "fyko+d2lbbFgONRv9qkxdawL".into();
    let out =
        client.final_for(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096");
    assert_eq!(
        out.message,
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    );
    assert_eq!(out.expected_server_final, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
}

#[test]
fn success_both_hashes() {
    for hash in [Hash::Sha1, Hash::Sha256] {
        let server = ScramServer::new(hash, false, ChannelBindings::default(), false);
        let client = Client::new(hash, "juliet", "r0m30");
        run(server, &client, Some(&creds(hash, "r0m30"))).unwrap();
    }
}

#[test]
fn wrong_password() {
    let server = ScramServer::new(Hash::Sha256, false, ChannelBindings::default(), false);
    let client = Client::new(Hash::Sha256, "juliet", "wrong");
    assert_eq!(
        run(server, &client, Some(&creds(Hash::Sha256, "r0m30"))),
        Err(Failure::NotAuthorized)
    );
}

#[test]
fn unknown_user_fails_only_at_final_step() {
    let client = Client::new(Hash::Sha256, "nobody", "guess");
    let mut server = ScramServer::new(Hash::Sha256, false, ChannelBindings::default(), false);
    server.handle_client_first(&client.first()).unwrap();
    let server_first = server.server_first(None, 12_345);
    let text = String::from_utf8(server_first.clone()).unwrap();
    let salt = text.split(",s=").nth(1).unwrap().split(',').next().unwrap();
    assert_eq!(BASE64.decode(salt).unwrap().len(), crate::SALT_LEN);
    assert!(text.ends_with(",i=12345"));
    let out = client.final_for(&server_first);
    assert_eq!(
        server.handle_client_final(out.message.as_bytes()),
        Err(Failure::NotAuthorized)
    );

    // The fake salt is stable per username, like a real account's, and differs between users.
    let salt_of = |name: &str| {
        let mut s = ScramServer::new(Hash::Sha256, false, ChannelBindings::default(), false);
        s.handle_client_first(&Client::new(Hash::Sha256, name, "x").first())
            .unwrap();
        let sf = String::from_utf8(s.server_first(None, 4096)).unwrap();
        sf.split(",s=").nth(1).unwrap().to_owned()
    };
    assert_eq!(salt_of("nobody"), salt_of("nobody"));
    assert_ne!(salt_of("nobody"), salt_of("somebody"));

    // Zero falls back to the RFC default rather than an invalid i=0.
    let mut s = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    s.handle_client_first(&client.first()).unwrap();
    assert!(s.server_first(None, 0).ends_with(b",i=4096"));
}

#[test]
fn mismatched_or_corrupt_credentials_act_as_unknown() {
    let client = Client::new(Hash::Sha256, "juliet", "r0m30");
    let server = ScramServer::new(Hash::Sha256, false, ChannelBindings::default(), false);
    let sha1 = creds(Hash::Sha1, "r0m30");
    assert_eq!(
        run(server, &client, Some(&sha1)),
        Err(Failure::NotAuthorized)
    );

    let mut corrupt = creds(Hash::Sha256, "r0m30");
    corrupt.stored_key.truncate(20);
    let server = ScramServer::new(Hash::Sha256, false, ChannelBindings::default(), false);
    assert_eq!(
        run(server, &client, Some(&corrupt)),
        Err(Failure::NotAuthorized)
    );
}

#[test]
fn stored_iterations_win() {
    let client = Client::new(Hash::Sha1, "juliet", "r0m30");
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    server.handle_client_first(&client.first()).unwrap();
    let sf = server.server_first(Some(&creds(Hash::Sha1, "r0m30")), 100_000);
    assert!(sf.ends_with(format!(",i={ITERATIONS}").as_bytes()));
}

#[test]
fn server_nonce_is_random_and_extends_client_nonce() {
    let client = Client::new(Hash::Sha1, "juliet", "r0m30");
    let nonce = || {
        let mut s = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
        s.handle_client_first(&client.first()).unwrap();
        let sf = String::from_utf8(s.server_first(None, 4096)).unwrap();
        let r = sf.strip_prefix("r=").unwrap().split(',').next().unwrap();
        r.strip_prefix(client.nonce.as_str()).unwrap().to_owned()
    };
    let (a, b) = (nonce(), nonce());
    assert_ne!(a, b);
    assert!(BASE64.decode(&a).unwrap().len() >= 18);
}

#[test]
fn tampered_nonce() {
    let credentials = creds(Hash::Sha1, "r0m30");
    let client = Client::new(Hash::Sha1, "juliet", "r0m30");
    for forged in ["clientnonce+/0123456789", "clientnonce+/0123456789AAAAAAAA"] {
        let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
        server.handle_client_first(&client.first()).unwrap();
        let sf = server.server_first(Some(&credentials), 4096);
        // The proof is computed correctly over the forged nonce, so only the nonce check can fail.
        let out = client.final_with_nonce(&sf, Some(forged));
        assert_eq!(
            server.handle_client_final(out.message.as_bytes()),
            Err(Failure::NotAuthorized)
        );
    }
}

#[test]
fn plus_with_each_binding_type() {
    let b = bindings();
    for (ty, data) in [
        (
            ChannelBindingType::TlsExporter,
            b.tls_exporter.clone().unwrap(),
        ),
        (
            ChannelBindingType::TlsServerEndPoint,
            b.tls_server_end_point.clone().unwrap(),
        ),
    ] {
        for hash in [Hash::Sha1, Hash::Sha256] {
            let mut server = ScramServer::new(hash, true, bindings(), true);
            let client =
                Client::new(hash, "juliet", "r0m30").binding(&format!("p={},,", ty.name()), &data);
            server.handle_client_first(&client.first()).unwrap();
            assert_eq!(server.channel_binding(), Some(ty));
            let sf = server.server_first(Some(&creds(hash, "r0m30")), 4096);
            let out = client.final_for(&sf);
            assert_eq!(
                server.handle_client_final(out.message.as_bytes()).unwrap(),
                out.expected_server_final.as_bytes()
            );
        }
    }
}

#[test]
fn plus_with_wrong_binding_data() {
    let credentials = creds(Hash::Sha256, "r0m30");
    // The other type's data: a client bound to a different TLS channel (a MITM) looks like this.
    let client = Client::new(Hash::Sha256, "juliet", "r0m30").binding(
        "p=tls-exporter,,",
        &bindings().tls_server_end_point.unwrap(),
    );
    let server = ScramServer::new(Hash::Sha256, true, bindings(), true);
    assert_eq!(
        run(server, &client, Some(&credentials)),
        Err(Failure::NotAuthorized)
    );
    // Right data but the header alone, as a non-binding client would send.
    let client = Client::new(Hash::Sha256, "juliet", "r0m30").binding("p=tls-exporter,,", b"");
    let server = ScramServer::new(Hash::Sha256, true, bindings(), true);
    assert_eq!(
        run(server, &client, Some(&credentials)),
        Err(Failure::NotAuthorized)
    );
}

#[test]
fn plus_with_unavailable_or_unknown_type() {
    let exporter_only = ChannelBindings {
        tls_exporter: Some(vec![1; 32]),
        tls_server_end_point: None,
    };
    for header in [
        "p=tls-server-end-point,,",
        "p=tls-unique,,",
        "p=x-weird.1,,",
    ] {
        let mut server = ScramServer::new(Hash::Sha1, true, exporter_only.clone(), true);
        let client = Client::new(Hash::Sha1, "juliet", "r0m30").binding(header, b"");
        assert_eq!(
            server.handle_client_first(&client.first()),
            Err(Failure::NotAuthorized),
            "{header}"
        );
    }
}

#[test]
fn gs2_flag_must_match_mechanism() {
    let client = |header: &str| Client::new(Hash::Sha1, "juliet", "r0m30").binding(header, b"");
    // p= on a non-PLUS mechanism.
    let mut server = ScramServer::new(Hash::Sha1, false, bindings(), true);
    assert_eq!(
        server.handle_client_first(&client("p=tls-exporter,,").first()),
        Err(Failure::MalformedRequest)
    );
    // n or y on a -PLUS mechanism.
    for header in ["n,,", "y,,"] {
        let mut server = ScramServer::new(Hash::Sha1, true, bindings(), true);
        assert_eq!(
            server.handle_client_first(&client(header).first()),
            Err(Failure::MalformedRequest)
        );
    }
}

#[test]
fn y_flag_downgrade_detection() {
    let credentials = creds(Hash::Sha1, "r0m30");
    let client = Client::new(Hash::Sha1, "juliet", "r0m30").binding("y,,", b"");
    let mut server = ScramServer::new(Hash::Sha1, false, bindings(), true);
    assert_eq!(
        server.handle_client_first(&client.first()),
        Err(Failure::NotAuthorized)
    );
    // Without -PLUS on offer, "y" is honest and fine; c= is then base64("y,,") = "eSws".
    let server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    run(server, &client, Some(&credentials)).unwrap();
}

#[test]
fn c_must_echo_exact_gs2_header() {
    let credentials = creds(Hash::Sha1, "r0m30");
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    let client = Client::new(Hash::Sha1, "juliet", "r0m30").binding("n,a=romeo@example.net,", b"");
    let first = server.handle_client_first(&client.first()).unwrap();
    assert_eq!(first.authzid.as_deref(), Some("romeo@example.net"));
    let sf = server.server_first(Some(&credentials), 4096);
    // A client that drops the authzid from c= (sending "biws") must fail.
    let liar = Client::new(Hash::Sha1, "juliet", "r0m30");
    let out = liar.final_for(&sf);
    assert_eq!(
        server.handle_client_final(out.message.as_bytes()),
        Err(Failure::NotAuthorized)
    );
    // The honest client succeeds.
    let server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    run(server, &client, Some(&credentials)).unwrap();
}

#[test]
fn username_escapes_and_saslprep() {
    let credentials = creds(Hash::Sha256, "r0m30");
    let mut server = ScramServer::new(Hash::Sha256, false, ChannelBindings::default(), false);
    let client = Client::new(Hash::Sha256, "a,b=c\u{ad}", "r0m30");
    let first = server.handle_client_first(&client.first()).unwrap();
    assert_eq!(first.username, "a,b=c");
    assert_eq!(server.username(), Some("a,b=c"));
    let sf = server.server_first(Some(&credentials), 4096);
    let out = client.final_for(&sf);
    server.handle_client_final(out.message.as_bytes()).unwrap();

    for name in ["\u{ad}", "bell\u{7}"] {
        let mut server = ScramServer::new(Hash::Sha256, false, ChannelBindings::default(), false);
        assert_eq!(
            server.handle_client_first(&Client::new(Hash::Sha256, name, "x").first()),
            Err(Failure::MalformedRequest)
        );
    }
}

#[test]
fn encoding_and_syntax_errors() {
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    assert_eq!(
        server.handle_client_first(b"n,,n=\xff,r=abc"),
        Err(Failure::IncorrectEncoding)
    );
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    assert_eq!(
        server.handle_client_first(b"n,,m=x,n=user,r=abc"),
        Err(Failure::MalformedRequest)
    );

    let credentials = creds(Hash::Sha1, "r0m30");
    let client = Client::new(Hash::Sha1, "juliet", "r0m30");
    let final_msg = |mangle: &dyn Fn(&str) -> String| {
        let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
        server.handle_client_first(&client.first()).unwrap();
        let sf = server.server_first(Some(&credentials), 4096);
        let out = client.final_for(&sf);
        server.handle_client_final(mangle(&out.message).as_bytes())
    };
    assert!(final_msg(&|m| m.to_owned()).is_ok());
    assert_eq!(
        final_msg(&|m| m.replacen("c=biws", "c=b!ws", 1)),
        Err(Failure::IncorrectEncoding)
    );
    assert_eq!(
        final_msg(&|m| format!("{}AA==", &m[..m.find(",p=").unwrap() + 3])),
        Err(Failure::MalformedRequest)
    );
    assert_eq!(
        final_msg(&|m| m.replacen(",p=", ",m=x,p=", 1)),
        Err(Failure::MalformedRequest)
    );
    // Unknown optional extensions are ignored but still covered by the proof (AuthMessage).
    assert_eq!(
        final_msg(&|m| m.replacen(",p=", ",x=y,p=", 1)),
        Err(Failure::NotAuthorized)
    );
}

#[test]
fn calls_out_of_order() {
    let client = Client::new(Hash::Sha1, "juliet", "r0m30");
    let credentials = creds(Hash::Sha1, "r0m30");

    // Final before anything.
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    assert_eq!(
        server.handle_client_final(b"c=biws,r=abc,p=AAAA"),
        Err(Failure::MalformedRequest)
    );
    // ... which ends the exchange.
    assert_eq!(
        server.handle_client_first(&client.first()),
        Err(Failure::MalformedRequest)
    );

    // server_first before client_first.
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    assert_eq!(
        server.try_server_first(Some(&credentials), 4096),
        Err(Failure::MalformedRequest)
    );
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    assert!(server.server_first(Some(&credentials), 4096).is_empty());
    assert_eq!(
        server.handle_client_first(&client.first()),
        Err(Failure::MalformedRequest)
    );

    // client_first twice; final skipping server_first.
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    server.handle_client_first(&client.first()).unwrap();
    assert_eq!(
        server.handle_client_final(b"c=biws,r=abc,p=AAAA"),
        Err(Failure::MalformedRequest)
    );
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    server.handle_client_first(&client.first()).unwrap();
    assert_eq!(
        server.handle_client_first(&client.first()),
        Err(Failure::MalformedRequest)
    );

    // Nothing after success: no replaying the final message.
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    server.handle_client_first(&client.first()).unwrap();
    let sf = server.server_first(Some(&credentials), 4096);
    assert!(server.try_server_first(Some(&credentials), 4096).is_err());
    let out = client.final_for(&sf);
    // try_server_first out of order ended the exchange.
    assert_eq!(
        server.handle_client_final(out.message.as_bytes()),
        Err(Failure::MalformedRequest)
    );
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    server.handle_client_first(&client.first()).unwrap();
    let sf = server.server_first(Some(&credentials), 4096);
    let out = client.final_for(&sf);
    server.handle_client_final(out.message.as_bytes()).unwrap();
    assert_eq!(
        server.handle_client_final(out.message.as_bytes()),
        Err(Failure::MalformedRequest)
    );
    assert!(!server.is_success());

    // No second try after a wrong proof.
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    server.handle_client_first(&client.first()).unwrap();
    let sf = server.server_first(Some(&credentials), 4096);
    let bad = Client::new(Hash::Sha1, "juliet", "nope").final_for(&sf);
    assert_eq!(
        server.handle_client_final(bad.message.as_bytes()),
        Err(Failure::NotAuthorized)
    );
    let good = client.final_for(&sf);
    assert_eq!(
        server.handle_client_final(good.message.as_bytes()),
        Err(Failure::MalformedRequest)
    );
}

#[test]
fn for_mechanism_and_debug() {
    assert!(ScramServer::for_mechanism(Mechanism::Plain, bindings(), true).is_none());
    for m in Mechanism::ALL.into_iter().filter(|m| m.is_scram()) {
        let s = ScramServer::for_mechanism(m, bindings(), true).unwrap();
        assert_eq!(s.mechanism(), m);
        assert_eq!(s.is_plus(), m.is_plus());
        assert_eq!(Some(s.hash()), m.hash());
    }

    let credentials = creds(Hash::Sha1, "r0m30");
    let client = Client::new(Hash::Sha1, "juliet", "r0m30");
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    server.handle_client_first(&client.first()).unwrap();
    server.server_first(Some(&credentials), 4096);
    let debug = format!("{server:?}");
    assert!(debug.contains("awaiting-client-final"));
    assert!(!debug.contains(&format!("{:?}", credentials.stored_key)));
    assert!(!debug.contains(&BASE64.encode(&credentials.server_key)));
}

#[test]
fn unknown_user_fails_even_if_fake_keys_were_guessed() {
    // The fake keys are random, so no client can match them; this checks the second line of
    // defence by planting keys a client can match and expecting failure anyway.
    let client = Client::new(Hash::Sha1, "nobody", "guess");
    let mut server = ScramServer::new(Hash::Sha1, false, ChannelBindings::default(), false);
    server.handle_client_first(&client.first()).unwrap();
    let sf = server.server_first(None, 16);
    let text = String::from_utf8(sf.clone()).unwrap();
    let salt = text.split(",s=").nth(1).unwrap().split(',').next().unwrap();
    let planted =
        ScramCredentials::derive(Hash::Sha1, "guess", &BASE64.decode(salt).unwrap(), 16).unwrap();
    let State::AwaitingClientFinal(sent) = &mut server.state else {
        panic!("expected to await client-final");
    };
    sent.stored_key = planted.stored_key;
    sent.server_key = planted.server_key;
    let out = client.final_for(&sf);
    assert_eq!(
        server.handle_client_final(out.message.as_bytes()),
        Err(Failure::NotAuthorized)
    );
}
