//! A newcomer's first minutes, through the real binary: what startup prints (checked against
//! the README's sample), private data files, the database that user commands refuse to create
//! by accident, `config check` reporting everything, and error texts in plain words.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses its arguments may exit before it reads its input: a broken pipe
    // here is that, not a failure (its output says what happened).
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

/// A config with every listener on a free loopback port and the data under `dir/data`.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("weft.toml");
    let text = format!(
        "[server]\ndata_dir = '{}'\nshutdown_grace = '1s'\n[listen]\nhttp = ['127.0.0.1:0']\n\
         https = ['127.0.0.1:0']\nc2s = ['127.0.0.1:0']\nc2s_direct_tls = ['127.0.0.1:0']\n\
         s2s = ['127.0.0.1:0']\ns2s_direct_tls = ['127.0.0.1:0']\n",
        dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A running weft whose standard error is read line by line; killed when dropped.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Server { child, lines }
    }

    /// Lines until one for which `last` holds (included).
    fn lines_until(&self, last: impl Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("weft stopped printing; so far: {out:#?}"));
            let done = last(&line);
            out.push(line);
            if done {
                return out;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fenced block after `<!-- startup-sample -->` in the README.
fn readme_sample() -> Vec<String> {
    let readme = include_str!("../../../README.md");
    let after = readme
        .split("<!-- startup-sample")
        .nth(1)
        .expect("README.md has a <!-- startup-sample … --> block");
    let block = after
        .split("```")
        .nth(1)
        .expect("a fenced block follows the marker");
    block
        .lines()
        .skip(1) // the fence's language tag
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The README's sample startup output is what `cargo run --release` prints on a fresh
/// machine: the embedded default, run from a directory (shown as /home/alice/weft) as
/// target/release/weft. It listens on the default ports, so it fails if they are taken.
#[cfg(unix)]
#[test]
fn readme_startup_sample_is_what_weft_prints() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = weft();
    cmd.arg0("target/release/weft").current_dir(dir.path());
    let server = Server::start(cmd);
    let printed = server.lines_until(|l| l.starts_with("next step:") || l.contains("Error"));
    let cwd = dir.path().canonicalize().unwrap();
    let ours: Vec<String> = printed
        .iter()
        // tracing's lines start with a timestamp; the summary's do not.
        .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| {
            l.replace(&cwd.display().to_string(), "/home/alice/weft")
                .replace(&dir.path().display().to_string(), "/home/alice/weft")
        })
        .collect();
    assert_eq!(
        ours,
        readme_sample(),
        "README.md's sample startup output differs from what weft prints \
         (the default ports 5222, 5223, 5269, 5270, 5280 and 5443 must be free for this test)"
    );
}

/// Under umask 022 the data directory is 0700 and every file in it 0600: the database with its
/// WAL and shared-memory files, the generated certificate and key.
#[cfg(unix)]
#[test]
fn data_files_are_private_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let umask = |args: &str| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "umask 022; exec '{}' {args}",
            env!("CARGO_BIN_EXE_weft")
        ));
        cmd
    };
    let out = with_stdin(
        &mut umask(&format!(
            "user add --create -c '{}' alice@localhost",
            cfg.display()
        )),
        "pw\n",
    );
    assert!(out.status.success(), "{out:?}");
    let server = Server::start(umask(&format!("run -c '{}'", cfg.display())));
    server.lines_until(|l| l.trim_start().starts_with("host-meta"));
    let data = dir.path().join("data");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data directory");
    for file in [
        "weft.sqlite",
        "weft.sqlite-wal",
        "weft.sqlite-shm",
        "self-signed-cert.pem",
        "self-signed-key.pem",
        "dialback-secret",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    drop(server);

    // A data directory others can read is a warning at start, with the command that fixes it.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start({
        let mut cmd = weft();
        cmd.args(["run", "-c"]).arg(&cfg);
        cmd
    });
    let lines = server.lines_until(|l| l.starts_with("weft 0"));
    let warning = lines
        .iter()
        .find(|l| l.contains("readable by other users"))
        .unwrap_or_else(|| panic!("no warning in {lines:#?}"));
    assert!(
        warning.contains(&format!("chmod -R go-rwx {}", data.display())),
        "{warning}"
    );
}

/// Startup names the configuration file and the absolute data directory, every listener, and
/// no "next step" once an account exists.
#[test]
fn startup_names_config_data_dir_and_every_listener() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let out = with_stdin(
        weft()
            .args(["user", "add", "--create", "-c"])
            .arg(&cfg)
            .arg("alice"),
        "pw\n",
    );
    assert!(out.status.success(), "{out:?}");
    let server = Server::start({
        let mut cmd = weft();
        cmd.arg("--config").arg(&cfg);
        cmd
    });
    let lines = server.lines_until(|l| l.contains("https://localhost:"));
    let find = |what: &str| -> Vec<&String> {
        lines
            .iter()
            .filter(|l| l.trim_start().starts_with(what))
            .collect()
    };
    assert!(find("configuration")[0].ends_with(&cfg.display().to_string()));
    assert!(find("data directory")[0].ends_with(&dir.path().join("data").display().to_string()));
    assert!(find("database")[0].contains("(1 account)"));
    for (what, count, scheme) in [
        ("c2s WebSocket", 2, ""),
        ("c2s TCP", 2, ""),
        ("s2s TCP", 2, ""),
        ("s2s WebSocket", 1, "wss://localhost:"),
        ("host-meta", 2, ""),
    ] {
        let found = find(what);
        assert_eq!(found.len(), count, "{what}: {lines:#?}");
        assert!(
            found.iter().all(|l| l.contains(scheme)),
            "{what}: {found:?}"
        );
    }
    // A port that was really bound, not 0.
    assert!(find("c2s TCP").iter().all(|l| !l.contains(":0 ")));
    assert!(!lines.iter().any(|l| l.starts_with("next step")));
}

/// A user command run where there is no database says where it looked and how to proceed,
/// and creates nothing; `--create` creates it and names it.
#[test]
fn user_commands_do_not_create_a_second_database_silently() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["user", "add", "alice@localhost"][..],
        &["user", "list"],
        &["user", "passwd", "alice"],
    ] {
        let out = with_stdin(weft().current_dir(dir.path()).args(args), "pw\n");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = text(&out.stderr);
        let db = dir.path().join("weft-data/weft.sqlite");
        assert!(
            err.contains(&format!("no database at {}", db.display())),
            "{err}"
        );
        assert!(err.contains("--create"), "{err}");
        assert!(
            !dir.path().join("weft-data").exists(),
            "{args:?} created it"
        );
    }
    let out = with_stdin(
        weft()
            .current_dir(dir.path())
            .args(["user", "add", "--create", "alice@localhost"]),
        "pw\n",
    );
    assert!(out.status.success(), "{out:?}");
    let db = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("weft-data/weft.sqlite");
    assert!(text(&out.stderr).contains(&format!("creating a new database at {}", db.display())));
    let out = weft()
        .current_dir(dir.path())
        .args(["user", "list"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "alice@localhost\n");
    assert!(text(&out.stderr).contains(&format!("database {}", db.display())));
}

#[test]
fn account_names_are_explained_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let add = |jid: &str| {
        with_stdin(
            weft()
                .args(["user", "add", "--create", "-c"])
                .arg(&cfg)
                .arg(jid),
            "pw\n",
        )
    };
    for (jid, says) in [
        ("eve@", "there is no domain after '@'"),
        ("not a jid", "a username cannot contain spaces"),
        ("@localhost", "there is nothing before '@'"),
        (
            "bob@elsewhere.test",
            "this server does not host 'elsewhere.test'",
        ),
    ] {
        let out = add(jid);
        assert_eq!(out.status.code(), Some(1), "{jid}");
        let err = text(&out.stderr);
        assert!(err.contains(says), "{jid}: {err}");
        assert!(err.contains("alice@localhost"), "an example: {err}");
    }
    let long = format!("{}@localhost", "x".repeat(1100));
    let err = text(&add(&long).stderr);
    assert!(
        err.contains("(1110 characters)") && err.len() < 300,
        "shortened: {err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "a rejected name creates no database"
    );
}

/// Two wrong keys, a certificate that does not exist and colliding listeners: one run of
/// `config check` names them all, each with its key path, and fails.
#[test]
fn config_check_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("weft.toml");
    std::fs::write(
        &cfg,
        "[tls]\ncert = '/nonexistent/weft/cert.pem'\nkey = '/nonexistent/weft/key.pem'\n\
         [limits]\nmax_stanza_sise = '1 MiB'\nmax_depth = 'deep'\n\
         [listen]\nhttp = ['127.0.0.1:5280']\nc2s = ['0.0.0.0:5280']\n",
    )
    .unwrap();
    let out = weft().args(["config", "check"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for line in [
        "error: tls.cert: reading /nonexistent/weft/cert.pem",
        "error: tls.key: reading /nonexistent/weft/key.pem",
        "error: limits.max_stanza_sise: unknown field",
        "error: limits.max_depth: invalid type",
        "error: listen.c2s[0]: 0.0.0.0:5280 collides with listen.http[0]",
    ] {
        assert!(err.lines().any(|l| l.starts_with(line)), "{line}: {err}");
    }
    assert!(
        err.contains(&format!("{}: 5 errors", cfg.display())),
        "{err}"
    );

    // A certificate for another name than the domain, with a key that is not its own.
    let other = rcgen::generate_simple_self_signed(vec!["other.test".into()]).unwrap();
    let stranger = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("cert.pem"), other.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), stranger.serialize_pem()).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[server]\ndomains = ['example.org']\n[tls]\ncert = '{0}/cert.pem'\nkey = '{0}/key.pem'\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = weft().args(["config", "check"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("error: tls.key: the key in"), "{err}");
    assert!(
        err.contains(
            "error: tls.cert: the certificate is not valid for example.org (it names other.test)"
        ),
        "{err}"
    );
}

/// `-c/--config` is offered where a configuration is read, not by `config check` (which takes
/// the file as its argument); `serve` is another name for `run`.
#[test]
fn options_only_where_they_apply() {
    let help = |args: &[&str]| text(&weft().args(args).output().unwrap().stdout);
    assert!(!help(&["config", "check", "--help"]).contains("--config"));
    assert!(!help(&["config", "example", "--help"]).contains("--config"));
    for args in [
        &["run", "--help"][..],
        &["serve", "--help"],
        &["user", "add", "--help"],
        &["user", "list", "--help"],
    ] {
        assert!(help(args).contains("--config"), "{args:?}");
    }
    let out = weft()
        .args(["config", "check", "-c", "x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap refuses it: {out:?}");
}

/// On a terminal the prompt names the account and says that standard input works too.
/// `script` (util-linux) gives weft a pseudo-terminal.
#[cfg(target_os = "linux")]
#[test]
fn password_prompt_names_the_account_and_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let command = format!(
        "'{}' user add --create -c '{}' alice@localhost",
        env!("CARGO_BIN_EXE_weft"),
        cfg.display()
    );
    // Two answers typed on the terminal, the second different: weft refuses.
    let out = with_stdin(
        Command::new("script").args(["-qec", &command, "/dev/null"]),
        "one\ntwo\n",
    );
    let shown = text(&out.stdout);
    assert!(
        shown.contains("password for alice@localhost:"),
        "prompt names the account: {shown}"
    );
    assert!(shown.contains("Standard input works too"), "{shown}");
    assert!(shown.contains("the passwords differ"), "{shown}");
}
