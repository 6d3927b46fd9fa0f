//! The last step of `make bench`: every row the benchmarks recorded (see `system_tests::bench`),
//! as one table on standard output and in `BENCHMARKS.md` at the workspace root, with the
//! machine's core count, the commit and the date. A row no benchmark recorded is listed as not
//! measured. Exits non-zero when a row is missing; a target missed is reported, not an error.

use std::fmt::Write as _;
use std::process::Command;

use system_tests::bench::{Row, TABLE, println_report, read_rows, workspace_root};

fn git(args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    let rows = read_rows();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let commit = if dirty {
        format!("{commit} with uncommitted changes")
    } else {
        commit
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|name| name.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());

    let mut table = String::new();
    let _ = writeln!(table, "# Benchmarks\n");
    let _ = writeln!(
        table,
        "`make bench` on {cores} cores ({cpu}), commit {commit}, {}. Each figure is measured \
         beside its baseline in the same run; the machines are shared and noisy, so read the \
         ratios. Regenerate with `make bench` (the stack is started for it).\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(
        table,
        "| # | path | figure | baseline (same run) | ratio | target | result |"
    );
    let _ = writeln!(table, "| --- | --- | --- | --- | --- | --- | --- |");
    let mut missing = Vec::new();
    let mut notes = Vec::new();
    for spec in TABLE {
        let mut recorded: Vec<&Row> = rows.iter().filter(|r| r.order == spec.order).collect();
        // A benchmark run twice into the same file: its last row counts.
        let Some(row) = recorded.pop() else {
            missing.push(spec.path);
            let _ = writeln!(
                table,
                "| {} | {} | not measured | | | {} | — |",
                spec.order, spec.path, spec.target
            );
            continue;
        };
        let ratio = row.ratio.map_or_else(|| "—".into(), |r| format!("{r:.2}"));
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {ratio} | {} | {} |",
            row.order,
            row.path,
            row.figure,
            row.baseline,
            row.target,
            if row.pass { "pass" } else { "**below target**" }
        );
        if !row.note.is_empty() {
            notes.push(format!("- row {}: {}", row.order, row.note));
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(table, "\nHow each figure was taken:\n");
        for note in notes {
            let _ = writeln!(table, "{note}");
        }
    }
    println_report(&format!("\n{table}"));
    let path = workspace_root().join("BENCHMARKS.md");
    std::fs::write(&path, &table).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    println_report(&format!("written to {}", path.display()));
    if !missing.is_empty() {
        println_report(&format!("not measured: {}", missing.join("; ")));
        std::process::exit(1);
    }
}
