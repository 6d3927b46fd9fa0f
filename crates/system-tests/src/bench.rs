//! The benchmarks' shared report: each benchmark measures a path beside its baseline in the same
//! run and records one [`Row`] per figure; `benches/summary.rs` (the last step of `make bench`)
//! prints all rows as one table and writes it to `BENCHMARKS.md` with the machine's core count
//! and the commit.
//!
//! Rows are appended as JSON lines to the file `BENCH_RESULTS` names (by default
//! `target/bench/results.jsonl` in the workspace); `make bench` empties it first.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One line of the summary table: a figure of ours, the baseline measured beside it, their ratio,
/// the target and whether it was met.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// Position in the table (rows are sorted by it, then by path).
    pub order: u32,
    /// What was measured, e.g. "registrations topic → table, 200,000 messages".
    pub path: String,
    /// Our figure, formatted with its unit ("31,204 users/s", "412 ms p99").
    pub figure: String,
    /// The baseline with its unit, or "—" when the target is absolute.
    pub baseline: String,
    /// Figure over baseline (higher is better), when there is a baseline.
    pub ratio: Option<f64>,
    /// The target as text ("≥ 0.8", "≤ 1 s p99").
    pub target: String,
    /// Whether the target was met.
    pub pass: bool,
    /// How the figure was taken (rounds, sizes), for the table's notes.
    #[serde(default)]
    pub note: String,
}

/// A row of the table: its place, the path measured and the target, whatever the figures.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub order: u32,
    pub path: &'static str,
    pub target: &'static str,
}

/// Every row `make bench` fills, in table order. A row no benchmark recorded shows as not
/// measured.
pub const TABLE: &[Spec] = &[
    Spec {
        order: 1,
        path: "registration batcher, PostgreSQL part (claim, users + credentials, outcomes)",
        target: "≥ 0.8",
    },
    Spec {
        order: 2,
        path: "registration batcher, whole writer incl. user.registered acknowledged",
        target: "≥ 0.6",
    },
    Spec {
        order: 3,
        path: "registrations topic → table, 200,000 pre-filled messages",
        target: "≥ 0.5 and ≥ 30,000 users/s",
    },
    Spec {
        order: 4,
        path: "activity logs topic → table, 200,000 events",
        target: "≥ 0.7",
    },
    Spec {
        order: 5,
        path: "events crate producer, acknowledged",
        target: "≥ 0.9",
    },
    Spec {
        order: 6,
        path: "events crate consumer, no-op handler, committing",
        target: "≥ 0.9",
    },
    Spec {
        order: 7,
        path: "gateway register-async throughput at saturation",
        target: "≥ 0.9",
    },
    Spec {
        order: 8,
        path: "gateway register-async p99 at 80% of saturation",
        target: "≤ 5x one hash",
    },
    Spec {
        order: 9,
        path: "end to end 202 → completed, p99 at 80% of saturation",
        target: "≤ 1 s",
    },
    Spec {
        order: 10,
        path: "waitlist: one verified referral's position update, 100,000 participants",
        target: "≤ 20 ms and ≥ 50x faster",
    },
    Spec {
        order: 11,
        path: "waitlist: full recalculation, 100,000 participants",
        target: "≤ 300 ms",
    },
    Spec {
        order: 12,
        path: "memory: registration-batcher peak RSS, 200,000 registrations",
        target: "≤ 64 MiB",
    },
    Spec {
        order: 13,
        path: "memory: activity-log-processor peak RSS, 200,000 events",
        target: "≤ 64 MiB",
    },
    Spec {
        order: 14,
        path: "memory: gateway peak RSS at saturation",
        target: "≤ 256 MiB",
    },
];

impl Spec {
    /// The row of this spec with the figures measured.
    pub fn row(
        &self,
        figure: String,
        baseline: String,
        ratio: Option<f64>,
        pass: bool,
        note: impl Into<String>,
    ) -> Row {
        Row {
            order: self.order,
            path: self.path.to_owned(),
            figure,
            baseline,
            ratio,
            target: self.target.to_owned(),
            pass,
            note: note.into(),
        }
    }
}

/// The spec of table row `order`.
pub fn spec(order: u32) -> Spec {
    *TABLE
        .iter()
        .find(|spec| spec.order == order)
        .expect("a row of the table")
}

/// The file rows are appended to: `BENCH_RESULTS`, or `target/bench/results.jsonl` of the
/// workspace.
pub fn results_path() -> PathBuf {
    std::env::var_os("BENCH_RESULTS").map_or_else(
        || workspace_root().join("target/bench/results.jsonl"),
        PathBuf::from,
    )
}

/// The workspace's root directory (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// Prints `row` and appends it to [`results_path`].
pub fn record(row: &Row) {
    let ratio = row
        .ratio
        .map_or_else(String::new, |r| format!(", ratio {r:.2}"));
    let verdict = if row.pass { "pass" } else { "FAIL" };
    println_report(&format!(
        "   => {}: {} (baseline {}{ratio}; target {}: {verdict})",
        row.path, row.figure, row.baseline, row.target
    ));
    let path = results_path();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("the results folder");
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    writeln!(
        file,
        "{}",
        serde_json::to_string(row).expect("rows serialize")
    )
    .expect("append a row");
}

/// Reads every row recorded so far (an absent file holds none).
pub fn read_rows() -> Vec<Row> {
    let Ok(text) = std::fs::read_to_string(results_path()) else {
        return Vec::new();
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("a row of ours"))
        .collect()
}

/// Benchmarks report on standard output.
pub fn println_report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// The median of samples (the upper one of an even count); `None` for no samples.
pub fn median<T: Copy + PartialOrd>(samples: &[T]) -> Option<T> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("comparable samples"));
    sorted.get(sorted.len() / 2).copied()
}

/// A rate in units per second, with thousands separators: `31,204`.
pub fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// `31204.7` → `"31,205"`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

/// The sum of a counter's series (every label set) in a Prometheus exposition.
pub fn counter_total(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the service's counter `name` reaches `n`, reading its `/metrics` every 250 ms
/// (a benchmark's wait that costs the database nothing, unlike counting rows). Panics after
/// `patience` without progress (a hang guard, not a performance limit).
pub async fn wait_for_counter(
    service: &service_runtime::testing::ServiceProcess,
    name: &str,
    n: f64,
    patience: Duration,
) {
    let (mut last, mut since) = (-1.0, std::time::Instant::now());
    loop {
        let (_, metrics) = service.get("/metrics").await;
        let total = counter_total(&metrics, name);
        if total >= n {
            return;
        }
        if total > last {
            (last, since) = (total, std::time::Instant::now());
        }
        assert!(
            since.elapsed() < patience,
            "{name} stuck at {total} of {n}\nlogs:\n{}",
            service.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The peak resident set size of process `pid` (`VmHWM` of `/proc/<pid>/status`), in bytes;
/// `None` where there is no such file (not Linux, or the process is gone).
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let kib = line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?;
        kib.trim().parse::<u64>().ok().map(|kib| kib * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(31_204.7), "31,205");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(-4_500.0), "-4,500");
    }

    #[test]
    fn the_median_is_the_middle_sample() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4, 1, 3, 2]), Some(3));
        assert_eq!(median::<f64>(&[]), None);
    }

    #[test]
    fn counters_are_summed_over_their_label_sets() {
        let exposition = "# TYPE a_total counter\na_total{code=\"x\"} 3\na_total{code=\"y\"} 4\na_total_other 9\nb_total 1\n";
        assert_eq!(counter_total(exposition, "a_total"), 7.0);
        assert_eq!(counter_total(exposition, "b_total"), 1.0);
        assert_eq!(counter_total(exposition, "c_total"), 0.0);
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        let bytes = peak_rss_bytes(std::process::id()).expect("Linux /proc");
        assert!(bytes > 1024 * 1024, "{bytes} bytes");
    }
}
