//! The `weft` command as an operator uses it: config checks, account management from standard
//! input, and a real process serving, then shutting down cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use weft_testkit::clients::login;
use weft_testkit::{Client, Login, WsClient};

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

/// A config in a temp dir with every listener on a free loopback port.
fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("weft.toml");
    let text = format!(
        "[server]\ndata_dir = '{}'\nshutdown_grace = '3s'\n[listen]\nhttp = ['127.0.0.1:0']\nhttps = ['127.0.0.1:0']\n\
         c2s = ['127.0.0.1:0']\nc2s_direct_tls = ['127.0.0.1:0']\n{extra}",
        dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn config_check_names_the_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = config(dir.path(), "");
    let out = weft()
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\nmax_stanza_size = 'huge'\n").unwrap();
    let out = weft().args(["config", "check"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.max_stanza_size"), "{err}");
    std::fs::write(&bad, "[websocket]\npign_interval = '5s'\n").unwrap();
    let out = weft().args(["config", "check"]).arg(&bad).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("websocket.pign_interval"));
    // The shipped example is valid.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../weft.example.toml");
    assert!(weft()
        .args(["config", "check", example])
        .output()
        .unwrap()
        .status
        .success());
}

#[test]
fn user_management_reads_passwords_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let add = |jid: &str, pw: &str| {
        run_with_stdin(
            weft()
                .arg("--config")
                .arg(&cfg)
                .args(["user", "add", "--create", jid]),
            pw,
        )
    };
    assert!(add("alice@localhost", "s3cret\n").status.success());
    assert!(
        add("Bob", "pw\n").status.success(),
        "bare usernames take the default domain"
    );
    let dup = add("alice@localhost", "x\n");
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    assert!(
        !add("carol@elsewhere.example", "x\n").status.success(),
        "only hosted domains"
    );
    assert!(
        !add("dave@localhost", "\n").status.success(),
        "empty passwords are refused"
    );
    let list = weft()
        .arg("--config")
        .arg(&cfg)
        .args(["user", "list"])
        .output()
        .unwrap();
    // Usernames are normalised (RFC 7622 nodeprep: lowercase).
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "alice@localhost\nbob@localhost\n"
    );
    let passwd = run_with_stdin(
        weft()
            .arg("--config")
            .arg(&cfg)
            .args(["user", "passwd", "alice@localhost"]),
        "Zebra-Quokka-917\n",
    );
    assert!(passwd.status.success());
    let rm = weft()
        .arg("--config")
        .arg(&cfg)
        .args(["user", "remove", "bob@localhost"])
        .output()
        .unwrap();
    assert!(rm.status.success());
    let list = weft()
        .arg("--config")
        .arg(&cfg)
        .args(["user", "list"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout), "alice@localhost\n");
    // The database never holds the password itself.
    let db = std::fs::read(dir.path().join("data/weft.sqlite")).unwrap();
    assert!(
        !db.windows(16).any(|w| w == b"Zebra-Quokka-917"),
        "no clear-text password on disk"
    );
}

#[tokio::test]
async fn serves_then_closes_streams_with_redirect_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "[websocket]\nsee_other_uri = 'wss://next.example/ws'\n",
    );
    let out = run_with_stdin(
        weft()
            .arg("--config")
            .arg(&cfg)
            .args(["user", "add", "--create", "alice"]),
        "pw\n",
    );
    assert!(out.status.success(), "{out:?}");
    let mut child = weft()
        .arg("--config")
        .arg(&cfg)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // "  c2s WebSocket   ws://localhost:PORT/xmpp-websocket"
    let url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("weft prints where it listens");
        if let Some(rest) = line.trim_start().strip_prefix("c2s WebSocket") {
            let url = rest.trim();
            if url.starts_with("ws://") {
                break url.replace("//localhost:", "//127.0.0.1:");
            }
        }
    };
    assert!(
        dir.path().join("data/self-signed-cert.pem").exists(),
        "certificate generated on first start"
    );
    let mut c = WsClient::connect(&url, None).await.unwrap();
    let jid = login(&mut c, "alice", "pw", Login::ScramSha256, None).await;
    assert!(jid.starts_with("alice@localhost/"));
    // SIGTERM from Rust: no outside `kill` program needed.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM to weft");
    let close = c.recv().await;
    assert_eq!(close.attr("see-other-uri"), Some("wss://next.example/ws"));
    c.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        .await;
    c.expect_close_frame().await;
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "clean exit: {exit:?}");
}

/// weft.doap is what the code declares (`weft compliance --doap`): a claim added or changed in
/// a module without regenerating the file fails here, and so in CI.
#[test]
fn weft_doap_is_generated_from_the_code() {
    let out = weft().args(["compliance", "--doap"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let generated = String::from_utf8(out.stdout).unwrap();
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../weft.doap"))
        .expect("weft.doap at the repository's root");
    assert!(
        generated == shipped,
        "weft.doap differs from the code's claims: run `weft compliance --doap > weft.doap`"
    );
    assert!(generated.contains("xep-0313.html") && generated.contains("rfc6121"));
}

#[test]
fn compliance_names_what_each_level_misses() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let out = weft()
        .arg("compliance")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start}: {text}"))
            .to_string()
    };
    assert!(line("Mobile").ends_with("Server: met"), "{text}");
    // XEP-0114 (components) was Core's last missing piece.
    assert!(line("Core").ends_with("Server: met"), "{text}");
    assert!(!text.contains("missing XEP-0114"), "{text}");
    // BOSH (XEP-0124, XEP-0206) was Web's last missing piece.
    assert!(line("Web").ends_with("Server: met"), "{text}");
    assert!(!text.contains("missing XEP-0206"), "{text}");
    // Turning a module off is reflected: without carbons, IM misses XEP-0280.
    let off = config(dir.path(), "[modules.carbons]\nenabled = false\n");
    let out = weft()
        .arg("compliance")
        .arg("-c")
        .arg(&off)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("IM") && l.contains("XEP-0280")),
        "{text}"
    );
}
