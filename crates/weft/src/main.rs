//! The `weft` command: run the server, check a configuration, manage accounts.
#![forbid(unsafe_code)]

mod users;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
    about = "An XMPP server for the web: RFC 7395 WebSocket and TCP"
)]
struct Cli {
    /// Configuration file (TOML). Without it weft serves `localhost` from ./weft-data.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Run,
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: users::UserCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Parse and validate FILE; on error, name the key that is wrong.
    Check { file: PathBuf },
    /// Print the commented example configuration.
    Example,
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(p) => {
            Config::load(p).with_context(|| format!("invalid configuration {}", p.display()))
        }
        None => Ok(Config::default()),
    }
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
        }) => check_config(&file),
        Some(Command::Config {
            command: ConfigCommand::Example,
        }) => {
            print!("{}", include_str!("../../../weft.example.toml"));
            Ok(())
        }
        Some(Command::User { command }) => load_config(cli.config.as_ref())
            .and_then(|config| run_async(users::run(config, command))),
        None | Some(Command::Run) => load_config(cli.config.as_ref()).and_then(|config| {
            init_logging(&config);
            disable_transparent_huge_pages();
            run_async(serve(config))
        }),
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

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    match Config::load(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", file.display())),
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

async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("creating {}", config.server.data_dir.display()))?;
    let storage = weft_storage::Storage::open_sqlite(&config.sqlite_path())
        .await
        .with_context(|| format!("opening {}", config.sqlite_path().display()))?;
    let tls = weft_server::TlsSetup::load_or_generate(
        config.tls.cert.as_deref(),
        config.tls.key.as_deref(),
        &config.server.data_dir,
        &config.server.domains,
    )?;
    let grace = config.server.shutdown_grace.0;
    let ws_path = config.websocket.path.clone();
    let domain = config.default_domain().to_string();
    let running = weft_server::start(config, storage, tls).await?;
    for a in &running.http {
        eprintln!("weft: ws://{a}{ws_path}  (and http://{a}/.well-known/host-meta)");
    }
    for a in &running.https {
        eprintln!("weft: wss://{a}{ws_path}  (and https://{a}/.well-known/host-meta)");
    }
    for a in &running.c2s {
        eprintln!("weft: xmpp c2s (STARTTLS) on {a}");
    }
    for a in &running.c2s_direct_tls {
        eprintln!("weft: xmpp c2s (Direct TLS) on {a}");
    }
    eprintln!("weft: serving {domain}; add a user with:  weft user add alice@{domain}");
    wait_for_signal(&running.state).await;
    eprintln!("weft: shutting down");
    running
        .shutdown(grace.max(Duration::from_millis(100)))
        .await;
    Ok(())
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
