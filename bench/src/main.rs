//! weft-bench: a load generator for XMPP servers over RFC 7395 WebSocket, RFC 6120 TCP and
//! XEP-0206 BOSH.
//!
//! Scenarios are bounded and stop by themselves: `connect` (logins per second and memory per
//! idle session), `throughput` (messages per second, latency, server CPU per message),
//! `roster-login` (logins with a roster get and initial presence to a full roster), `fanout`
//! (one user's presence changes to many online contacts), `muc` (a room of many occupants:
//! deliveries, then joins) and `mam-query` (pages of a large message archive). `users` creates weft accounts
//! quickly, `rosters` mutual rosters in each server's store. It runs on one thread (pin it with `taskset`) so it
//! uses exactly one core and the server can have the other.
#![forbid(unsafe_code)]

mod bosh;
mod compare;
mod conn;
mod connect;
mod fanout;
mod login;
mod mam_query;
mod muc;
mod procstat;
mod report;
mod roster_login;
mod rosters;
mod scram;
mod split;
mod throughput;
mod tls;
mod users;
mod xml;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Map, Value};

use conn::{Dialer, Transport};
use login::{LoginSpec, Mech, Session};
use scram::ScramCache;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N sessions log in and stay idle: logins/s, failures, server memory per idle session.
    Connect(connect::ConnectArgs),
    /// M pairs exchange messages for T seconds: msgs/s, latency, server CPU per 1000 messages.
    Throughput(throughput::ThroughputArgs),
    /// Logins of accounts with a full roster: SASL, bind, roster get, initial presence.
    RosterLogin(roster_login::RosterLoginArgs),
    /// One user with many online contacts changes presence: deliveries/s, latency to the last.
    Fanout(fanout::FanoutArgs),
    /// Fills an account's message archive (XEP-0313), then pages through it: queries/s.
    MamQuery(mam_query::MamQueryArgs),
    /// A room with many occupants (XEP-0045): deliveries/s of their messages, then joins/s.
    Muc(muc::MucArgs),
    /// Writes mutual rosters into weft's store, Prosody's files, or a list for ejabberd.
    Rosters(rosters::RostersArgs),
    /// Creates benchmark accounts directly in a (stopped or running) weft's SQLite store.
    Users(users::UsersArgs),
    /// Prints the records of a --json-out file as a table.
    Summary { file: PathBuf },
    /// The side-by-side table of bench/compare.sh (weft, Prosody, ejabberd, relay) with ratios.
    Compare(compare::CompareArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// An XMPP server: every session logs in.
    Xmpp,
    /// `weft-relay`: no login; connections with the same WebSocket path are partners.
    Relay,
}

#[derive(Args, Clone)]
pub struct Common {
    #[arg(long, value_enum, default_value = "xmpp")]
    pub target: Target,
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: Transport,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Default: 5280 ws and bosh, 5443 wss, 5222 tcp/tcp-tls, 5223 tcp-direct-tls.
    #[arg(long)]
    pub port: Option<u16>,
    /// HTTP path of the WebSocket or BOSH endpoint (default /xmpp-websocket; /http-bind with
    /// --transport bosh).
    #[arg(long)]
    pub path: Option<String>,
    /// XMPP domain of the accounts.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    #[arg(long, value_enum, default_value = "scram-sha-256")]
    pub mech: Mech,
    /// Accounts are PREFIX<first-user>, PREFIX<first-user + 1>, …
    #[arg(long, default_value = "bench")]
    pub users_prefix: String,
    #[arg(long, default_value_t = 1)]
    pub first_user: usize,
    /// The password all benchmark accounts share.
    #[arg(long, default_value = "bench-password")]
    pub password: String,
    /// Loopback source addresses to spread connections over (127.0.0.2 onwards).
    #[arg(long, default_value_t = 8)]
    pub src_addrs: usize,
    /// The server's process id, for its memory and CPU figures.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds allowed for one login or one ping.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Append the JSON record to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Name of the server under test, for the record (e.g. weft, prosody).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Which case of a series this run is (e.g. tput-ws-small), for `weft-bench compare`.
    #[arg(long, default_value = "")]
    pub tag: String,
}

/// What every scenario shares: options, the dialer and the SCRAM cache.
pub struct Ctx {
    pub common: Common,
    pub dialer: Dialer,
    pub cache: ScramCache,
}

impl Ctx {
    fn new(common: Common) -> anyhow::Result<Ctx> {
        anyhow::ensure!(
            !(common.target == Target::Relay && common.transport == Transport::Bosh),
            "the relay speaks WebSocket only"
        );
        let port = common.port.unwrap_or(common.transport.default_port());
        let dialer = Dialer::new(
            common.transport,
            SocketAddr::new(common.host, port),
            common
                .path
                .as_deref()
                .unwrap_or(common.transport.default_path()),
            &common.domain,
            common.src_addrs,
        );
        let cache = ScramCache::new(&common.password)?;
        Ok(Ctx {
            common,
            dialer,
            cache,
        })
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.common.timeout)
    }

    /// Logs in session `i` (account PREFIX<first-user + i>), or pairs it on the relay.
    pub async fn login(&self, i: usize) -> anyhow::Result<Session> {
        let work = async {
            if self.common.target == Target::Relay {
                // Sessions 2k and 2k+1 are partners: the relay pairs them by path.
                let path = format!("{}/{}", self.dialer.path.trim_end_matches('/'), i / 2);
                let conn = self.dialer.connect(i, Some(&path)).await?;
                return Ok(Session {
                    conn,
                    jid: format!("relay{i}@{}", self.common.domain),
                });
            }
            let user = format!("{}{}", self.common.users_prefix, self.common.first_user + i);
            let spec = LoginSpec {
                dialer: &self.dialer,
                mech: self.common.mech,
                cache: &self.cache,
                resource: "bench",
            };
            login::login(&spec, i, &user, &self.common.password).await
        };
        tokio::time::timeout(self.timeout(), work)
            .await
            .context("login timed out")?
    }

    /// Logs in account `user` up to the bound resource, before any presence (the roster
    /// scenarios go on with a roster get); connection number `i` picks the source address.
    pub async fn bind_as(&self, i: usize, user: &str) -> anyhow::Result<Session> {
        let spec = LoginSpec {
            dialer: &self.dialer,
            mech: self.common.mech,
            cache: &self.cache,
            resource: "bench",
        };
        tokio::time::timeout(
            self.timeout(),
            login::bind(&spec, i, user, &self.common.password),
        )
        .await
        .context("login timed out")?
    }

    /// The fields every record starts with.
    pub fn record(&self, scenario: &str) -> Map<String, Value> {
        let c = &self.common;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let server_cpus = c.server_pid.map(|p| procstat::cpus_allowed(&p.to_string()));
        let mut m = Map::new();
        m.insert("scenario".into(), json!(scenario));
        m.insert("label".into(), json!(c.label));
        if !c.tag.is_empty() {
            m.insert("tag".into(), json!(c.tag));
        }
        m.insert(
            "target".into(),
            json!(format!("{:?}", c.target).to_lowercase()),
        );
        m.insert("transport".into(), json!(c.transport.name()));
        let mech = (c.target == Target::Xmpp).then(|| c.mech.sasl_name());
        m.insert("mech".into(), json!(mech));
        m.insert("unix_time".into(), json!(now.as_secs()));
        m.insert(
            "generator_cpus".into(),
            json!(procstat::cpus_allowed("self")),
        );
        m.insert("server_cpus".into(), json!(server_cpus));
        m
    }

    pub fn emit(&self, record: &Map<String, Value>) -> anyhow::Result<()> {
        report::emit(record, self.common.json_out.as_deref())
    }
}

/// Waits until `cond(state)` holds or `timeout` passes, checking again whenever `progress` is
/// notified; whether it held.
pub async fn wait_until<S>(
    state: &S,
    progress: &tokio::sync::Notify,
    timeout: Duration,
    cond: impl Fn(&S) -> bool,
) -> bool {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        let woken = progress.notified();
        if cond(state) {
            return true;
        }
        if tokio::time::timeout_at(until, woken).await.is_err() {
            return cond(state);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One thread on purpose: the generator takes one core, the server the other.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let ok = local.block_on(&rt, async move {
        match cli.command {
            Command::Connect(a) => connect::run(Ctx::new(a.common.clone())?, a).await,
            Command::Throughput(a) => throughput::run(Ctx::new(a.common.clone())?, a).await,
            Command::RosterLogin(a) => roster_login::run(Ctx::new(a.common.clone())?, a).await,
            Command::Fanout(a) => fanout::run(Ctx::new(a.common.clone())?, a).await,
            Command::MamQuery(a) => mam_query::run(Ctx::new(a.common.clone())?, a).await,
            Command::Muc(a) => muc::run(Ctx::new(a.common.clone())?, a).await,
            Command::Rosters(a) => rosters::run(a).await.map(|()| true),
            Command::Users(a) => users::run(a).await.map(|()| true),
            Command::Summary { file } => report::summary(&file).map(|()| true),
            Command::Compare(a) => compare::run(&a),
        }
    })?;
    // Exit code 2 when a scenario did not complete cleanly, so CI smoke runs catch it.
    if !ok {
        std::process::exit(2);
    }
    Ok(())
}
