//! `weft-bench compare FILE`: the side-by-side table of `bench/compare.sh`.
//!
//! Reads the JSON-lines records of one run (weft, Prosody, ejabberd and the relay, each record
//! tagged with its case by `--tag`), and prints one markdown table: one row per figure, columns
//! weft | prosody | ejabberd | relay | weft/prosody | weft/ejabberd | target | pass. With
//! `--out` the table goes to a file too, under the `--header` text (machine, versions, pinning).
//!
//! Tags written by compare.sh: `connect-ws`, `connect-wss`, `scale`, `tput-ws-small`,
//! `tput-tcp-small`, `tput-ws-big`, `tput-tcp-big`, `latency-ws`, `roster-login-ws`,
//! `fanout-ws`, `fanout1-ws`, `connect-bosh` and `tput-bosh` (XEP-0206, issue 20), and for the
//! message archive (issue 19) `mam-off-ws`, `mam-tput-ws`,
//! `mam-tput-archived`, `mam-query-ws` and `mam-query-archived`; the relay's records are
//! `tput-ws-small`, `tput-ws-small-w`, `tput-ws-big` and `latency-ws` (at weft's half-peak rate)
//! with label `relay`.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

#[derive(Args)]
pub struct CompareArgs {
    /// JSON-lines records of one compare.sh run (weft-bench --json-out).
    pub file: PathBuf,
    /// Markdown text put above the table in --out (machine, versions, settings).
    #[arg(long)]
    pub header: Option<PathBuf>,
    /// Write header, table and notes to this markdown file (the table is printed either way).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sessions at which the memory targets are stated.
    #[arg(long, default_value_t = 10_000)]
    pub target_sessions: u64,
    /// Sessions to project memory for, from the scale runs.
    #[arg(long, default_value_t = 1_000_000)]
    pub project_sessions: u64,
}

const PEERS: [&str; 2] = ["prosody", "ejabberd"];

/// The records of one run, looked up by (tag, label); the last record wins.
struct Records(Vec<Value>);

impl Records {
    fn get(&self, tag: &str, label: &str) -> Option<&Value> {
        self.0
            .iter()
            .rev()
            .find(|r| r["tag"].as_str() == Some(tag) && r["label"].as_str() == Some(label))
    }

    /// The record of this tag for weft, else for any server (for the settings of a case).
    fn any(&self, tag: &str) -> Option<&Value> {
        self.get(tag, "weft")
            .or_else(|| self.0.iter().rev().find(|r| r["tag"].as_str() == Some(tag)))
    }

    fn num(&self, tag: &str, label: &str, key: &str) -> Option<f64> {
        self.get(tag, label).and_then(|r| r[key].as_f64())
    }

    /// Every record of this tag and label, in the order of the run (one per round).
    fn all(&self, tag: &str, label: &str) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|r| r["tag"].as_str() == Some(tag) && r["label"].as_str() == Some(label))
            .collect()
    }

    /// The figure `key` of every round of this tag and label, in order.
    fn rounds(&self, tag: &str, label: &str, key: &str) -> Vec<f64> {
        self.all(tag, label)
            .iter()
            .filter_map(|r| r[key].as_f64())
            .collect()
    }

    /// Whether every round of this tag and label completed; None when there is none.
    fn all_complete(&self, tag: &str, label: &str) -> Option<bool> {
        let records = self.all(tag, label);
        (!records.is_empty()).then(|| records.iter().all(|r| complete(r)))
    }
}

/// Round i of `a` over round i of `b`. When a run did not report, the rounds cannot be paired:
/// no ratios rather than comparing the wrong runs.
fn per_round_ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    if a.len() != b.len() {
        return Vec::new();
    }
    a.iter()
        .zip(b)
        .filter_map(|(a, b)| ratio(Some(*a), Some(*b)))
        .collect()
}

/// Per-round figures as one cell: "a · b · c".
fn each_round(v: &[f64], f: impl Fn(f64) -> String) -> String {
    v.iter().map(|x| f(*x)).collect::<Vec<_>>().join(" · ")
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Whether a run finished cleanly: every login, ping and message accounted for.
fn complete(r: &Value) -> bool {
    let n = |k: &str| r[k].as_f64().unwrap_or(0.0);
    match r["scenario"].as_str() {
        Some("connect") => {
            n("failed") == 0.0
                && n("dropped") == 0.0
                && n("ok") == n("n")
                && r["ping_ok"] == r["ping_sample"]
        }
        Some("throughput") => {
            n("lost") == 0.0
                && n("errors") == 0.0
                && n("closed") == 0.0
                && n("delivered_in_window") > 0.0
        }
        Some("roster-login") => {
            n("failed") == 0.0 && n("dropped") == 0.0 && n("ok") == n("n") && n("ok") > 0.0
        }
        Some("fanout") => {
            n("missed") == 0.0 && n("unexpected") == 0.0 && n("measured_changes") > 0.0
        }
        Some("muc") => {
            n("missed") == 0.0
                && n("unexpected") == 0.0
                && n("measured_messages") > 0.0
                && n("short_joins") == 0.0
                && n("joins_done") == n("joins")
        }
        Some("mam-query") => n("errors") == 0.0 && n("queries_measured") > 0.0,
        // compare.sh's count of a server's archive after a run: every message archived.
        Some("mam-archived") => n("expected") > 0.0 && n("archived") == n("expected"),
        _ => true,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
    /// A figure the target needs is missing.
    NoData,
    /// No target: the figure is there to read.
    Info,
}

impl Verdict {
    fn text(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "**FAIL**",
            Verdict::NoData => "n/a",
            Verdict::Info => "",
        }
    }

    fn of(ok: Option<bool>) -> Verdict {
        match ok {
            Some(true) => Verdict::Pass,
            Some(false) => Verdict::Fail,
            None => Verdict::NoData,
        }
    }

    /// All of several conditions; no data for any of them is no data.
    fn all(parts: &[Option<bool>]) -> Verdict {
        if parts.iter().any(|p| p.is_none()) {
            return Verdict::NoData;
        }
        Verdict::of(Some(parts.iter().all(|p| *p == Some(true))))
    }
}

/// How a figure measured in rounds is judged.
#[derive(Clone, Copy)]
enum Judge {
    /// Not at all: shown to read.
    None,
    /// On the median of the per-round ratios weft/peer, for each peer.
    Ratios(fn(f64) -> bool),
    /// On weft's median.
    Weft(fn(f64) -> bool),
}

struct Row {
    figure: String,
    /// weft, prosody, ejabberd, relay.
    cells: [String; 4],
    /// weft/prosody, weft/ejabberd.
    ratios: [String; 2],
    target: String,
    verdict: Verdict,
}

/// A figure with a precision that suits its size.
pub fn fmt(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        // Thousands separators keep wide numbers readable.
        let s = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{v:.4}")
    }
}

fn ratio(w: Option<f64>, p: Option<f64>) -> Option<f64> {
    match (w, p) {
        (Some(w), Some(p)) if p > 0.0 => Some(w / p),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 10.0 => format!("{r:.0}×"),
        Some(r) if r >= 1.0 => format!("{r:.1}×"),
        // Three decimals, so that 0.099× and 0.11× against a 1/10 target read right.
        Some(r) if r >= 0.01 => format!("{r:.3}×"),
        Some(r) => format!("{r:.1e}×"),
        None => "—".into(),
    }
}

struct Table<'a> {
    recs: &'a Records,
    rows: Vec<Row>,
    incomplete: bool,
}

impl Table<'_> {
    /// The cell for (tag, label, key): the figure, marked when its run was incomplete.
    fn cell(&mut self, tag: &str, label: &str, key: &str) -> String {
        let Some(r) = self.recs.get(tag, label) else {
            return "—".into();
        };
        let Some(v) = r[key].as_f64() else {
            return "—".into();
        };
        if complete(r) {
            fmt(v)
        } else {
            self.incomplete = true;
            format!("{} (!)", fmt(v))
        }
    }

    /// A figure for weft and both peers (and the relay when `relay_tag` is set), with the
    /// ratios weft/peer. `check` judges the ratios (weft/prosody, weft/ejabberd).
    fn versus(
        &mut self,
        figure: String,
        tag: &str,
        key: &str,
        relay_tag: Option<&str>,
        target: &str,
        check: Option<fn(f64) -> bool>,
    ) {
        let w = self.recs.num(tag, "weft", key);
        let ratios: Vec<Option<f64>> = PEERS
            .iter()
            .map(|p| ratio(w, self.recs.num(tag, p, key)))
            .collect();
        let weft_ok = self.recs.get(tag, "weft").map(complete);
        let verdict = match check {
            None => Verdict::Info,
            Some(f) => {
                let mut parts: Vec<Option<bool>> = ratios.iter().map(|r| r.map(f)).collect();
                parts.push(weft_ok);
                Verdict::all(&parts)
            }
        };
        let cells = [
            self.cell(tag, "weft", key),
            self.cell(tag, "prosody", key),
            self.cell(tag, "ejabberd", key),
            relay_tag.map_or_else(String::new, |t| self.cell(t, "relay", key)),
        ];
        self.rows.push(Row {
            figure,
            cells,
            ratios: [fmt_ratio(ratios[0]), fmt_ratio(ratios[1])],
            target: target.into(),
            verdict,
        });
    }

    /// Like [`Table::versus`] for a figure measured in several rounds (each round: every
    /// server once, back to back): each cell is the median of that server's rounds, each ratio
    /// the median of the per-round ratios weft/peer, which compare figures taken a minute apart
    /// on a VM whose speed drifts by up to 2× over minutes. With more than one round a second
    /// row lists every round.
    fn versus_rounds(
        &mut self,
        figure: String,
        tag: &str,
        key: &str,
        with_relay: bool,
        target: &str,
        judge: Judge,
    ) {
        let recs = self.recs;
        let rounds = |label: &str| recs.rounds(tag, label, key);
        let weft = rounds("weft");
        let per_round: Vec<Vec<f64>> = PEERS
            .iter()
            .map(|p| per_round_ratios(&weft, &rounds(p)))
            .collect();
        let ratios: Vec<Option<f64>> = per_round.iter().map(|r| median(r.clone())).collect();
        let weft_ok = recs.all_complete(tag, "weft");
        let verdict = match judge {
            Judge::None => Verdict::Info,
            Judge::Ratios(check) => {
                let mut parts: Vec<Option<bool>> = ratios.iter().map(|r| r.map(check)).collect();
                parts.push(weft_ok);
                Verdict::all(&parts)
            }
            Judge::Weft(check) => Verdict::all(&[median(weft.clone()).map(check), weft_ok]),
        };
        let mut cell = |label: &str| -> String {
            let records = recs.all(tag, label);
            let Some(m) = median(rounds(label)) else {
                return "—".into();
            };
            if records.iter().all(|r| complete(r)) {
                fmt(m)
            } else {
                self.incomplete = true;
                format!("{} (!)", fmt(m))
            }
        };
        let cells = [
            cell("weft"),
            cell("prosody"),
            cell("ejabberd"),
            if with_relay {
                cell("relay")
            } else {
                String::new()
            },
        ];
        let n = weft.len();
        self.rows.push(Row {
            figure: if n > 1 {
                format!("{figure}, median of {n} rounds")
            } else {
                figure.clone()
            },
            cells,
            ratios: [fmt_ratio(ratios[0]), fmt_ratio(ratios[1])],
            target: target.into(),
            verdict,
        });
        if n > 1 && !matches!(judge, Judge::None) {
            let values = |label: &str| each_round(&rounds(label), fmt);
            self.rows.push(Row {
                figure: format!("{figure}, each round"),
                cells: [
                    values("weft"),
                    values("prosody"),
                    values("ejabberd"),
                    if with_relay {
                        values("relay")
                    } else {
                        String::new()
                    },
                ],
                ratios: [
                    each_round(&per_round[0], |r| fmt_ratio(Some(r))),
                    each_round(&per_round[1], |r| fmt_ratio(Some(r))),
                ],
                target: String::new(),
                verdict: Verdict::Info,
            });
        }
    }

    /// A figure judged on weft's value alone (peers shown for reference, no ratios).
    fn absolute(
        &mut self,
        figure: String,
        tag: &str,
        key: &str,
        with_peers: bool,
        target: String,
        check: Option<Box<dyn Fn(f64) -> bool>>,
    ) {
        let w = self.recs.num(tag, "weft", key);
        let weft_ok = self.recs.get(tag, "weft").map(complete);
        let verdict = match check {
            None => Verdict::Info,
            Some(f) => Verdict::all(&[w.map(f), weft_ok]),
        };
        let mut cells = [
            self.cell(tag, "weft", key),
            String::new(),
            String::new(),
            String::new(),
        ];
        if with_peers {
            cells[1] = self.cell(tag, "prosody", key);
            cells[2] = self.cell(tag, "ejabberd", key);
        }
        self.rows.push(Row {
            figure,
            cells,
            ratios: [String::new(), String::new()],
            target,
            verdict,
        });
    }

    /// "answered/sample" pings for each server; the target is all of weft's.
    fn pings(&mut self, figure: String, tag: &str, with_peers: bool) {
        let text = |r: Option<&Value>| match r {
            Some(r) if r.get("ping_sample").is_some() => {
                format!("{}/{}", r["ping_ok"], r["ping_sample"])
            }
            Some(_) => "not sampled".into(),
            None => "—".into(),
        };
        let w = self.recs.get(tag, "weft");
        let verdict = Verdict::of(w.map(|r| {
            r["ping_sample"].as_u64().unwrap_or(0) > 0 && r["ping_ok"] == r["ping_sample"]
        }));
        let mut cells = [text(w), String::new(), String::new(), String::new()];
        if with_peers {
            cells[1] = text(self.recs.get(tag, "prosody"));
            cells[2] = text(self.recs.get(tag, "ejabberd"));
        }
        self.rows.push(Row {
            figure,
            cells,
            ratios: [String::new(), String::new()],
            target: "all answered".into(),
            verdict,
        });
    }

    fn note(&mut self, figure: String, cells: [String; 4], target: String, verdict: Verdict) {
        self.rows.push(Row {
            figure,
            cells,
            ratios: [String::new(), String::new()],
            target,
            verdict,
        });
    }
}

/// A note when a memory figure was measured at another session count than the target's.
fn stated_at(n: &str, target_sessions: u64) -> String {
    if n == target_sessions.to_string() {
        String::new()
    } else {
        format!(" (target stated at {target_sessions} sessions)")
    }
}

fn field(r: Option<&Value>, key: &str) -> String {
    r.and_then(|r| r.get(key))
        .filter(|v| !v.is_null())
        .map(|v| v.to_string())
        .unwrap_or_else(|| "?".into())
}

fn build(recs: &Records, a: &CompareArgs) -> (Vec<Row>, bool) {
    let mut t = Table {
        recs,
        rows: Vec::new(),
        incomplete: false,
    };

    // 1. Logins and idle sessions over ws.
    let c = recs.get("connect-ws", "weft");
    let n = field(recs.any("connect-ws"), "n");
    t.versus_rounds(
        format!("SCRAM-SHA-1 logins/s over ws ({n} sessions)"),
        "connect-ws",
        "logins_per_s",
        false,
        "≥10× each peer",
        Judge::Ratios(|r| r >= 10.0),
    );
    t.versus(
        "login time p99 over ws (ms)".into(),
        "connect-ws",
        "login_p99_ms",
        None,
        "",
        None,
    );
    let at = stated_at(&n, a.target_sessions);
    t.versus(
        format!("RSS per idle ws session, KiB ({n} sessions)"),
        "connect-ws",
        "rss_kib_per_session",
        None,
        &format!("weft ≤8 KiB{at}"),
        None,
    );
    // The memory target is on weft's own figure, not a ratio.
    if let Some(last) = t.rows.last_mut() {
        let w = recs.num("connect-ws", "weft", "rss_kib_per_session");
        last.verdict = Verdict::all(&[w.map(|v| v <= 8.0), c.map(complete)]);
    }
    t.versus(
        format!("PSS per idle ws session, KiB ({n} sessions)"),
        "connect-ws",
        "pss_kib_per_session",
        None,
        "",
        None,
    );
    t.pings(
        "pings answered by idle ws sessions".into(),
        "connect-ws",
        true,
    );

    // 1b. The same over wss (weft only).
    let cw = recs.get("connect-wss", "weft");
    let nw = field(cw, "n");
    t.absolute(
        format!("SCRAM-SHA-1 logins/s over wss ({nw} sessions, weft only)"),
        "connect-wss",
        "logins_per_s",
        false,
        String::new(),
        None,
    );
    let at = stated_at(&nw, a.target_sessions);
    t.absolute(
        format!("RSS per idle wss session, KiB ({nw} sessions)"),
        "connect-wss",
        "rss_kib_per_session",
        false,
        format!("≤24 KiB{at}"),
        Some(Box::new(|v| v <= 24.0)),
    );
    t.pings(
        "pings answered by idle wss sessions".into(),
        "connect-wss",
        false,
    );

    // 1c. Logins and idle sessions over plain TCP (RFC 6120), every server: no target, what an
    // operator sizing a deployment with desktop and mobile clients asks next.
    if recs.any("connect-tcp").is_some() {
        let nt = field(recs.any("connect-tcp"), "n");
        t.versus(
            format!("SCRAM-SHA-1 logins/s over tcp ({nt} sessions)"),
            "connect-tcp",
            "logins_per_s",
            None,
            "",
            None,
        );
        t.versus(
            format!("RSS per idle tcp session, KiB ({nt} sessions)"),
            "connect-tcp",
            "rss_kib_per_session",
            None,
            "",
            None,
        );
        t.pings(
            "pings answered by idle tcp sessions".into(),
            "connect-tcp",
            true,
        );
    }

    // 2. Throughput with few pairs, ws and TCP; 3. with many pairs.
    let relay_small = recs.num("tput-ws-small", "relay", "msgs_per_s");
    for tr in ["ws", "tcp"] {
        let tag = format!("tput-{tr}-small");
        let r = recs.get(&tag, "weft");
        let any = recs.any(&tag);
        let (pairs, window) = (field(any, "pairs"), field(any, "window"));
        t.versus(
            format!("msgs/s, {pairs} pairs over {tr} (window {window})"),
            &tag,
            "msgs_per_s",
            (tr == "ws").then_some("tput-ws-small"),
            "≥10× each peer",
            Some(|r| r >= 10.0),
        );
        let w = recs.num(&tag, "weft", "msgs_per_s");
        let frac = ratio(w, relay_small);
        t.note(
            format!("weft {tr} / relay ws msgs/s, {pairs} pairs"),
            [
                frac.map_or("—".into(), |f| format!("{f:.2}")),
                String::new(),
                String::new(),
                String::new(),
            ],
            "≥0.33".into(),
            Verdict::all(&[frac.map(|f| f >= 1.0 / 3.0), r.map(complete)]),
        );
        for (q, key) in [("p50", "latency_p50_ms"), ("p99", "latency_p99_ms")] {
            t.versus(
                format!("latency {q}, {pairs} pairs over {tr} (ms)"),
                &tag,
                key,
                (tr == "ws").then_some("tput-ws-small"),
                "",
                None,
            );
        }
        t.versus(
            format!("server CPU s per 1000 msgs, {pairs} pairs over {tr}"),
            &tag,
            "server_cpu_s_per_1000",
            (tr == "ws").then_some("tput-ws-small"),
            "≤1/10 of each peer's",
            Some(|r| r <= 0.1),
        );
    }
    for tr in ["ws", "tcp"] {
        many_pairs(&mut t, tr);
    }

    // 4. Latency at half of each server's own few-pair ws peak.
    let pairs = field(recs.any("latency-ws"), "pairs");
    t.versus(
        format!("offered msgs/s, {pairs} pairs ws (half the server's own peak)"),
        "latency-ws",
        "offered_rate",
        Some("latency-ws"),
        "",
        None,
    );
    t.versus_rounds(
        "latency p50 at half peak, ws (ms)".into(),
        "latency-ws",
        "latency_p50_ms",
        true,
        "",
        Judge::None,
    );
    t.versus_rounds(
        "latency p99 at half peak, ws (ms)".into(),
        "latency-ws",
        "latency_p99_ms",
        true,
        "weft <5 ms",
        Judge::Weft(|v| v < 5.0),
    );
    steal_rounds(&mut t, "latency-ws", "half-peak latency");

    // Scale: many idle sessions (weft only) and the projection to a million.
    if let Some(s) = recs.get("scale", "weft") {
        let ns = field(Some(s), "n");
        t.absolute(
            format!("idle ws sessions logged in (scale run, {ns})"),
            "scale",
            "ok",
            false,
            String::new(),
            None,
        );
        t.absolute(
            format!("RSS per idle ws session, KiB ({ns} sessions)"),
            "scale",
            "rss_kib_per_session",
            false,
            "≤8 KiB".into(),
            Some(Box::new(|v| v <= 8.0)),
        );
        t.pings(format!("ping sample at {ns} sessions"), "scale", false);
        let (n1, m1) = (
            recs.num("connect-ws", "weft", "ok"),
            recs.num("connect-ws", "weft", "server_rss_kib_after"),
        );
        let (n2, m2, base) = (
            s["ok"].as_f64(),
            s["server_rss_kib_after"].as_f64(),
            s["server_rss_kib_before"].as_f64(),
        );
        // Two fresh-server points give the slope; without the first, the per-session figure.
        let slope = match (n1, m1, n2, m2) {
            (Some(n1), Some(m1), Some(n2), Some(m2)) if n2 > n1 => Some((m2 - m1) / (n2 - n1)),
            _ => s["rss_kib_per_session"].as_f64(),
        };
        let how = match (n1, n2) {
            (Some(n1), Some(n2)) if n2 > n1 => format!("slope {} → {} sessions", fmt(n1), fmt(n2)),
            _ => "per-session figure of the scale run".into(),
        };
        t.note(
            format!("RSS growth per idle ws session, KiB ({how})"),
            [
                slope.map_or("—".into(), fmt),
                String::new(),
                String::new(),
                String::new(),
            ],
            "≤8 KiB".into(),
            Verdict::of(slope.map(|k| k <= 8.0)),
        );
        let projected = slope
            .zip(base)
            .map(|(k, b)| (b + k * a.project_sessions as f64) / (1024.0 * 1024.0));
        t.note(
            format!(
                "projected RSS for {} idle ws sessions, GiB (start RSS + slope × sessions)",
                fmt(a.project_sessions as f64)
            ),
            [
                projected.map_or("—".into(), |g| format!("{g:.2}")),
                String::new(),
                String::new(),
                String::new(),
            ],
            format!(
                "8 KiB/session would be {:.2} GiB",
                8.0 * a.project_sessions as f64 / (1024.0 * 1024.0)
            ),
            Verdict::Info,
        );
    }
    bosh(&mut t);
    rosters(&mut t);
    rooms(&mut t);
    archive(&mut t);
    (t.rows, t.incomplete)
}

/// BOSH (XEP-0124 / XEP-0206, issue 20): logins and messages per second over HTTP long
/// polling, against Prosody's and ejabberd's BOSH. The issue sets no target: the figures and
/// ratios are there to read, each the median of the rounds (BOSH_ROUNDS).
fn bosh(t: &mut Table) {
    let recs = t.recs;
    if let Some(any) = recs.any("connect-bosh") {
        let n = field(Some(any), "n");
        let tag = "connect-bosh";
        for (figure, key) in [
            (
                format!("SCRAM-SHA-1 logins/s over BOSH ({n} sessions)"),
                "logins_per_s",
            ),
            ("login time p99 over BOSH (ms)".into(), "login_p99_ms"),
            (
                format!("RSS per idle BOSH session, KiB ({n} sessions)"),
                "rss_kib_per_session",
            ),
        ] {
            t.versus_rounds(figure, tag, key, false, "", Judge::None);
        }
        t.pings("pings answered by idle BOSH sessions".into(), tag, true);
    }
    if let Some(any) = recs.any("tput-bosh") {
        let (pairs, window) = (field(Some(any), "pairs"), field(Some(any), "window"));
        let tag = "tput-bosh";
        for (figure, unit, key) in [
            ("msgs/s", "", "msgs_per_s"),
            ("latency p99", " (ms)", "latency_p99_ms"),
            ("server CPU s per 1000 msgs", "", "server_cpu_s_per_1000"),
        ] {
            t.versus_rounds(
                format!("{figure}, {pairs} pairs over BOSH (window {window}){unit}"),
                tag,
                key,
                false,
                "",
                Judge::None,
            );
        }
    }
}

/// The message archive (issue 19): PAIRS pairs over ws with every message archived, against
/// each server's own rate without its archive in the same round; pages of a large archive.
fn archive(t: &mut Table) {
    let recs = t.recs;
    if let Some(any) = recs.any("mam-tput-ws") {
        let (pairs, window) = (field(Some(any), "pairs"), field(Some(any), "window"));
        t.versus_rounds(
            format!("msgs/s, {pairs} pairs over ws (window {window}), every message archived"),
            "mam-tput-ws",
            "msgs_per_s",
            false,
            "≥10× each peer",
            Judge::Ratios(|r| r >= 10.0),
        );
        t.versus_rounds(
            "msgs/s, the same without the archive, just before".into(),
            "mam-off-ws",
            "msgs_per_s",
            false,
            "",
            Judge::None,
        );
        // Each server's archive-on rate over its archive-off rate of the same round.
        let shares = |label: &str| {
            per_round_ratios(
                &recs.rounds("mam-tput-ws", label, "msgs_per_s"),
                &recs.rounds("mam-off-ws", label, "msgs_per_s"),
            )
        };
        let share = |label: &str| -> String {
            let v = shares(label);
            match median(v.clone()) {
                None => "—".into(),
                Some(m) if v.len() > 1 => {
                    format!("{m:.2} ({})", each_round(&v, |s| format!("{s:.2}")))
                }
                Some(m) => format!("{m:.2}"),
            }
        };
        t.note(
            "archive on / off, each server's own msgs/s (median of the rounds, then each)".into(),
            [
                share("weft"),
                share("prosody"),
                share("ejabberd"),
                String::new(),
            ],
            "weft ≥0.50".into(),
            Verdict::all(&[
                median(shares("weft")).map(|s| s >= 0.5),
                recs.all_complete("mam-tput-ws", "weft"),
            ]),
        );
        for (figure, key) in [
            (
                "server CPU s per 1000 msgs, archived",
                "server_cpu_s_per_1000",
            ),
            ("latency p99, archived (ms)", "latency_p99_ms"),
        ] {
            t.versus_rounds(
                format!("{figure}, {pairs} pairs over ws"),
                "mam-tput-ws",
                key,
                false,
                "",
                Judge::None,
            );
        }
        archived_row(
            t,
            "mam-tput-archived",
            "messages archived (rows counted in the store after the run) / 2 × sent",
        );
    }
    if let Some(any) = recs.any("mam-query-ws") {
        let (fill, page, clients) = (
            field(Some(any), "fill"),
            field(Some(any), "page"),
            field(Some(any), "clients"),
        );
        let tag = "mam-query-ws";
        // A peer whose archive could not be filled as far (ejabberd's Mnesia bag) says so.
        let smaller: Vec<String> = PEERS
            .iter()
            .filter_map(|p| {
                let f = field(recs.get(tag, p), "fill");
                (f != "?" && f != fill).then(|| format!("{p}'s {f}"))
            })
            .collect();
        let smaller = if smaller.is_empty() {
            String::new()
        } else {
            format!(" ({})", smaller.join(", "))
        };
        t.versus_rounds(
            format!(
                "MAM queries/s, pages of {page} `with` one contact from a {fill}-message \
                 archive{smaller} (last page, then paging back), {clients} clients over ws"
            ),
            tag,
            "queries_per_s",
            false,
            "≥10× each peer",
            Judge::Ratios(|r| r >= 10.0),
        );
        for (figure, key) in [
            ("MAM query time p50 (ms)", "query_p50_ms"),
            ("MAM query time p99 (ms)", "query_p99_ms"),
            ("server CPU ms per MAM query", "server_cpu_ms_per_query"),
            (
                "archive fill, msgs/s (1 pair over ws, 64 in flight, archived for both)",
                "fill_msgs_per_s",
            ),
        ] {
            t.versus_rounds(figure.into(), tag, key, false, "", Judge::None);
        }
        archived_row(
            t,
            "mam-query-archived",
            "messages archived after the fill / 2 × fill",
        );
    }
}

/// compare.sh's count of each server's archive after each run against what it should hold;
/// every server must have archived every message, or the comparison means nothing.
fn archived_row(t: &mut Table, tag: &str, figure: &str) {
    let recs = t.recs;
    let cell = |label: &str| -> String {
        let v = recs.all(tag, label);
        if v.is_empty() {
            return "—".into();
        }
        v.iter()
            .map(|r| format!("{}/{}", r["archived"], r["expected"]))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let ok = |label: &str| -> Option<bool> {
        let v = recs.all(tag, label);
        (!v.is_empty()).then(|| v.iter().all(|r| complete(r)))
    };
    let parts: Vec<Option<bool>> = ["weft", "prosody", "ejabberd"]
        .iter()
        .filter(|l| l == &&"weft" || !recs.all(tag, l).is_empty())
        .map(|l| ok(l))
        .collect();
    t.note(
        figure.into(),
        [
            cell("weft"),
            cell("prosody"),
            cell("ejabberd"),
            String::new(),
        ],
        "all, on every server".into(),
        Verdict::all(&parts),
    );
}

/// The roster scenarios (issue 18): logins with a full roster of offline contacts, and one
/// user's presence changes fanned out to its online contacts. Each in rounds (ROSTER_ROUNDS,
/// FANOUT_ROUNDS; every server once per round), judged on the median of the per-round ratios.
fn rosters(t: &mut Table) {
    let recs = t.recs;
    if let Some(any) = recs.any("roster-login-ws") {
        let (size, req) = (
            field(Some(any), "roster_size"),
            field(Some(any), "requested"),
        );
        let tag = "roster-login-ws";
        t.versus_rounds(
            format!(
                "logins/s with a {size}-contact roster over ws (SCRAM-SHA-1, bind, roster get, \
                 initial presence to {size} offline contacts, ping)"
            ),
            tag,
            "logins_per_s",
            false,
            "≥10× each peer",
            Judge::Ratios(|r| r >= 10.0),
        );
        let done = |label: &str| -> String {
            let v = recs.rounds(tag, label, "ok");
            if v.is_empty() {
                "—".into()
            } else {
                each_round(&v, |x| format!("{x:.0}"))
            }
        };
        t.note(
            format!("logins measured (of {req}; none starts after the time bound)"),
            [
                done("weft"),
                done("prosody"),
                done("ejabberd"),
                String::new(),
            ],
            String::new(),
            Verdict::Info,
        );
        for (figure, key) in [
            ("login time p50 with roster (ms)", "login_p50_ms"),
            ("login time p99 with roster (ms)", "login_p99_ms"),
            (
                "server CPU ms per login with roster",
                "server_cpu_ms_per_login",
            ),
            (
                "presences a login received before its ping result (answers to its probes)",
                "presences_per_login",
            ),
        ] {
            t.versus_rounds(figure.into(), tag, key, false, "", Judge::None);
        }
    }
    if let Some(any) = recs.any("fanout-ws") {
        let (contacts, changes) = (field(Some(any), "contacts"), field(Some(any), "changes"));
        // Records before --window sent one change at a time.
        let window = any["window"].as_u64().unwrap_or(1);
        let pace = if window == 1 {
            "one at a time".to_string()
        } else {
            format!("{window} in flight")
        };
        let tag = "fanout-ws";
        t.versus_rounds(
            format!(
                "presence deliveries/s, one user to {contacts} online contacts over ws \
                 (up to {changes} changes, {pace})"
            ),
            tag,
            "deliveries_per_s",
            false,
            "≥10× each peer",
            Judge::Ratios(|r| r >= 10.0),
        );
        fanout_detail_rows(t, tag, &pace);
    }
    // One change at a time: the rate is the generator's round trip as much as the server's,
    // so it has no target; its latency is one change's alone.
    if let Some(any) = recs.any("fanout1-ws") {
        let changes = field(Some(any), "changes");
        let pace = format!("up to {changes} changes one at a time");
        let tag = "fanout1-ws";
        t.versus_rounds(
            format!("presence deliveries/s, {pace}"),
            tag,
            "deliveries_per_s",
            false,
            "",
            Judge::None,
        );
        fanout_detail_rows(t, tag, &pace);
    }
}

/// The room scenario (issue 20): deliveries in a room of many occupants, then joins into it.
fn rooms(t: &mut Table) {
    let tag = "muc-ws";
    let Some(any) = t.recs.any(tag) else {
        return;
    };
    let (occupants, senders, window, joins) = (
        field(Some(any), "occupants"),
        field(Some(any), "senders"),
        field(Some(any), "window"),
        field(Some(any), "joins"),
    );
    t.versus_rounds(
        format!(
            "room message deliveries/s, {occupants} occupants over ws, {senders} sending, \
             {window} messages in flight"
        ),
        tag,
        "deliveries_per_s",
        false,
        "≥10× each peer",
        Judge::Ratios(|r| r >= 10.0),
    );
    for (figure, key) in [
        ("room message, send to last delivery p50 (ms)", "muc_p50_ms"),
        ("room message, send to last delivery p99 (ms)", "muc_p99_ms"),
        (
            "server CPU s per 1000 room deliveries",
            "server_cpu_s_per_1000",
        ),
    ] {
        t.versus_rounds(figure.into(), tag, key, false, "", Judge::None);
    }
    t.versus_rounds(
        format!(
            "joins/s into the {occupants}-occupant room ({joins} joins, each with the room's \
             default history)"
        ),
        tag,
        "joins_per_s",
        false,
        "",
        Judge::None,
    );
    for (figure, key) in [
        ("join time p50 (ms)", "join_p50_ms"),
        ("join time p99 (ms)", "join_p99_ms"),
    ] {
        t.versus_rounds(figure.into(), tag, key, false, "", Judge::None);
    }
}

/// The latency and CPU rows of a fan-out run (`pace` says how its changes were sent).
fn fanout_detail_rows(t: &mut Table, tag: &str, pace: &str) {
    for (figure, key) in [
        (
            "presence change, send to last delivery p50 (ms)",
            "fanout_p50_ms",
        ),
        (
            "presence change, send to last delivery p99 (ms)",
            "fanout_p99_ms",
        ),
        (
            "server CPU s per 1000 presence deliveries",
            "server_cpu_s_per_1000",
        ),
    ] {
        t.versus_rounds(
            format!("{figure}, {pace}"),
            tag,
            key,
            false,
            "",
            Judge::None,
        );
    }
}

/// A run's steal (`server_steal_s` or `generator_steal_s`) as a percentage of its window.
fn steal_pct(r: &Value, key: &str) -> Option<f64> {
    Some(100.0 * r[key].as_f64()? / r["seconds"].as_f64().filter(|s| *s > 0.0)?)
}

/// A row listing, for every round of `tag`, the share of the measured window that the VM's
/// host took from the server's CPU and from the generator's ("server/generator %"): next to a
/// tail latency it shows which rounds the host disturbed.
fn steal_rounds(t: &mut Table, tag: &str, what: &str) {
    let recs = t.recs;
    let rounds = |label: &str| -> String {
        recs.all(tag, label)
            .iter()
            .map(|r| {
                match (
                    steal_pct(r, "server_steal_s"),
                    steal_pct(r, "generator_steal_s"),
                ) {
                    (Some(s), Some(g)) => format!("{s:.0}/{g:.0}"),
                    _ => "?".into(),
                }
            })
            .collect::<Vec<_>>()
            .join(" · ")
    };
    if recs.all(tag, "weft").is_empty() {
        return;
    }
    t.note(
        format!("host steal in the {what} rounds, % of the window (server's CPU / generator's)"),
        [
            rounds("weft"),
            rounds("prosody"),
            rounds("ejabberd"),
            rounds("relay"),
        ],
        String::new(),
        Verdict::Info,
    );
}

fn markdown(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str("| figure | weft | prosody | ejabberd | relay | weft/prosody | weft/ejabberd | target | pass |\n");
    s.push_str("|---|--:|--:|--:|--:|--:|--:|---|---|\n");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.figure,
            r.cells[0],
            r.cells[1],
            r.cells[2],
            r.cells[3],
            r.ratios[0],
            r.ratios[1],
            r.target,
            r.verdict.text()
        );
    }
    s
}

/// The throughput runs in which the VM's host took 1% or more of the server's CPU ("steal"):
/// time the server neither ran nor waited, which its own CPU figures do not show and which
/// lowers its msgs/s and lengthens its latency tail. Empty when none did (or on bare metal).
fn steal_note(recs: &Records) -> String {
    let runs: Vec<String> = recs
        .0
        .iter()
        .filter(|r| r["scenario"].as_str() == Some("throughput"))
        .filter_map(|r| {
            let pct = steal_pct(r, "server_steal_s")?;
            (pct >= 1.0).then(|| {
                format!(
                    "{} {} {:.0}%",
                    r["label"].as_str().unwrap_or("?"),
                    r["tag"].as_str().unwrap_or("?"),
                    pct
                )
            })
        })
        .collect();
    if runs.is_empty() {
        return String::new();
    }
    format!(
        "\nSteal on the server's CPU (the VM's host running something else), share of the \
         measured window: {}.\n",
        runs.join(", ")
    )
}

pub fn run(a: &CompareArgs) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let mut recs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", a.file.display(), i + 1))?;
        recs.push(v);
    }
    let recs = Records(recs);
    let (rows, incomplete) = build(&recs, a);
    let table = markdown(&rows);
    let (pass, fail, nodata) = rows.iter().fold((0, 0, 0), |(p, f, n), r| match r.verdict {
        Verdict::Pass => (p + 1, f, n),
        Verdict::Fail => (p, f + 1, n),
        Verdict::NoData => (p, f, n + 1),
        Verdict::Info => (p, f, n),
    });
    let mut notes = format!("Targets: {pass} pass, {fail} fail, {nodata} without data.\n");
    if incomplete {
        notes.push_str(
            "\n(!) that run did not complete cleanly (failed logins, unanswered pings, lost or \
             bounced messages, or sessions closed by the server): see its JSON line.\n",
        );
    }
    notes.push_str(&steal_note(&recs));
    notes.push_str(
        "\n— no record (the scenario was skipped or failed before it could report). Ratios are \
         weft/peer; for CPU per message and latency lower is better, so the CPU target is a \
         ratio ≤0.1.\n",
    );
    print!("{table}\n{notes}");
    if let Some(out) = &a.out {
        let mut doc = String::new();
        if let Some(h) = &a.header {
            doc.push_str(
                &std::fs::read_to_string(h).with_context(|| format!("reading {}", h.display()))?,
            );
            doc.push('\n');
        }
        doc.push_str(&table);
        doc.push('\n');
        doc.push_str(&notes);
        std::fs::write(out, doc).with_context(|| format!("writing {}", out.display()))?;
        println!("\nwritten to {}", out.display());
    }
    Ok(true)
}

/// The many-pairs rows of one transport: each server's few-pair and many-pair runs at the same
/// window, back to back on one start of it, in one or more rounds (see compare.sh). The target
/// is weft's many-pair rate as a share of its few-pair rate, judged on the median of the
/// per-round shares: both runs of a round are a minute apart, while the VM's speed drifts
/// between rounds (one binary's 500-pair rate moved from 62k to 98k msgs/s within minutes).
fn many_pairs(t: &mut Table, tr: &str) {
    let recs = t.recs;
    let tag = format!("tput-{tr}-big");
    let any = recs.any(&tag);
    let (pairs, window) = (field(any, "pairs"), field(any, "window"));
    // The same window with few pairs is the fair reference; older records without it fall
    // back to the window-32 run.
    let same_window = recs.any(&format!("tput-{tr}-small-w")).is_some();
    let few_tag = if same_window {
        format!("tput-{tr}-small-w")
    } else {
        format!("tput-{tr}-small")
    };
    let few = field(recs.any(&few_tag), "pairs");
    let with_relay = tr == "ws";
    // (The window-32 reference of older records has its rows already.)
    if same_window {
        for (figure, key) in [
            ("msgs/s", "msgs_per_s"),
            ("server CPU s per 1000 msgs", "server_cpu_s_per_1000"),
        ] {
            t.versus_rounds(
                format!("{figure}, {few} pairs over {tr} (window {window})"),
                &few_tag,
                key,
                with_relay,
                "",
                Judge::None,
            );
        }
    }
    // Round i's many-pair rate over round i's few-pair rate, for one server.
    let shares = |label: &str| {
        per_round_ratios(
            &recs.rounds(&tag, label, "msgs_per_s"),
            &recs.rounds(&few_tag, label, "msgs_per_s"),
        )
    };
    t.versus_rounds(
        format!("msgs/s, {pairs} pairs over {tr} (window {window})"),
        &tag,
        "msgs_per_s",
        with_relay,
        &format!("≥80% of weft's {few}-pair {tr} rate at this window, median of the rounds"),
        Judge::None,
    );
    if let Some(last) = t.rows.last_mut() {
        last.verdict = Verdict::all(&[
            median(shares("weft")).map(|s| s >= 0.8),
            recs.all_complete(&tag, "weft"),
        ]);
    }
    t.versus_rounds(
        format!("server CPU s per 1000 msgs, {pairs} pairs over {tr} (window {window})"),
        &tag,
        "server_cpu_s_per_1000",
        with_relay,
        "",
        Judge::None,
    );
    t.versus_rounds(
        format!("latency p99, {pairs} pairs over {tr} (ms)"),
        &tag,
        "latency_p99_ms",
        with_relay,
        "weft <50 ms",
        Judge::Weft(|v| v < 50.0),
    );
    // Every server's own share, the relay's included: the relay does the least any WebSocket
    // router can (read a frame, write it), so its share is about what this machine's kernel
    // allows at this many sockets.
    let share = |label: &str| -> String {
        let v = shares(label);
        match median(v.clone()) {
            None => "—".into(),
            Some(m) if v.len() > 1 => format!("{m:.2} ({})", each_round(&v, |s| format!("{s:.2}"))),
            Some(m) => format!("{m:.2}"),
        }
    };
    t.note(
        format!(
            "share of the {few}-pair rate kept at {pairs} pairs, window {window}, {tr} \
             (each server's own; median, then each round)"
        ),
        [
            share("weft"),
            share("prosody"),
            share("ejabberd"),
            if with_relay {
                share("relay")
            } else {
                String::new()
            },
        ],
        if with_relay {
            "the relay's is the ceiling for any WebSocket router here".into()
        } else {
            String::new()
        },
        Verdict::Info,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tag: &str, label: &str, extra: Value) -> Value {
        let mut v = serde_json::json!({"tag": tag, "label": label, "scenario": "throughput",
            "lost": 0, "errors": 0, "closed": 0, "delivered_in_window": 100});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    #[test]
    fn ratios_and_verdicts() {
        let recs = Records(vec![
            rec(
                "tput-ws-small",
                "weft",
                serde_json::json!({"msgs_per_s": 100000.0, "pairs": 10, "window": 32, "server_cpu_s_per_1000": 0.005}),
            ),
            rec(
                "tput-ws-small",
                "prosody",
                serde_json::json!({"msgs_per_s": 5000.0, "server_cpu_s_per_1000": 0.1}),
            ),
            rec(
                "tput-ws-small",
                "ejabberd",
                serde_json::json!({"msgs_per_s": 20000.0, "server_cpu_s_per_1000": 0.04}),
            ),
            rec(
                "tput-ws-small",
                "relay",
                serde_json::json!({"msgs_per_s": 250000.0}),
            ),
        ]);
        let a = CompareArgs {
            file: PathBuf::new(),
            header: None,
            out: None,
            target_sessions: 10_000,
            project_sessions: 1_000_000,
        };
        let (rows, incomplete) = build(&recs, &a);
        assert!(!incomplete);
        let tput = row(&rows, "msgs/s, 10 pairs over ws");
        assert_eq!(tput.cells[0], "100,000");
        assert_eq!(tput.ratios, ["20×".to_string(), "5.0×".to_string()]);
        assert!(tput.verdict == Verdict::Fail, "5× ejabberd is below 10×");
        let relay = row(&rows, "weft ws / relay");
        assert_eq!(relay.cells[0], "0.40");
        assert!(relay.verdict == Verdict::Pass);
        let cpu = row(&rows, "server CPU s per 1000 msgs, 10 pairs over ws");
        assert!(
            cpu.verdict == Verdict::Fail,
            "0.125 of ejabberd's is above 1/10"
        );
        // No TCP records at all: the row is there, without data.
        assert!(row(&rows, "msgs/s, ? pairs over tcp").verdict == Verdict::NoData);
    }

    /// The row whose figure starts with `prefix`.
    fn row<'a>(rows: &'a [Row], prefix: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.figure.starts_with(prefix))
            .unwrap_or_else(|| panic!("no row {prefix}"))
    }

    fn args() -> CompareArgs {
        CompareArgs {
            file: PathBuf::new(),
            header: None,
            out: None,
            target_sessions: 10_000,
            project_sessions: 1_000_000,
        }
    }

    fn login(label: &str, rate: f64) -> Value {
        serde_json::json!({"tag": "connect-ws", "label": label, "scenario": "connect", "n": 10,
            "ok": 10, "failed": 0, "dropped": 0, "logins_per_s": rate})
    }

    #[test]
    fn login_rounds_give_medians_of_per_round_ratios() {
        // Round by round the VM's speed moves: weft/ejabberd is 12×, 8× and 11×, so the
        // median ratio is 11× even though the median rates alone would give 9,000 / 900 = 10×.
        let recs = Records(vec![
            login("weft", 12_000.0),
            login("ejabberd", 1_000.0),
            login("prosody", 200.0),
            login("weft", 8_000.0),
            login("ejabberd", 1_000.0),
            login("prosody", 300.0),
            login("weft", 9_000.0),
            login("ejabberd", 820.0),
            login("prosody", 250.0),
        ]);
        let (rows, _) = build(&recs, &args());
        let median = row(
            &rows,
            "SCRAM-SHA-1 logins/s over ws (10 sessions), median of 3 rounds",
        );
        assert_eq!(median.cells[0], "9,000");
        assert_eq!(median.cells[2], "1,000");
        assert_eq!(median.ratios[1], "11×");
        assert_eq!(median.ratios[0], "36×");
        assert!(median.verdict == Verdict::Pass);
        let each = row(
            &rows,
            "SCRAM-SHA-1 logins/s over ws (10 sessions), each round",
        );
        assert_eq!(each.cells[0], "12,000 · 8,000 · 9,000");
        assert_eq!(each.ratios[1], "12× · 8.0× · 11×");
        assert!(each.verdict == Verdict::Info);

        // One round: a single row, judged on that round's ratio.
        let recs = Records(vec![
            login("weft", 9_000.0),
            login("prosody", 100.0),
            login("ejabberd", 1_000.0),
        ]);
        let (rows, _) = build(&recs, &args());
        let logins: Vec<&Row> = rows
            .iter()
            .filter(|r| r.figure.starts_with("SCRAM-SHA-1 logins/s over ws ("))
            .collect();
        assert_eq!(logins.len(), 1);
        assert_eq!(logins[0].ratios[1], "9.0×");
        assert!(logins[0].verdict == Verdict::Fail);

        // A peer round that did not report: rounds are not paired, the ratio has no data.
        let recs = Records(vec![
            login("weft", 12_000.0),
            login("ejabberd", 1_000.0),
            login("prosody", 200.0),
            login("weft", 8_000.0),
            login("prosody", 300.0),
        ]);
        let (rows, _) = build(&recs, &args());
        let median = row(
            &rows,
            "SCRAM-SHA-1 logins/s over ws (10 sessions), median of 2",
        );
        assert_eq!(median.ratios[1], "—");
        assert_eq!(median.ratios[0], "43×");
        assert!(median.verdict == Verdict::NoData);
    }

    #[test]
    fn half_peak_latency_judged_on_weft_median_of_rounds() {
        let lat = |label: &str, p99: f64| {
            rec(
                "latency-ws",
                label,
                serde_json::json!({"latency_p99_ms": p99, "latency_p50_ms": 0.5, "pairs": 10}),
            )
        };
        let recs = Records(vec![
            lat("weft", 8.0),
            lat("relay", 3.0),
            lat("weft", 3.0),
            lat("relay", 0.6),
            lat("weft", 4.0),
            lat("relay", 1.0),
        ]);
        let (rows, _) = build(&recs, &args());
        let p99 = row(
            &rows,
            "latency p99 at half peak, ws (ms), median of 3 rounds",
        );
        assert_eq!(p99.cells[0], "4.00");
        assert_eq!(p99.cells[3], "1.00");
        assert!(p99.verdict == Verdict::Pass, "one slow round of three");
        let each = row(&rows, "latency p99 at half peak, ws (ms), each round");
        assert_eq!(each.cells[0], "8.00 · 3.00 · 4.00");
        // p50 has no target: no per-round row.
        assert!(!rows.iter().any(|r| r
            .figure
            .starts_with("latency p50 at half peak, ws (ms), each round")));

        // No steal figures in these records: the steal row says so per round.
        let steal = row(&rows, "host steal in the half-peak latency rounds");
        assert_eq!(steal.cells[0], "? · ? · ?");

        let recs = Records(vec![lat("weft", 8.0), lat("weft", 6.0), lat("weft", 3.0)]);
        let (rows, _) = build(&recs, &args());
        let p99 = row(&rows, "latency p99 at half peak");
        assert!(p99.verdict == Verdict::Fail, "median 6 ms");

        // Steal per round, server's CPU / generator's, as a share of the measured window.
        let stolen = |server: f64, generator: f64| {
            rec(
                "latency-ws",
                "weft",
                serde_json::json!({"latency_p99_ms": 20.0, "seconds": 10.0,
                    "server_steal_s": server, "generator_steal_s": generator}),
            )
        };
        let recs = Records(vec![stolen(1.73, 3.3), stolen(0.0, 0.01)]);
        let (rows, _) = build(&recs, &args());
        let steal = row(&rows, "host steal in the half-peak latency rounds");
        assert_eq!(steal.cells[0], "17/33 · 0/0");
        assert_eq!(steal.cells[2], "");
    }

    #[test]
    fn many_pair_rate_as_a_share_of_the_few_pair_rate() {
        let rate = |tag: &str, label: &str, pairs: u32, msgs: f64| {
            rec(
                tag,
                label,
                serde_json::json!({"msgs_per_s": msgs, "pairs": pairs, "window": 1}),
            )
        };
        let recs = Records(vec![
            rate("tput-ws-small-w", "weft", 10, 100_000.0),
            rate("tput-ws-small-w", "relay", 10, 120_000.0),
            rate("tput-ws-small-w", "ejabberd", 10, 20_000.0),
            rate("tput-ws-big", "weft", 500, 70_000.0),
            rate("tput-ws-big", "relay", 500, 72_000.0),
            rate("tput-ws-big", "ejabberd", 500, 10_000.0),
        ]);
        const SHARE: &str = "share of the 10-pair rate kept at 500 pairs, window 1, ws";
        let (rows, _) = build(&recs, &args());
        let share = row(&rows, SHARE);
        assert_eq!(share.cells, ["0.70", "—", "0.50", "0.60"].map(String::from));
        let big = row(&rows, "msgs/s, 500 pairs over ws");
        assert!(
            big.verdict == Verdict::Fail,
            "70% of the few-pair rate is below 80%"
        );

        // Three rounds: shares 0.90, 0.70 and 0.85, each against its own round's few-pair
        // rate. The median share (0.85) passes, although the median rates alone would give
        // 85,000 / 110,000 = 0.77.
        // weft's rounds, each (few-pair rate, many-pair rate) back to back.
        let rounds = |r: &[(f64, f64)]| {
            Records(
                r.iter()
                    .flat_map(|&(few, many)| {
                        [
                            rate("tput-ws-small-w", "weft", 10, few),
                            rate("tput-ws-big", "weft", 500, many),
                        ]
                    })
                    .collect(),
            )
        };
        let recs = rounds(&[
            (100_000.0, 90_000.0),
            (120_000.0, 84_000.0),
            (110_000.0, 93_500.0),
        ]);
        let (rows, _) = build(&recs, &args());
        let share = row(&rows, SHARE);
        assert_eq!(share.cells[0], "0.85 (0.90 · 0.70 · 0.85)");
        let big = row(
            &rows,
            "msgs/s, 500 pairs over ws (window 1), median of 3 rounds",
        );
        assert_eq!(big.cells[0], "90,000");
        assert!(big.verdict == Verdict::Pass);
        let few = row(
            &rows,
            "msgs/s, 10 pairs over ws (window 1), median of 3 rounds",
        );
        assert_eq!(few.cells[0], "110,000");

        // A round whose many-pair run is missing cannot be paired: no data, not a pass.
        let mut recs = rounds(&[(100_000.0, 90_000.0)]);
        recs.0.push(rate("tput-ws-small-w", "weft", 10, 100_000.0));
        let (rows, _) = build(&recs, &args());
        assert!(row(&rows, "msgs/s, 500 pairs over ws").verdict == Verdict::NoData);
    }

    #[test]
    fn roster_rows() {
        let login = |label: &str, rate: f64| {
            serde_json::json!({"tag": "roster-login-ws", "label": label, "scenario": "roster-login",
                "n": 100, "requested": 2000, "ok": 100, "failed": 0, "dropped": 0,
                "roster_size": 200, "logins_per_s": rate, "presences_per_login": 201.0})
        };
        let fan = |label: &str, rate: f64, missed: u32| {
            serde_json::json!({"tag": "fanout-ws", "label": label, "scenario": "fanout",
                "contacts": 500, "changes": 200, "measured_changes": 200, "missed": missed,
                "unexpected": 0, "deliveries_per_s": rate, "fanout_p99_ms": 9.0})
        };
        let one_at_a_time = |label: &str, rate: f64| {
            let mut r = fan(label, rate, 0);
            r["tag"] = "fanout1-ws".into();
            r
        };
        let recs = Records(vec![
            login("weft", 2_000.0),
            login("ejabberd", 150.0),
            login("prosody", 100.0),
            fan("weft", 50_000.0, 0),
            fan("ejabberd", 10_000.0, 0),
            fan("prosody", 4_000.0, 0),
            one_at_a_time("weft", 20_000.0),
            one_at_a_time("ejabberd", 10_000.0),
            one_at_a_time("prosody", 4_000.0),
        ]);
        let (rows, incomplete) = build(&recs, &args());
        assert!(!incomplete);
        let l = row(&rows, "logins/s with a 200-contact roster over ws");
        assert_eq!(l.ratios, ["20×".to_string(), "13×".to_string()]);
        assert!(l.verdict == Verdict::Pass);
        assert_eq!(
            row(&rows, "logins measured (of 2000").cells[0],
            "100".to_string()
        );
        let f = row(
            &rows,
            "presence deliveries/s, one user to 500 online contacts",
        );
        assert_eq!(f.ratios, ["12×".to_string(), "5.0×".to_string()]);
        assert!(f.verdict == Verdict::Fail);
        // One at a time: listed, not judged.
        let one = row(
            &rows,
            "presence deliveries/s, up to 200 changes one at a time",
        );
        assert_eq!(one.ratios, ["5.0×".to_string(), "2.0×".to_string()]);
        assert!(one.target.is_empty());

        // A contact that missed a change: the run is marked and fails its target.
        let recs = Records(vec![
            fan("weft", 500_000.0, 3),
            fan("ejabberd", 10_000.0, 0),
            fan("prosody", 4_000.0, 0),
        ]);
        let (rows, incomplete) = build(&recs, &args());
        assert!(incomplete);
        let f = row(&rows, "presence deliveries/s");
        assert_eq!(f.cells[0], "500,000 (!)");
        assert!(f.verdict == Verdict::Fail);
        assert!(!rows.iter().any(|r| r.figure.starts_with("logins/s with a")));
    }

    #[test]
    fn archive_rows() {
        let tput = |tag: &str, label: &str, rate: f64| {
            rec(
                tag,
                label,
                serde_json::json!({"pairs": 10, "window": 32, "msgs_per_s": rate}),
            )
        };
        let archived = |label: &str, n: u64| {
            serde_json::json!({"tag": "mam-tput-archived", "label": label,
                "scenario": "mam-archived", "archived": n, "expected": 200})
        };
        let query = |label: &str, qps: f64, errors: u32| {
            serde_json::json!({"tag": "mam-query-ws", "label": label, "scenario": "mam-query",
                "fill": 100000, "page": 50, "clients": 10, "queries_per_s": qps,
                "queries_measured": 10, "errors": errors})
        };
        let recs = Records(vec![
            tput("mam-off-ws", "weft", 100_000.0),
            tput("mam-tput-ws", "weft", 60_000.0),
            archived("weft", 200),
            tput("mam-off-ws", "prosody", 10_000.0),
            tput("mam-tput-ws", "prosody", 1_000.0),
            archived("prosody", 200),
            tput("mam-off-ws", "ejabberd", 20_000.0),
            tput("mam-tput-ws", "ejabberd", 5_000.0),
            archived("ejabberd", 199),
            query("weft", 2_000.0, 0),
            query("prosody", 100.0, 0),
            query("ejabberd", 1.0, 0),
        ]);
        let (rows, _) = build(&recs, &args());
        let r = row(
            &rows,
            "msgs/s, 10 pairs over ws (window 32), every message archived",
        );
        assert_eq!(r.ratios, ["60×".to_string(), "12×".to_string()]);
        assert!(r.verdict == Verdict::Pass);
        let share = row(&rows, "archive on / off");
        assert_eq!(share.cells[0], "0.60");
        assert!(share.verdict == Verdict::Pass);
        // ejabberd lost one: the archive check fails.
        let a = row(&rows, "messages archived (rows");
        assert_eq!(a.cells[2], "199/200");
        assert!(a.verdict == Verdict::Fail);
        let q = row(&rows, "MAM queries/s");
        assert_eq!(q.ratios, ["20×".to_string(), "2000×".to_string()]);
        assert!(q.verdict == Verdict::Pass);
        // A bad reply marks weft's run and fails the target.
        let recs = Records(vec![query("weft", 2_000.0, 1), query("prosody", 1.0, 0)]);
        let (rows, incomplete) = build(&recs, &args());
        assert!(incomplete);
        assert!(row(&rows, "MAM queries/s").verdict != Verdict::Pass);
    }

    #[test]
    fn bosh_rows_are_read_not_judged() {
        let login = |label: &str, rate: f64| {
            serde_json::json!({"tag": "connect-bosh", "label": label, "scenario": "connect",
                "n": 2000, "ok": 2000, "failed": 0, "dropped": 0, "logins_per_s": rate,
                "ping_sample": 1000, "ping_ok": 1000})
        };
        let tput = |label: &str, rate: f64| {
            rec(
                "tput-bosh",
                label,
                serde_json::json!({"msgs_per_s": rate, "pairs": 10, "window": 32}),
            )
        };
        let recs = Records(vec![
            login("weft", 3_000.0),
            login("ejabberd", 600.0),
            login("prosody", 300.0),
            tput("weft", 40_000.0),
            tput("ejabberd", 8_000.0),
            tput("prosody", 2_000.0),
            login("weft", 2_000.0),
            login("ejabberd", 500.0),
            login("prosody", 400.0),
            tput("weft", 36_000.0),
            tput("ejabberd", 9_000.0),
            tput("prosody", 3_000.0),
        ]);
        let (rows, incomplete) = build(&recs, &args());
        assert!(!incomplete);
        let l = row(
            &rows,
            "SCRAM-SHA-1 logins/s over BOSH (2000 sessions), median of 2 rounds",
        );
        assert_eq!(l.cells[0], "2,500");
        // Per-round ratios 10 and 5.0 (Prosody), 5.0 and 4.0 (ejabberd).
        assert_eq!(l.ratios, ["7.5×".to_string(), "4.5×".to_string()]);
        assert!(l.verdict == Verdict::Info && l.target.is_empty());
        let m = row(
            &rows,
            "msgs/s, 10 pairs over BOSH (window 32), median of 2 rounds",
        );
        assert_eq!(m.cells, ["38,000", "2,500", "8,500", ""].map(String::from));
        assert_eq!(m.ratios, ["16×".to_string(), "4.5×".to_string()]);
        assert!(m.verdict == Verdict::Info);
        assert!(!rows
            .iter()
            .any(|r| r.figure.contains("BOSH") && r.figure.contains("each round")));
        assert_eq!(
            row(&rows, "pings answered by idle BOSH").cells[1],
            "1000/1000"
        );

        // Without BOSH records, no BOSH rows.
        let (rows, _) = build(&Records(vec![]), &args());
        assert!(rows.iter().all(|r| !r.figure.contains("BOSH")));
    }

    #[test]
    fn steal_is_listed_from_one_percent() {
        let recs = Records(vec![
            rec(
                "tput-ws-small",
                "weft",
                serde_json::json!({"seconds": 10.0, "server_steal_s": 1.5}),
            ),
            rec(
                "tput-ws-small",
                "relay",
                serde_json::json!({"seconds": 10.0, "server_steal_s": 0.05}),
            ),
            rec(
                "tput-tcp-small",
                "weft",
                serde_json::json!({"seconds": 10.0}),
            ),
        ]);
        let note = steal_note(&recs);
        assert!(note.contains("weft tput-ws-small 15%"), "{note}");
        assert!(!note.contains("relay"), "{note}");
        assert!(steal_note(&Records(vec![])).is_empty());
    }
}
