//! What benchmarks read about processes from /proc: CPU time, memory, process trees, and the
//! bench binary's own `--name value` options.

use std::collections::HashMap;

/// The value after `--name` on this process's command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// This executable again with `args` (a bench's helper role): no stdin, stdout discarded,
/// stderr shared.
pub fn respawn(args: &[&str]) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().expect("this executable"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn a helper of this bench")
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory effects.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// (CPU seconds used so far (utime + stime), parent pid) of `pid`.
pub fn stat(pid: u32) -> Option<(f64, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm)": state ppid ... utime (11) stime (12).
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    let cpu = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((cpu / ticks_per_sec(), f.get(1)?.parse().ok()?))
}

fn status_kb(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// Resident set size of `pid`, bytes.
pub fn rss(pid: u32) -> u64 {
    status_kb(pid, "status", "VmRSS:") * 1024
}

/// The highest resident set size of `pid` since it started or since [`reset_peak_rss`], bytes.
pub fn peak_rss(pid: u32) -> u64 {
    status_kb(pid, "status", "VmHWM:") * 1024
}

/// Resets this process's peak resident set size to its current one (Linux `clear_refs` 5).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Proportional set size of `pid` (shared pages split among their users), bytes.
pub fn pss(pid: u32) -> u64 {
    status_kb(pid, "smaps_rollup", "Pss:") * 1024
}

/// `root` and all its descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(p) = e.file_name().to_string_lossy().parse::<u32>()
            && let Some((_, pp)) = stat(p)
        {
            parent.insert(p, pp);
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent.iter().filter(|(_, pp)| **pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}
