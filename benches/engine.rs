//! Benchmarks for the hot paths, run by `make bench`; results go to `bench/results.txt`.
//!
//! 1. Parse a large `zfs list -Hp` listing and plan a job over it (a big backup server:
//!    2,000 datasets x 500 snapshots = 1,000,000 lines).
//! 2. Relay a 1 GiB stream between two local processes through `replicate::stream`,
//!    checking that peak memory stays flat (the stream is never buffered whole).
//! 3. How parse and plan grow with datasets (a wide tree) and with snapshots: the slope
//!    of a line through four sizes each, and R² (1 is linear).
//! 4. Plan pruning: 2,000 datasets x 100 snapshots, and one dataset with 10,000, counting
//!    the `zfs destroy` commands it would issue.
//!
//! Peak RSS is VmHWM from /proc/self/status; each part reports its growth over the
//! process's high-water mark before it ran.

use std::fmt::Write as _;
use std::time::{Duration, Instant};
use zferry::host::Host;
use zferry::plan::{self, Options};
use zferry::replicate::stream::Wire;
use zferry::zfs::list::parse_listing;
use zferry::zfs::name::Dataset;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `zfs list -Hp` text for `n` datasets with `m` snapshots each; the target side has
/// all but the last `lag` snapshots.
fn listing(prefix: &str, n: usize, m: usize, lag: usize) -> String {
    let mut s = String::new();
    let mut txg = 1u64;
    for d in 0..n {
        let ds = format!("{prefix}/host{}/data{d}", d % 20);
        writeln!(
            s,
            "{ds}\tfilesystem\t{}\t{txg}\taes-256-gcm\tavailable\t0\t-\t-\t-",
            10 + d
        )
        .unwrap();
        for k in 0..m.saturating_sub(lag) {
            txg += 1;
            writeln!(
                s,
                "{ds}@auto-{k:05}\tsnapshot\t{}\t{txg}\t-\t-\t-\t-\t0\t{txg}",
                (d * 100_000 + k) as u64 + 1_000_000
            )
            .unwrap();
        }
    }
    s
}

/// Parses both sides of `n` datasets x `m` snapshots (the target 3 behind) and plans a
/// pull over them: (parse, plan, listing lines per side).
fn parse_and_plan(n: usize, m: usize) -> (Duration, Duration, usize) {
    let src_text = listing("tank", n, m, 0);
    let dst_text = listing("backup/client/tank", n, m, 3);
    let t = Instant::now();
    let src = parse_listing(&src_text).unwrap();
    let dst = parse_listing(&dst_text).unwrap();
    let parse = t.elapsed();
    let root = Dataset::new("backup").unwrap();
    let t = Instant::now();
    let mapping = plan::expand(&src, &[Dataset::new("tank").unwrap()], |s| {
        plan::pull_target(&root, "client", s)
    })
    .unwrap();
    let plans = plan::plan_job(&src, &dst, &mapping, &root, Options::default());
    let planning = t.elapsed();
    let incrementals = plans
        .iter()
        .filter(|p| matches!(p.verdict, plan::Verdict::Transfer { full: false, .. }))
        .count();
    assert_eq!(incrementals, n, "every dataset plans one incremental");
    (parse, planning, src_text.lines().count())
}

fn bench_plan(out: &mut String) {
    let (n, m) = (2000, 500);
    let before = peak_rss_kib();
    let (parse, planning, lines) = parse_and_plan(n, m);
    writeln!(
        out,
        "plan: {n} datasets x {m} snapshots ({lines} listing lines per side): parse both sides {:.0} ms, plan {:.0} ms, peak RSS growth {} MiB",
        parse.as_secs_f64() * 1e3,
        planning.as_secs_f64() * 1e3,
        peak_rss_kib().saturating_sub(before) / 1024
    )
    .unwrap();
}

/// Median of three parse-and-plan runs, in milliseconds.
fn parse_and_plan_ms(n: usize, m: usize) -> f64 {
    let mut t: Vec<f64> = (0..3)
        .map(|_| {
            let (a, b, _) = parse_and_plan(n, m);
            (a + b).as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[1]
}

/// Least-squares slope and intercept of `y` over `x`, and R².
fn fit(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let k = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / k, sy / k);
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let syy: f64 = points.iter().map(|(_, y)| (y - my) * (y - my)).sum();
    let slope = sxy / sxx;
    (slope, my - slope * mx, sxy * sxy / (sxx * syy))
}

/// How zferry's own cost (parse both sides and plan) grows with datasets (a wide tree:
/// 10 snapshots each) and with snapshots (300 datasets): the slope of a straight line
/// through four sizes, and how well the line fits (R² = 1: linear).
fn bench_scaling(out: &mut String) {
    let series = [
        ("datasets", [300, 600, 1200, 2400].map(|n| (n, 10))),
        (
            "snapshots per dataset",
            [10, 40, 160, 640].map(|m| (300, m)),
        ),
    ];
    for (what, sizes) in series {
        let points: Vec<(f64, f64)> = sizes
            .iter()
            .map(|&(n, m)| {
                let x = if what == "datasets" { n } else { m };
                (x as f64, parse_and_plan_ms(n, m))
            })
            .collect();
        let (slope, intercept, r2) = fit(&points);
        let shown: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x} -> {y:.1} ms"))
            .collect();
        let unit = if what == "datasets" {
            "per dataset (10 snapshots each)"
        } else {
            "per snapshot per dataset (300 datasets)"
        };
        writeln!(
            out,
            "scaling, {what}: {} ; parse+plan = {intercept:.1} ms + {:.1} us {unit}, R^2 {r2:.4}",
            shown.join(", "),
            slope * 1e3
        )
        .unwrap();
    }
}

fn bench_relay(out: &mut String) {
    let gib: u64 = 1 << 30;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = peak_rss_kib();
    let t = Instant::now();
    let send: Vec<String> = ["head", "-c", &gib.to_string(), "/dev/zero"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let recv: Vec<String> = ["sh", "-c", "cat > /dev/null"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let bytes = rt
        .block_on(zferry::replicate::stream::transfer(
            &Host::Local,
            &send,
            &Host::Local,
            &recv,
            &Wire::default(),
            false,
            &mut |_| {},
        ))
        .unwrap()
        .bytes;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(bytes, gib);
    writeln!(
        out,
        "relay: 1 GiB local send -> receive through zferry: {:.0} MiB/s, peak RSS growth {} KiB (buffer is 256 KiB)",
        bytes as f64 / secs / (1 << 20) as f64,
        peak_rss_kib().saturating_sub(before)
    )
    .unwrap();
}

/// Hourly scheme snapshots, oldest first: every 40th carries an admin's hold, and the
/// replication base (held by a zferry tag) is the fifth newest.
fn hourlies(
    n: usize,
) -> (
    Vec<zferry::zfs::list::Point>,
    std::collections::BTreeSet<String>,
) {
    let mut held = std::collections::BTreeSet::new();
    let snaps = (0..n)
        .map(|i| {
            let name = format!(
                "autosnap_{}_hourly",
                zferry::clock::utc(1_700_000_000 + 3600 * i as u64)
                    .trim_end_matches('Z')
                    .replace('T', "_")
            );
            if i + 5 == n {
                held.insert(name.clone());
            }
            zferry::zfs::list::Point {
                name,
                guid: i as u64 + 1,
                createtxg: i as u64 + 1,
                bookmark: false,
                userrefs: u64::from(i % 40 == 0 || i + 5 == n),
                creation: 1_700_000_000 + 3600 * i as u64,
            }
        })
        .collect();
    (snaps, held)
}

fn bench_prune(out: &mut String) {
    use zferry::prune::{decide, PrunePolicy};
    use zferry::snapshot::Period;
    let policy = PrunePolicy {
        datasets: vec![Dataset::new("tank").unwrap()],
        keep: [(Period::Hourly, 36)].into_iter().collect(),
        max_pin_age: None,
        keep_prefix: Default::default(),
    };
    let now = 1_700_000_000 + 3600 * 20_000;
    let (snaps, held) = hourlies(100);
    let t = Instant::now();
    let mut destroyed = 0;
    for _ in 0..2000 {
        destroyed += decide(&snaps, &held, &policy, now).destroy.len();
    }
    let many = t.elapsed();
    let (big, big_held) = hourlies(10_000);
    let t = Instant::now();
    let d = decide(&big, &big_held, &policy, now);
    let one = t.elapsed();
    let commands = zferry::prune::destroy_specs(&big, &d.destroy).len();
    writeln!(
        out,
        "prune: 2000 datasets x 100 snapshots decided in {} ms ({destroyed} to destroy); 1 dataset x 10000 snapshots in {} ms: {} to destroy in {commands} zfs destroy command(s)",
        many.as_millis(),
        one.as_millis(),
        d.destroy.len()
    )
    .unwrap();
}

fn main() {
    let mut out = String::new();
    writeln!(
        out,
        "zferry benchmarks ({}, {} cores)",
        zferry::clock::utc(zferry::clock::now()),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    )
    .unwrap();
    bench_relay(&mut out);
    bench_plan(&mut out);
    bench_scaling(&mut out);
    bench_prune(&mut out);
    print!("{out}");
    std::fs::create_dir_all("bench").unwrap();
    std::fs::write("bench/results.txt", &out).unwrap();
}
