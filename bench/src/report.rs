//! Results: human-readable lines as a scenario runs, then one JSON record per run on a line
//! starting with `RESULT ` (and appended to `--json-out`), which the comparison table reads.

use std::io::Write;
use std::path::Path;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// Latency histogram in microseconds, 3 significant digits, up to 10 minutes.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Milliseconds at quantile `q`.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    round3(h.value_at_quantile(q) as f64 / 1000.0)
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `p50=… p99=… p99.9=… max=…` in ms, and the same as JSON fields with `prefix`.
pub fn latency(h: &Histogram<u64>, prefix: &str, json: &mut Map<String, Value>) -> String {
    let max = round3(h.max() as f64 / 1000.0);
    for (k, v) in [
        ("p50", ms(h, 0.5)),
        ("p99", ms(h, 0.99)),
        ("p999", ms(h, 0.999)),
        ("max", max),
    ] {
        json.insert(format!("{prefix}_{k}_ms"), json!(v));
    }
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        ms(h, 0.5),
        ms(h, 0.99),
        ms(h, 0.999),
        max
    )
}

/// Prints the record and appends it to `out`, one JSON object per line.
pub fn emit(record: &Map<String, Value>, out: Option<&Path>) -> anyhow::Result<()> {
    let line = Value::Object(record.clone()).to_string();
    println!("RESULT {line}");
    if let Some(path) = out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

/// `weft-bench summary FILE`: one line per record of a JSON-lines file.
pub fn summary(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    println!(
        "{:<10} {:<10} {:<6} {:<14} figures",
        "scenario", "label", "trans", "mech"
    );
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Value = serde_json::from_str(line)?;
        let g = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
        let figures = match r["scenario"].as_str() {
            Some("connect") => format!(
                "{} logins/s ({} ok, {} failed), {} KiB RSS / {} KiB PSS per idle session, login p99 {} ms, pings {}/{}",
                g("logins_per_s"), g("ok"), g("failed"), g("rss_kib_per_session"), g("pss_kib_per_session"),
                g("login_p99_ms"), g("ping_ok"), g("ping_sample")
            ),
            Some("throughput") => format!(
                "{} msgs/s ({} pairs), latency p50 {} / p99 {} / p99.9 {} ms, server {} CPU s per 1000 msgs",
                g("msgs_per_s"), g("pairs"), g("latency_p50_ms"), g("latency_p99_ms"), g("latency_p999_ms"),
                g("server_cpu_s_per_1000")
            ),
            _ => line.to_string(),
        };
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let mech = if s("target") == "relay" {
            "-".into()
        } else {
            s("mech")
        };
        println!(
            "{:<10} {:<10} {:<6} {:<14} {figures}",
            s("scenario"),
            s("label"),
            s("transport"),
            mech
        );
    }
    Ok(())
}
