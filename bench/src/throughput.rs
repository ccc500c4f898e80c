//! The `throughput` scenario: M pairs of sessions send each other chat messages (a→b and b→a)
//! for T seconds, either as fast as a per-direction window of messages in flight allows, or at a
//! fixed offered rate. Each body starts with its send time, so the receiver measures latency.
//!
//! Reports messages per second delivered in the measured interval (after a warm-up), latency
//! percentiles, and server CPU seconds per 1,000 messages. In rate mode a message the
//! in-flight window held back (the server fell behind), or one more than 2 ms late, is stamped
//! with its scheduled send time, so falling behind shows up as latency (no coordinated
//! omission); lateness within 2 ms with the window open is the generator's millisecond timer,
//! and the real send time is the stamp.

use std::cell::{Cell, RefCell};
use std::fmt::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use futures_util::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::{watch, Semaphore};

use crate::conn::{Conn, Event};
use crate::{procstat, report, xml, Common, Ctx};

#[derive(Args)]
pub struct ThroughputArgs {
    #[command(flatten)]
    pub common: Common,
    /// Pairs of sessions.
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Messages in flight per direction (default 32; 1000 with --rate, only a memory bound).
    #[arg(long)]
    pub window: Option<usize>,
    /// Offered messages per second over all senders, instead of window-driven.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of sending before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds allowed after sending stops for messages in flight to arrive.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Extra bytes of body text per message.
    #[arg(long, default_value_t = 0)]
    pub payload: usize,
}

/// Most messages a rate-mode sender queues before one flush; in window mode, most elements
/// taken from each side of a pair before its partner sends.
const BATCH: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctl {
    Run,
    StopSending,
    Done,
}

struct Shared {
    base: Instant,
    /// Nanoseconds since `base` from which latencies count (the end of the warm-up).
    measure_from_ns: u64,
    measure_to_ns: u64,
    sent: Cell<u64>,
    received: Cell<u64>,
    in_window: Cell<u64>,
    errors: Cell<u64>,
    closed: Cell<u64>,
    lat_us: RefCell<Histogram<u64>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Counts a received element; true when it is one of our messages, delivered or bounced,
    /// which frees a window slot of the partner that sent it.
    fn on_element(&self, el: &str) -> bool {
        if xml::name(el) != "message" {
            return false; // presence and other stanzas the server may send
        }
        let body = xml::child_text(el, "body").unwrap_or("");
        let digits = body
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(body.len());
        let (Ok(sent_ns), None | Some("chat")) =
            (body[..digits].parse::<u64>(), xml::attr(el, "type"))
        else {
            self.errors.set(self.errors.get() + 1);
            return true;
        };
        let now = self.now_ns();
        self.received.set(self.received.get() + 1);
        if now >= self.measure_from_ns && now < self.measure_to_ns {
            self.in_window.set(self.in_window.get() + 1);
        }
        if sent_ns >= self.measure_from_ns {
            let us = (now.saturating_sub(sent_ns) / 1000).max(1);
            let _ = self.lat_us.borrow_mut().record(us);
        }
        true
    }
}

struct Sender {
    to: String,
    payload: Rc<str>,
}

impl Sender {
    fn message(&self, ts_ns: u64) -> String {
        let mut s = String::with_capacity(96 + self.to.len() + self.payload.len());
        let _ = write!(
            s,
            "<message xmlns='jabber:client' to='{}' type='chat'><body>{ts_ns}",
            self.to
        );
        s.push_str(&self.payload);
        s.push_str("</body></message>");
        s
    }
}

pub async fn run(ctx: Ctx, a: ThroughputArgs) -> anyhow::Result<bool> {
    let n = a.pairs * 2;
    let window = a
        .window
        .unwrap_or(if a.rate.is_some() { 1000 } else { 32 })
        .max(1);
    let pid = ctx.common.server_pid;
    println!(
        "throughput: {} pairs, {} {} -> {}, {}, generator on CPUs {}, server on CPUs {}",
        a.pairs,
        ctx.common.transport.name(),
        if ctx.common.target == crate::Target::Relay {
            "relay"
        } else {
            ctx.common.mech.sasl_name()
        },
        ctx.dialer.addr,
        match a.rate {
            Some(r) => format!("offered {r:.0} msgs/s"),
            None => format!("window {window} per direction"),
        },
        procstat::cpus_allowed("self"),
        pid.map(|p| procstat::cpus_allowed(&p.to_string()))
            .unwrap_or_else(|| "?".into()),
    );
    let t = Instant::now();
    let mut logins: Vec<_> = futures_util::stream::iter(0..n)
        .map(|i| {
            let ctx = &ctx;
            async move { (i, ctx.login(i).await) }
        })
        .buffer_unordered(ctx.common.concurrency.max(1))
        .collect()
        .await;
    logins.sort_by_key(|(i, _)| *i);
    let mut sessions = Vec::with_capacity(n);
    for (i, r) in logins {
        match r {
            Ok(s) => sessions.push(s),
            Err(e) => bail!("session {i} could not log in: {e:#}"),
        }
    }
    println!("{n} sessions ready in {:.2} s", t.elapsed().as_secs_f64());

    let base = Instant::now();
    let secs_ns = |s: f64| (s * 1e9) as u64;
    let shared = Rc::new(Shared {
        base,
        measure_from_ns: secs_ns(a.warmup),
        measure_to_ns: secs_ns(a.warmup + a.seconds),
        sent: Cell::new(0),
        received: Cell::new(0),
        in_window: Cell::new(0),
        errors: Cell::new(0),
        closed: Cell::new(0),
        lat_us: RefCell::new(report::histogram()),
    });
    let jids: Vec<String> = sessions.iter().map(|s| s.jid.clone()).collect();
    let payload: Rc<str> = if a.payload > 0 {
        format!(" {}", "x".repeat(a.payload - 1)).into()
    } else {
        "".into()
    };
    let (ctl_tx, ctl_rx) = watch::channel(Ctl::Run);
    let sender = |to: usize| Sender {
        to: jids[to].clone(),
        payload: payload.clone(),
    };
    if let Some(rate) = a.rate {
        let windows: Vec<Rc<Semaphore>> = (0..n).map(|_| Rc::new(Semaphore::new(window))).collect();
        for (k, s) in sessions.into_iter().enumerate() {
            tokio::task::spawn_local(session(
                shared.clone(),
                s.conn,
                sender(k ^ 1),
                (rate / n as f64, k as f64 / n as f64),
                windows[k].clone(),
                windows[k ^ 1].clone(),
                ctl_rx.clone(),
            ));
        }
    } else {
        let mut sessions = sessions.into_iter();
        let mut k = 0;
        while let (Some(s0), Some(s1)) = (sessions.next(), sessions.next()) {
            tokio::task::spawn_local(pair(
                shared.clone(),
                [s0.conn, s1.conn],
                [sender(k + 1), sender(k)],
                window,
                ctl_rx.clone(),
            ));
            k += 2;
        }
    }

    tokio::time::sleep_until((base + Duration::from_secs_f64(a.warmup)).into()).await;
    let s0 = procstat::sample(pid);
    tokio::time::sleep_until((base + Duration::from_secs_f64(a.warmup + a.seconds)).into()).await;
    let s1 = procstat::sample(pid);
    ctl_tx.send_replace(Ctl::StopSending);
    let drain_until = Instant::now() + Duration::from_secs_f64(a.drain);
    let sh = &shared;
    while sh.received.get() + sh.errors.get() < sh.sent.get() && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Sessions closed by the server *during* the run. Counted before the generator closes its
    // own: on the relay, one side's close ends its partner's connection too, and that partner
    // may see the close before its own Done (a clean run used to exit 2 at 500 pairs).
    let closed = sh.closed.get();
    ctl_tx.send_replace(Ctl::Done);

    let delivered = sh.in_window.get();
    let rate = delivered as f64 / a.seconds;
    let lost = sh
        .sent
        .get()
        .saturating_sub(sh.received.get() + sh.errors.get());
    let server_cpu = s1.cpu_s - s0.cpu_s;
    let per_1000 = if delivered > 0 {
        server_cpu / (delivered as f64 / 1000.0)
    } else {
        0.0
    };
    let gen_cpu = s1.gen_cpu_s - s0.gen_cpu_s;
    let server_steal = s1.server_steal_s - s0.server_steal_s;
    let gen_steal = s1.gen_steal_s - s0.gen_steal_s;
    let mut rec = ctx.record("throughput");
    let lat = report::latency(&sh.lat_us.borrow(), "latency", &mut rec);
    println!(
        "delivered: {rate:.0} msgs/s ({delivered} in {:.1} s), sent {}, lost {lost}, errors {}",
        a.seconds,
        sh.sent.get(),
        sh.errors.get()
    );
    println!("latency: {lat}");
    println!(
        "CPU: server {server_cpu:.2} s ({:.0}% of one core), {:.4} s per 1000 msgs; generator {:.0}% of one core",
        100.0 * server_cpu / a.seconds,
        per_1000,
        100.0 * gen_cpu / a.seconds
    );
    if server_steal + gen_steal > 0.0 {
        println!(
            "steal (the VM's host ran something else): {server_steal:.2} s on the server's CPUs, \
             {gen_steal:.2} s on the generator's, in {:.1} s",
            a.seconds
        );
    }
    if closed > 0 {
        println!("{closed} sessions were closed by the server during the run");
    }
    for (k, v) in [
        ("pairs", json!(a.pairs)),
        ("seconds", json!(a.seconds)),
        ("window", json!(window)),
        ("offered_rate", json!(a.rate)),
        ("payload", json!(a.payload)),
        ("msgs_per_s", json!(rate.round())),
        ("sent", json!(sh.sent.get())),
        ("delivered_in_window", json!(delivered)),
        ("lost", json!(lost)),
        ("errors", json!(sh.errors.get())),
        ("closed", json!(closed)),
        ("server_cpu_s", json!(report::round3(server_cpu))),
        (
            "server_cpu_s_per_1000",
            json!((per_1000 * 1e5).round() / 1e5),
        ),
        ("generator_cpu_s", json!(report::round3(gen_cpu))),
        ("server_steal_s", json!(report::round3(server_steal))),
        ("generator_steal_s", json!(report::round3(gen_steal))),
    ] {
        rec.insert(k.into(), v);
    }
    ctx.emit(&rec)?;
    // Let the sessions send their closes before the runtime goes away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(delivered > 0 && lost == 0 && sh.errors.get() == 0 && closed == 0)
}

/// Lateness of a rate-mode send that is put down to the generator's timer, not the server.
const TIMER_SLACK_NS: u64 = 2_000_000;

/// The timestamp a rate-mode message carries, sent at `now` and due at `due`. tokio's timers
/// tick in whole milliseconds, so a wake-up is up to ~1 ms after the due time: with the window
/// open, that much lateness is the generator's, and the message is stamped when it is really
/// sent. A message the window held back (due by `window_full_at`), or a later one, keeps its
/// due time, so the delay counts as latency (no coordinated omission).
fn rate_stamp(now: u64, due: u64, window_full_at: Option<u64>) -> u64 {
    let held = window_full_at.is_some_and(|t| due <= t);
    if !held && now.saturating_sub(due) <= TIMER_SLACK_NS {
        now
    } else {
        due
    }
}

/// Window mode: both sessions of a pair in one task. A message received on one side frees a
/// slot of the other side, which sends at once: no semaphore and no wake-up of another task per
/// message. With a task per session and a semaphore per window, the generator's own code took
/// 30-32% of its CPU at 500 pairs against the relay; with a task per pair 22-23%.
async fn pair(
    sh: Rc<Shared>,
    mut conns: [Conn; 2],
    senders: [Sender; 2],
    window: usize,
    mut ctl: watch::Receiver<Ctl>,
) {
    // Messages side k may send now: its window less its messages in flight.
    let mut credit = [window, window];
    let mut sending = true;
    loop {
        for k in 0..2 {
            if !sending || credit[k] == 0 {
                continue;
            }
            let now = sh.now_ns();
            for _ in 0..credit[k] {
                if conns[k].send(senders[k].message(now)).await.is_err() {
                    return;
                }
            }
            sh.sent.set(sh.sent.get() + credit[k] as u64);
            credit[k] = 0;
            if conns[k].flush().await.is_err() {
                return;
            }
        }
        let [a, b] = &mut conns;
        let (side, ev) = tokio::select! {
            ev = a.recv() => (0, ev),
            ev = b.recv() => (1, ev),
            changed = ctl.changed() => {
                let c = *ctl.borrow_and_update();
                if changed.is_err() || c == Ctl::Done {
                    for conn in &mut conns {
                        conn.close().await;
                    }
                    return;
                }
                sending = c == Ctl::Run;
                continue;
            }
        };
        // Whatever else is already readable goes out in the same writes (recv is cancel-safe).
        let mut next = Some((side, ev));
        let (mut polled, mut idle) = (0, 0);
        while let Some((k, ev)) = next.take() {
            match ev {
                Ok(Event::Element(el)) => {
                    if sh.on_element(&el) {
                        credit[k ^ 1] += 1;
                    }
                }
                Ok(Event::Header) => {}
                Ok(Event::Closed) | Err(_) => {
                    sh.closed.set(sh.closed.get() + 1);
                    return;
                }
            }
            // Both sides in turn until neither has anything, at most BATCH each.
            while next.is_none() && idle < 2 && polled < 2 * BATCH {
                let k = polled % 2;
                polled += 1;
                next = conns[k].recv().now_or_never().map(|ev| (k, ev));
                idle = if next.is_some() { 0 } else { idle + 1 };
            }
        }
    }
}

/// Rate mode: one task per session, offering `rate` = (messages per second, phase in [0, 1) of
/// one interval); `out` is its window, `back` its partner's.
async fn session(
    sh: Rc<Shared>,
    mut conn: Conn,
    sender: Sender,
    rate: (f64, f64),
    out: Rc<Semaphore>,
    back: Rc<Semaphore>,
    mut ctl: watch::Receiver<Ctl>,
) {
    let mut sending = true;
    let mut sent: u64 = 0;
    // Scheduled time of message j: (j + phase) / rate seconds after `base`.
    let due_ns = |j: u64| ((j as f64 + rate.1) / rate.0 * 1e9) as u64;
    let mut next_wake = sh.base;
    // When the window last refused a send. Messages due by then were held back by
    // the server, whatever their lateness.
    let mut window_full_at: Option<u64> = None;
    loop {
        tokio::select! {
            ev = conn.recv() => match ev {
                Ok(Event::Element(el)) => {
                    if sh.on_element(&el) {
                        back.add_permits(1);
                    }
                }
                Ok(Event::Header) => {}
                Ok(Event::Closed) | Err(_) => {
                    sh.closed.set(sh.closed.get() + 1);
                    return;
                }
            },
            _ = tokio::time::sleep_until(next_wake.into()), if sending => {
                let now = sh.now_ns();
                let mut batch = 0;
                while batch < BATCH && due_ns(sent) <= now {
                    let Ok(p) = out.try_acquire() else {
                        window_full_at = Some(now);
                        break;
                    };
                    p.forget();
                    let stamp = rate_stamp(now, due_ns(sent), window_full_at);
                    if conn.send(sender.message(stamp)).await.is_err() {
                        return;
                    }
                    sent += 1;
                    batch += 1;
                }
                sh.sent.set(sh.sent.get() + batch as u64);
                if batch > 0 && conn.flush().await.is_err() {
                    return;
                }
                // Sleep until the next message is due; if the window is full, look again in 1 ms.
                let due = due_ns(sent);
                let next = if due > now { due } else if batch == BATCH { now } else { now + 1_000_000 };
                next_wake = sh.base + Duration::from_nanos(next);
            },
            changed = ctl.changed() => {
                let c = *ctl.borrow_and_update();
                if changed.is_err() || c == Ctl::Done {
                    conn.close().await;
                    return;
                }
                sending = c == Ctl::Run;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_stamps_count_what_the_server_held_back() {
        let ms = 1_000_000;
        // The timer woke 1 ms late, window open: the real send time.
        assert_eq!(rate_stamp(11 * ms, 10 * ms, None), 11 * ms);
        // 3 ms late: the due time, the lateness is latency.
        assert_eq!(rate_stamp(13 * ms, 10 * ms, None), 10 * ms);
        // Only 1 ms late, but the window was full when it was due: held back by the server.
        assert_eq!(rate_stamp(11 * ms, 10 * ms, Some(10 * ms)), 10 * ms);
        // Due after the window last refused: the timer rule again.
        assert_eq!(rate_stamp(13 * ms, 12 * ms, Some(10 * ms)), 13 * ms);
    }
}
