//! The `connect` scenario: N sessions log in (SASL, bind, initial presence) and stay idle;
//! reports logins per second, failures, and the server's RSS/PSS growth per idle session, then
//! optionally checks that a sample of sessions still answers an XEP-0199 ping.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::conn::{Conn, Event};
use crate::{login, procstat, report, Common, Ctx, Target};

#[derive(Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sessions to log in.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Logins started per second (default: as fast as --concurrency allows).
    #[arg(long)]
    pub rate: Option<f64>,
    /// At the end, this many sessions (spread evenly) ping the server; all must get a result.
    #[arg(long, default_value_t = 0)]
    pub ping_sample: usize,
    /// Seconds between the last login and reading the server's memory.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Seconds to keep the sessions idle after the memory reading.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
    /// Upper bound on the whole login phase, in seconds.
    #[arg(long, default_value_t = 900.0)]
    pub max_seconds: f64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Ping,
    Stop,
}

struct Stats {
    ok: Cell<usize>,
    failed: Cell<usize>,
    dropped: Cell<usize>,
    finished: Cell<usize>,
    last_login: Cell<Instant>,
    errors: RefCell<BTreeMap<String, usize>>,
    login_us: RefCell<Histogram<u64>>,
    sampled: Cell<usize>,
    ping_ok: Cell<usize>,
    ping_failed: Cell<usize>,
    ping_us: RefCell<Histogram<u64>>,
}

fn bump(c: &Cell<usize>) {
    c.set(c.get() + 1);
}

impl Stats {
    fn error(&self, e: &anyhow::Error) {
        let mut text = format!("{e:#}");
        text.truncate(160);
        *self.errors.borrow_mut().entry(text).or_default() += 1;
    }
}

pub async fn run(ctx: Ctx, a: ConnectArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(
        ctx.common.target == Target::Xmpp,
        "connect needs an XMPP server as target"
    );
    let ctx = Rc::new(ctx);
    let pid = ctx.common.server_pid;
    let n = a.n;
    println!(
        "connect: {n} sessions, {} {} -> {}, generator on CPUs {}, server on CPUs {}",
        ctx.common.transport.name(),
        ctx.common.mech.sasl_name(),
        ctx.dialer.addr,
        procstat::cpus_allowed("self"),
        pid.map(|p| procstat::cpus_allowed(&p.to_string()))
            .unwrap_or_else(|| "?".into()),
    );
    let before = procstat::sample(pid);
    let stats = Rc::new(Stats {
        ok: Cell::new(0),
        failed: Cell::new(0),
        dropped: Cell::new(0),
        finished: Cell::new(0),
        last_login: Cell::new(Instant::now()),
        errors: RefCell::default(),
        login_us: RefCell::new(report::histogram()),
        sampled: Cell::new(0),
        ping_ok: Cell::new(0),
        ping_failed: Cell::new(0),
        ping_us: RefCell::new(report::histogram()),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Idle);
    let stride = n.checked_div(a.ping_sample).map_or(0, |s| s.max(1));
    let permits = std::sync::Arc::new(Semaphore::new(ctx.common.concurrency.max(1)));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.max_seconds);
    let mut launched = 0;
    let mut next_progress = start + Duration::from_secs(5);
    for i in 0..n {
        if let Some(rate) = a.rate {
            tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into())
                .await;
        }
        let permit = permits.clone().acquire_owned().await?;
        let sampled = stride > 0 && i % stride == 0 && i / stride < a.ping_sample;
        tokio::task::spawn_local(session(
            ctx.clone(),
            stats.clone(),
            i,
            sampled,
            phase_rx.clone(),
            permit,
        ));
        launched += 1;
        if Instant::now() >= next_progress {
            println!(
                "  … {} logged in, {} failed",
                stats.ok.get(),
                stats.failed.get()
            );
            next_progress += Duration::from_secs(5);
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    while stats.ok.get() + stats.failed.get() < launched && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ok, failed) = (stats.ok.get(), stats.failed.get());
    let login_secs = stats
        .last_login
        .get()
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-6);
    let rate = ok as f64 / login_secs;
    println!("logins: {ok} ok, {failed} failed in {login_secs:.2} s: {rate:.0} logins/s");
    for (e, count) in stats.errors.borrow().iter().take(5) {
        println!("  {count} × {e}");
    }
    let mut rec = ctx.record("connect");
    let lat = report::latency(&stats.login_us.borrow(), "login", &mut rec);
    println!("login time: {lat}");
    if ctx.cache.derivations.get() > 2 {
        println!(
            "  (generator ran PBKDF2 {} times: accounts have different salts)",
            ctx.cache.derivations.get()
        );
    }

    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let after = procstat::sample(pid);
    let per = |b: u64, a: u64| report::round3((a as f64 - b as f64) / ok.max(1) as f64);
    let (rss_per, pss_per) = (
        per(before.mem.rss_kib, after.mem.rss_kib),
        per(before.mem.pss_kib, after.mem.pss_kib),
    );
    if pid.is_some() {
        println!(
            "server memory: RSS {} -> {} KiB, PSS {} -> {} KiB: {rss_per:.2} KiB RSS, {pss_per:.2} KiB PSS per idle session",
            before.mem.rss_kib, after.mem.rss_kib, before.mem.pss_kib, after.mem.pss_kib
        );
        println!(
            "server CPU for the logins: {:.2} s",
            after.cpu_s - before.cpu_s
        );
    }

    let mut pings_ok = true;
    if stride > 0 {
        phase_tx.send_replace(Phase::Ping);
        let expected = stats.sampled.get();
        let until = Instant::now() + ctx.timeout() + Duration::from_secs(5);
        while stats.ping_ok.get() + stats.ping_failed.get() < expected && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lat = report::latency(&stats.ping_us.borrow(), "ping", &mut rec);
        println!(
            "ping sample: {} of {expected} answered ({lat})",
            stats.ping_ok.get()
        );
        pings_ok = stats.ping_ok.get() == expected && expected > 0;
        rec.insert("ping_sample".into(), json!(expected));
        rec.insert("ping_ok".into(), json!(stats.ping_ok.get()));
    }
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let dropped = stats.dropped.get();
    phase_tx.send_replace(Phase::Stop);
    let until = Instant::now() + Duration::from_secs(10);
    while stats.finished.get() < ok && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if dropped > 0 {
        println!("{dropped} sessions were closed by the server while idle");
    }

    for (k, v) in [
        ("n", json!(n)),
        ("ok", json!(ok)),
        ("failed", json!(failed)),
        ("dropped", json!(dropped)),
        ("login_seconds", json!(report::round3(login_secs))),
        ("logins_per_s", json!(rate.round())),
        ("rss_kib_per_session", json!(rss_per)),
        ("pss_kib_per_session", json!(pss_per)),
        ("server_rss_kib_before", json!(before.mem.rss_kib)),
        ("server_rss_kib_after", json!(after.mem.rss_kib)),
        ("server_pss_kib_after", json!(after.mem.pss_kib)),
        (
            "server_cpu_s",
            json!(report::round3(after.cpu_s - before.cpu_s)),
        ),
        (
            "generator_cpu_s",
            json!(report::round3(after.gen_cpu_s - before.gen_cpu_s)),
        ),
        ("scram_derivations", json!(ctx.cache.derivations.get())),
    ] {
        rec.insert(k.into(), v);
    }
    ctx.emit(&rec)?;
    Ok(ok == n && failed == 0 && dropped == 0 && pings_ok)
}

async fn session(
    ctx: Rc<Ctx>,
    stats: Rc<Stats>,
    i: usize,
    sampled: bool,
    mut phase: watch::Receiver<Phase>,
    permit: OwnedSemaphorePermit,
) {
    let t0 = Instant::now();
    let result = ctx.login(i).await;
    drop(permit);
    let mut s = match result {
        Ok(s) => s,
        Err(e) => {
            stats.error(&e);
            bump(&stats.failed);
            return;
        }
    };
    let _ = stats
        .login_us
        .borrow_mut()
        .record(t0.elapsed().as_micros() as u64);
    stats.last_login.set(Instant::now());
    bump(&stats.ok);
    if sampled {
        bump(&stats.sampled);
    }
    loop {
        tokio::select! {
            ev = s.conn.recv() => match ev {
                Ok(Event::Element(_) | Event::Header) => {}
                Ok(Event::Closed) | Err(_) => {
                    bump(&stats.dropped);
                    bump(&stats.finished);
                    return;
                }
            },
            changed = phase.changed() => {
                let p = *phase.borrow_and_update();
                if changed.is_err() || p == Phase::Stop {
                    s.conn.close().await;
                    bump(&stats.finished);
                    return;
                }
                if p == Phase::Ping && sampled {
                    let t = Instant::now();
                    let id = format!("ping{i}");
                    match tokio::time::timeout(ctx.timeout(), ping(&mut s.conn, &ctx.common.domain, &id)).await {
                        Ok(Ok(())) => {
                            let _ = stats.ping_us.borrow_mut().record(t.elapsed().as_micros() as u64);
                            bump(&stats.ping_ok);
                        }
                        _ => bump(&stats.ping_failed),
                    }
                }
            }
        }
    }
}

/// XEP-0199 §4.2: a client-to-server ping, answered by an empty result.
async fn ping(conn: &mut Conn, domain: &str, id: &str) -> anyhow::Result<()> {
    conn.send(format!("<iq xmlns='jabber:client' type='get' id='{id}' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>"))
        .await?;
    conn.flush().await?;
    login::iq_result(conn, id).await?;
    Ok(())
}
