#![doc = include_str!("../README.md")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Registrations against a gateway, with latency percentiles"
)]
struct Args {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Requests started per second (open loop); without it, as fast as the connections allow.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    rate: Option<u32>,
    /// Requests in flight at most (and connections).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// How long to start requests, e.g. `30s`, `2m`.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    duration: Duration,
    /// Also wait for each registration to be `completed` or `failed` (polling its status every
    /// 25 ms), timing request to stored user.
    #[arg(long)]
    follow: bool,
    /// The longest a request may take before it counts as `timeout`, e.g. `10s`: the run ends
    /// at most this long after `--duration`.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    timeout: Duration,
    /// The summary as one JSON object.
    #[arg(long)]
    json: bool,
}

fn positive_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

/// What the requests found, shared by the tasks.
#[derive(Debug, Default)]
struct Tally {
    /// Request to answer, microseconds, of every answered request.
    answered: Vec<u64>,
    /// Request to final status, microseconds (`--follow`).
    completed: Vec<u64>,
    by_status: BTreeMap<String, u64>,
    /// Outcomes of the followed registrations: `completed`, `failed`, `unfinished`.
    outcomes: BTreeMap<String, u64>,
    /// Starts that found every connection busy at their scheduled time (open loop only).
    late: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("loadgen: {error:#}\n").as_bytes(),
            );
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .timeout(args.timeout)
        .build()?;
    // Reachable, and a gateway? A clear error rather than a run of failures.
    let document = client
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .with_context(|| format!("the gateway at {base} does not answer"))?;
    if !document.status().is_success() {
        bail!(
            "{base} answers {} for /api/v1/openapi.json: not the gateway's base URL",
            document.status()
        );
    }

    let tally = Arc::new(Mutex::new(Tally::default()));
    let slots = Arc::new(Semaphore::new(args.concurrency as usize));
    let run = uuid::Uuid::now_v7().simple().to_string();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent: u64 = 0;
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(1.0 / f64::from(rate)));
    while started.elapsed() < args.duration {
        if let Some(interval) = interval {
            let due = started + interval.mul_f64(sent as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if interval.is_some() {
                    tally.lock().await.late += 1;
                }
                slots.clone().acquire_owned().await?
            }
        };
        let (client, base, tally, follow) =
            (client.clone(), base.clone(), tally.clone(), args.follow);
        let email = format!("load-{run}-{sent}@example.com");
        sent += 1;
        tasks.spawn(async move {
            one(&client, &base, &email, follow, &tally).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    let sending = started.elapsed();
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let tally = tally.lock().await;
    let summary = summary(&args, sent, sending, elapsed, &tally);
    let output = if args.json {
        format!("{summary}\n")
    } else {
        text(&summary)
    };
    std::io::Write::write_all(&mut std::io::stdout().lock(), output.as_bytes())?;
    if !tally.by_status.contains_key("202") {
        bail!("no registration was accepted (202): see the answers by status above");
    }
    Ok(())
}

async fn one(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    follow: bool,
    tally: &Mutex<Tally>,
) {
    let began = Instant::now();
    let answer = client
        .post(format!("{base}/api/v1/auth/register-async"))
        .json(&json!({"email": email, "password": "load generator password", "consent": true}))
        .send()
        .await;
    let (status, body) = match answer {
        Ok(response) => {
            let status = response.status().as_u16().to_string();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
        Err(error) => (
            if error.is_timeout() {
                "timeout"
            } else {
                "connection_error"
            }
            .to_owned(),
            Value::Null,
        ),
    };
    let answered = began.elapsed();
    {
        let mut tally = tally.lock().await;
        *tally.by_status.entry(status.clone()).or_default() += 1;
        if status.len() == 3 {
            tally.answered.push(answered.as_micros() as u64);
        }
    }
    let (true, Some(request_id)) = (follow && status == "202", body["request_id"].as_str()) else {
        return;
    };
    let outcome = loop {
        tokio::time::sleep(Duration::from_millis(25)).await;
        if began.elapsed() > Duration::from_secs(120) {
            break "unfinished".to_owned();
        }
        let Ok(response) = client
            .get(format!("{base}/api/v1/auth/registrations/{request_id}"))
            .send()
            .await
        else {
            continue;
        };
        let status = response.json::<Value>().await.unwrap_or(Value::Null)["status"]
            .as_str()
            .unwrap_or("processing")
            .to_owned();
        if status != "processing" {
            break status;
        }
    };
    let mut tally = tally.lock().await;
    if outcome != "unfinished" {
        tally.completed.push(began.elapsed().as_micros() as u64);
    }
    *tally.outcomes.entry(outcome).or_default() += 1;
}

/// `p`-th percentile (0–100) of `values`, in milliseconds; nearest rank.
fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0)
}

fn latencies(values: &[u64]) -> Value {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    json!({
        "count": sorted.len(),
        "p50_ms": percentile(&sorted, 50.0),
        "p90_ms": percentile(&sorted, 90.0),
        "p99_ms": percentile(&sorted, 99.0),
        "max_ms": sorted.last().map(|m| *m as f64 / 1000.0),
    })
}

fn summary(args: &Args, sent: u64, sending: Duration, elapsed: Duration, tally: &Tally) -> Value {
    let accepted = tally.by_status.get("202").copied().unwrap_or(0);
    json!({
        "url": args.url,
        "mode": if args.rate.is_some() { "open loop" } else { "saturation" },
        "rate_asked": args.rate,
        "concurrency": args.concurrency,
        "duration_s": args.duration.as_secs_f64(),
        "requests": sent,
        "elapsed_s": elapsed.as_secs_f64(),
        "started_per_s": sent as f64 / sending.as_secs_f64().max(1e-9),
        "accepted_per_s": accepted as f64 / elapsed.as_secs_f64().max(1e-9),
        "late_starts": tally.late,
        "by_status": tally.by_status,
        "answer_latency": latencies(&tally.answered),
        "completion_latency": args.follow.then(|| latencies(&tally.completed)),
        "outcomes": args.follow.then_some(&tally.outcomes),
    })
}

/// The summary for people.
fn text(summary: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let ms = |v: &Value| v.as_f64().map_or("-".to_owned(), |v| format!("{v:.1} ms"));
    let line = |out: &mut String, name: &str, l: &Value| {
        let _ = writeln!(
            out,
            "  {name:<22} n={:<7} p50 {:>10}  p90 {:>10}  p99 {:>10}  max {:>10}",
            l["count"],
            ms(&l["p50_ms"]),
            ms(&l["p90_ms"]),
            ms(&l["p99_ms"]),
            ms(&l["max_ms"])
        );
    };
    let _ = writeln!(
        out,
        "loadgen {} against {}: {} requests in {:.1} s, concurrency {}",
        summary["mode"].as_str().unwrap_or_default(),
        summary["url"].as_str().unwrap_or_default(),
        summary["requests"],
        summary["elapsed_s"].as_f64().unwrap_or_default(),
        summary["concurrency"],
    );
    let _ = writeln!(
        out,
        "  started {:.1}/s (asked {}), accepted {:.1}/s, late starts {}",
        summary["started_per_s"].as_f64().unwrap_or_default(),
        summary["rate_asked"],
        summary["accepted_per_s"].as_f64().unwrap_or_default(),
        summary["late_starts"],
    );
    let _ = writeln!(out, "  answers by status: {}", summary["by_status"]);
    line(&mut out, "request → answer", &summary["answer_latency"]);
    if !summary["completion_latency"].is_null() {
        line(
            &mut out,
            "request → completed",
            &summary["completion_latency"],
        );
        let _ = writeln!(out, "  outcomes: {}", summary["outcomes"]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&[7000], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn arguments() {
        let parse = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
        };
        let args = parse(&["--rate", "40", "--duration", "2m", "--follow"]).unwrap();
        assert_eq!(
            (args.rate, args.duration),
            (Some(40), Duration::from_secs(120))
        );
        for bad in [
            &["--rate", "0"][..],
            &["--concurrency", "0"],
            &["--duration", "soon"],
            &["--duration", "0s"],
            &["--timeout", "0s"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
