//! What the kernel reports about a process (proc(5)): resident and proportional memory, CPU
//! time, and the CPUs it may run on — read for the server under test and for the generator.

use std::sync::OnceLock;

use anyhow::Context;

/// Memory of a process in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kib: u64,
    /// Proportional set size: shared pages divided among their users, so libraries count less.
    pub pss_kib: u64,
}

fn field_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

pub fn mem(pid: u32) -> anyhow::Result<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process {pid}"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    Ok(Mem {
        rss_kib: field_kib(&status, "VmRSS:").unwrap_or(0),
        pss_kib: field_kib(&rollup, "Pss:").unwrap_or(0),
    })
}

/// Clock ticks per second for /proc/PID/stat (`getconf CLK_TCK`; 100 on Linux in practice).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User plus system CPU seconds of all threads of `pid` ("self" for this process).
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).context("no utime")?.parse()?;
    let stime: f64 = f.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / clk_tck())
}

/// `Cpus_allowed_list` of a process, so a report states how it was pinned.
pub fn cpus_allowed(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Cpus_allowed_list:")
                    .map(|v| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "?".into())
}

/// The CPU numbers in a `Cpus_allowed_list` ("1", "0-3", "0,2-3").
pub fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
            cpus.extend(a..=b);
        }
    }
    cpus
}

/// Seconds the hypervisor gave `cpus` to someone else ("steal" in /proc/stat, proc(5)): on a
/// shared VM, time in which a pinned process neither ran nor waited, which no figure of the
/// process itself shows.
pub fn steal_seconds(cpus: &[usize]) -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let ticks: u64 = stat
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let cpu: usize = f.next()?.strip_prefix("cpu")?.parse().ok()?;
            // user nice system idle iowait irq softirq steal
            let steal = f.nth(7)?.parse::<u64>().ok()?;
            cpus.contains(&cpu).then_some(steal)
        })
        .sum();
    ticks as f64 / clk_tck()
}

/// CPU and memory of the server, when its pid is known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub cpu_s: f64,
    pub mem: Mem,
    pub gen_cpu_s: f64,
    /// Steal on the CPUs the server may use, and on the generator's.
    pub server_steal_s: f64,
    pub gen_steal_s: f64,
}

pub fn sample(server: Option<u32>) -> Sample {
    let (cpu_s, mem) = match server {
        Some(pid) => (
            cpu_seconds(&pid.to_string()).unwrap_or(0.0),
            self::mem(pid).unwrap_or_default(),
        ),
        None => (0.0, Mem::default()),
    };
    let server_cpus = server.map_or_else(Vec::new, |pid| {
        parse_cpu_list(&cpus_allowed(&pid.to_string()))
    });
    Sample {
        cpu_s,
        mem,
        gen_cpu_s: cpu_seconds("self").unwrap_or(0.0),
        server_steal_s: steal_seconds(&server_cpus),
        gen_steal_s: steal_seconds(&parse_cpu_list(&cpus_allowed("self"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1"), vec![1]);
        assert_eq!(parse_cpu_list("0-3"), vec![0, 1, 2, 3]);
        assert_eq!(parse_cpu_list("0,2-3\n"), vec![0, 2, 3]);
        assert!(parse_cpu_list("").is_empty());
    }
}
