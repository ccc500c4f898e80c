//! The `weft` command: run the server, check a configuration, manage accounts.
#![forbid(unsafe_code)]

mod account_name;
mod check;
mod compliance;
mod startup;
mod users;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use weft_config::Config;

/// mimalloc instead of glibc's malloc: every routed stanza allocates and frees a few dozen
/// small blocks (the element tree, the serialised frame), and glibc's allocator was a fifth
/// of the server's CPU per message.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "An XMPP server for the web: RFC 7395 WebSocket and TCP",
    after_help = "Without a command, weft runs the server (`weft run`)."
)]
struct Cli {
    #[command(flatten)]
    config: ConfigFile,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `-c/--config`, on the commands that read a configuration.
#[derive(Args, Clone, Default)]
struct ConfigFile {
    /// Configuration file (TOML). Without it: the embedded default (domain localhost, data in
    /// ./weft-data under the current directory).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigFile {
    /// This command's file, else the one given before the command (`weft -c FILE user …`).
    fn or(self, outer: &ConfigFile) -> ConfigFile {
        ConfigFile {
            config: self.config.or_else(|| outer.config.clone()),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    #[command(visible_alias = "serve")]
    Run {
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage accounts.
    User(users::UserArgs),
    /// The XEP-0479 compliance levels this configuration's modules meet, and what weft
    /// implements.
    Compliance {
        #[command(flatten)]
        config: ConfigFile,
        /// Print the DOAP description of everything weft implements (weft.doap) instead.
        #[arg(long)]
        doap: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate FILE (or the embedded default) as `weft run` would use it: every key, the
    /// files it names, the certificate, the listeners. Reports every problem, each with its key.
    Check {
        /// The configuration file; without it, the embedded default is checked.
        file: Option<PathBuf>,
    },
    /// Print the commented example configuration.
    Example,
}

/// Where the configuration came from, as startup and the CLI name it.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    File(PathBuf),
    Default,
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Default => f.write_str("embedded default (no --config given)"),
        }
    }
}

fn load_config(file: &ConfigFile) -> anyhow::Result<(Config, ConfigSource)> {
    let (mut config, source) = match &file.config {
        Some(p) => {
            let config = Config::load(p)
                .with_context(|| format!("invalid configuration {}", p.display()))?;
            (config, ConfigSource::File(absolute(p)))
        }
        None => (Config::default(), ConfigSource::Default),
    };
    // Absolute from here on, so that every message names the same place whatever the
    // current directory of the reader.
    config.server.data_dir = absolute(&config.server.data_dir);
    config.storage.sqlite_path = Some(absolute(&config.sqlite_path()));
    Ok((config, source))
}

/// `path` made absolute against the current directory (not resolving symlinks).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Config {
            command: ConfigCommand::Check { file },
        }) => check::run(file.as_deref()),
        Some(Command::Config {
            command: ConfigCommand::Example,
        }) => {
            print!("{}", include_str!("../../../weft.example.toml"));
            Ok(())
        }
        Some(Command::Compliance { config, doap }) => load_config(&config.or(&cli.config))
            .and_then(|(config, source)| compliance::run(&config, &source, doap)),
        Some(Command::User(args)) => {
            let file = ConfigFile {
                config: args.config.clone(),
            }
            .or(&cli.config);
            load_config(&file).and_then(|(config, _)| run_async(users::run(config, args.command)))
        }
        None | Some(Command::Run { .. }) => {
            let file = match cli.command {
                Some(Command::Run { config }) => config.or(&cli.config),
                _ => cli.config,
            };
            load_config(&file).and_then(|(config, source)| {
                init_logging(&config);
                disable_transparent_huge_pages();
                run_async(serve(config, source, file))
            })
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// No transparent huge pages for the server's memory. mimalloc asks for them on its arenas, and
/// the kernel then zeroes a whole 2 MiB page the first time any byte of it is touched: while
/// sessions log in, the heap grows through such pages, and zeroing them was 11% of the
/// server's CPU per login (bench/compare.sh connect run; on this VM each first touch of guest
/// memory is dear). With 4 KiB pages logins/s rose by about a fifth, the RSS per idle session
/// stayed the same (5.7 vs 5.9 KiB) and message throughput did not change. The same advice
/// as for other servers that hold many small per-connection objects (Redis, MongoDB).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!("transparent huge pages stay enabled: {e}");
    }
}

fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        // How a busy worker takes socket events, tuned with 500 pairs of sessions at window 1
        // on one core (bench/, interleaved runs). Every task a poll of the driver wakes goes to
        // the worker's 256-slot local queue; what does not fit spills into the shared queue,
        // which a busy worker checks only now and then, and those sessions waited 10-20x longer
        // than the rest (tokio's defaults: p99 150 ms at p50 2-7 ms; a busy batch of 64 too).
        // So a busy worker takes at most 32 events per poll, and polls the driver only after
        // 400 tasks (tokio: 61): it mostly runs what is ready, then takes a large batch (up to
        // 1024) when idle. Against 128/16/61: +10% msgs/s at the same p99 (16-27 ms) with 500
        // pairs; no change at 10 pairs, at half the peak rate or for logins.
        .max_io_events_per_tick(1024)
        .max_io_events_per_busy_tick(32)
        .event_interval(400)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}

async fn serve(mut config: Config, source: ConfigSource, file: ConfigFile) -> anyhow::Result<()> {
    let data_dir = config.server.data_dir.clone();
    weft_storage::private::create_dir(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    if config.s2s.dialback_secret.is_none() {
        config.s2s.dialback_secret = Some(dialback_secret(&data_dir)?);
    }
    let db_path = config.sqlite_path();
    let storage = weft_storage::Storage::open_sqlite(&db_path)
        .await
        .with_context(|| format!("opening the database {}", db_path.display()))?;
    let accounts = storage.accounts.count_accounts().await?;
    let tls = weft_server::TlsSetup::load_or_generate(
        config.tls.cert.as_deref(),
        config.tls.key.as_deref(),
        &data_dir,
        &config.server.domains,
    )?;
    let grace = config.server.shutdown_grace.0;
    let summary_config = config.clone();
    let running = weft_server::start(config, storage, tls).await?;
    let facts = startup::Facts {
        config: &summary_config,
        source: &source,
        running: &running,
        accounts,
        command: startup::command_line(&file),
    };
    for exposed in weft_storage::private::exposure(&data_dir) {
        eprintln!(
            "weft: warning: {} is readable by other users (mode {:o}); it holds credentials \
             and keys. Fix: {}",
            exposed.path.display(),
            exposed.mode,
            weft_storage::private::fix_command(&data_dir)
        );
    }
    for line in startup::summary(&facts) {
        eprintln!("{line}");
    }
    wait_for_signal(&running.state).await;
    eprintln!("weft: shutting down");
    running
        .shutdown(grace.max(Duration::from_millis(100)))
        .await;
    Ok(())
}

/// The XEP-0220 dialback secret kept in the data directory, made on first start: keys that
/// peers are verifying when weft restarts stay valid.
fn dialback_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("dialback-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim();
        if secret.len() >= 32 {
            return Ok(secret.to_string());
        }
    }
    let bytes: [u8; 32] = rand::random();
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    weft_storage::private::write_file(&path, secret.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// Returns on SIGTERM or SIGINT. SIGUSR1 drains the node: streams are closed with the
/// configured `see-other-uri` while the listeners stay up.
async fn wait_for_signal(state: &weft_server::ServerState) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut usr1)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::user_defined1()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = tokio::signal::ctrl_c() => return,
                _ = usr1.recv() => state.drain(),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = state;
        let _ = tokio::signal::ctrl_c().await;
    }
}
