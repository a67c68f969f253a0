//! `kura-bench`: Kura against the reference registry (CNCF Distribution 2.8,
//! Debian's `docker-registry`) on the same machine, in one run, alternating
//! which goes first every round, with fresh random images every round.
//!
//! Measures push/pull throughput (oci-client), server CPU per GiB, manifest
//! GET and blob HEAD requests per second at 32 connections, peak RSS while a
//! big layer streams in and out, and listing latency at 1k/10k/100k images;
//! plus what the disk (fsync), SHA-256 and loopback allow. Writes a Markdown
//! table to stdout and to `--out`. Run it through `bench/run.sh`.

mod ecr;
mod events;
mod gen;
mod load;
mod metrics_cost;
mod probe;
mod procstat;
mod report;
mod scale;
mod server;
mod stream;
mod transfer;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use http::Method;

use report::{Report, Target};
use server::{order, Binaries, Kind, Server};
use transfer::PushMode;

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

#[derive(Copy, Clone, PartialEq, Eq, Debug, ValueEnum)]
enum Section {
    /// fsync, SHA-256 and loopback probes
    Probe,
    /// push and pull of the big and the many-layer image, CPU per GiB
    Transfer,
    /// manifest GET and blob HEAD requests per second
    Rps,
    /// peak RSS while one big layer streams in and out
    Stream,
    /// listing latency at many images
    Scale,
    /// EventBridge: push rate with events on vs off, delivery latency (Kura only)
    Events,
    /// the cost of `--metrics` on the request path: manifest GET with metrics off vs on (Kura only)
    Metrics,
}

#[derive(Parser)]
#[command(
    name = "kura-bench",
    about = "Benchmark Kura against the reference registry (docker-registry 2.8)"
)]
struct Args {
    /// A smaller, CI-friendly run: 4 × 32 MiB image, 1 GiB stream, 1k and 10k images, shorter load tests.
    #[arg(long)]
    quick: bool,
    /// Only these sections (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// The Kura binary.
    #[arg(long, default_value = default_kura_bin())]
    kura_bin: PathBuf,
    /// The reference registry's binary.
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    registry_bin: PathBuf,
    /// Where the servers' temporary data directories go (default: the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also write the Markdown report here.
    #[arg(long, default_value = "BENCHMARKS-latest.md")]
    out: PathBuf,
    /// Rounds of push/pull per registry (default 5; quick 2).
    #[arg(long)]
    rounds: Option<usize>,
    /// Size of each of the 4 big layers in MiB (default 256; quick 32).
    #[arg(long)]
    layer_mib: Option<u64>,
    /// Number of layers of the many-layer image.
    #[arg(long, default_value_t = 200)]
    small_layers: usize,
    /// Size of the streamed single layer in MiB (default 10240 = 10 GiB; quick 1024).
    #[arg(long)]
    stream_mib: Option<u64>,
    /// Seconds of each requests-per-second test (default 5; quick 2).
    #[arg(long)]
    rps_secs: Option<f64>,
    /// Concurrent connections of the requests-per-second tests.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Repository sizes for the listing latency (default 1000,10000,100000; quick 1000,10000).
    #[arg(long, value_delimiter = ',')]
    images: Vec<usize>,
    /// Time budget in seconds for timing one listing operation at one size (default 20; quick 5).
    #[arg(long)]
    page_budget_secs: Option<f64>,
    /// Pushes per burst of the events section (default 500; quick 200).
    #[arg(long)]
    event_pushes: Option<usize>,
    /// Also push the big image with oci-client's 4 MiB PATCH chunks (default: on; quick: off).
    #[arg(long)]
    chunked: Option<bool>,
}

fn default_kura_bin() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/kura")
}

struct Plan {
    rounds: usize,
    layer_bytes: usize,
    small_layers: usize,
    stream_bytes: u64,
    rps_secs: f64,
    images: Vec<usize>,
    page_budget: Duration,
    chunked: bool,
    event_pushes: usize,
}

impl Plan {
    fn from(a: &Args) -> Plan {
        let q = a.quick;
        Plan {
            rounds: a.rounds.unwrap_or(if q { 2 } else { 5 }).max(1),
            layer_bytes: (a.layer_mib.unwrap_or(if q { 32 } else { 256 }) << 20) as usize,
            small_layers: a.small_layers.max(1),
            stream_bytes: a.stream_mib.unwrap_or(if q { 1024 } else { 10240 }) << 20,
            rps_secs: a.rps_secs.unwrap_or(if q { 2.0 } else { 5.0 }),
            images: if a.images.is_empty() {
                if q {
                    vec![1000, 10000]
                } else {
                    vec![1000, 10000, 100000]
                }
            } else {
                a.images.clone()
            },
            page_budget: Duration::from_secs_f64(a.page_budget_secs.unwrap_or(if q { 5.0 } else { 20.0 })),
            chunked: a.chunked.unwrap_or(!q),
            event_pushes: a.event_pushes.unwrap_or(if q { 200 } else { 500 }).max(10),
        }
    }
}

fn progress(msg: &str) {
    eprintln!("[kura-bench] {msg}");
}

/// Flush every dirty page before a timed operation, so nobody pays for the
/// previous one's writeback (the reference never fsyncs; the kernel would).
fn settle() {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
}

fn size_label(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

fn count_label(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn git_rev(root: &Path) -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev} (with uncommitted changes)")
            } else {
                rev
            }
        }
        None => "unknown".into(),
    }
}

async fn probes(report: &mut Report, work_dir: &Path, when: &str) -> anyhow::Result<probe::FsyncProbe> {
    progress(&format!(
        "probe ({when}): write 256 MiB + fsync, 4 KiB fsyncs, SHA-256, loopback"
    ));
    settle();
    let f = probe::fsync(work_dir, 256 << 20)?;
    report.limits.push(format!(
        "Disk ({when}; {}): 256 MiB written in {:.2} s ({:.0} MiB/s into the page cache: {:.2} s per GiB of kernel copying), \
         then one fsync took {:.2} s: {:.0} MiB/s durable. A 4 KiB write + fsync takes {:.2} ms (median of 50).",
        procstat::filesystem_of(work_dir),
        f.write_secs,
        f.buffered_mib_s(),
        1024.0 / f.buffered_mib_s(),
        f.fsync_secs,
        f.durable_mib_s(),
        f.small_fsync_ms
    ));
    let sha = probe::sha256_mib_s();
    report.limits.push(format!(
        "SHA-256 on one core ({when}): {sha:.0} MiB/s (1 GiB costs {:.2} CPU-s to hash).",
        1024.0 / sha
    ));
    let lo = probe::loopback_mib_s()?;
    report.limits.push(format!(
        "TCP over loopback ({when}), one stream, 1 MiB writes: {lo:.0} MiB/s (1 GiB costs {:.2} s of copying).",
        1024.0 / lo
    ));
    Ok(f)
}

async fn start_pair(bins: &Binaries) -> anyhow::Result<(Server, Server)> {
    let kura = Server::start(Kind::Kura, bins).await?;
    let reference = Server::start(Kind::Reference, bins).await?;
    Ok((kura, reference))
}

fn pick<'a>(kind: Kind, kura: &'a Server, reference: &'a Server) -> &'a Server {
    match kind {
        Kind::Kura => kura,
        Kind::Reference => reference,
    }
}

#[derive(Default)]
struct PerKind {
    kura: Vec<f64>,
    reference: Vec<f64>,
}

impl PerKind {
    fn push(&mut self, kind: Kind, v: f64) {
        match kind {
            Kind::Kura => self.kura.push(v),
            Kind::Reference => self.reference.push(v),
        }
    }
    fn take(&mut self) -> (Vec<f64>, Vec<f64>) {
        (std::mem::take(&mut self.kura), std::mem::take(&mut self.reference))
    }
    fn get(&self, kind: Kind) -> &[f64] {
        match kind {
            Kind::Kura => &self.kura,
            Kind::Reference => &self.reference,
        }
    }
    fn sum(&self, kind: Kind) -> f64 {
        match kind {
            Kind::Kura => self.kura.iter().sum(),
            Kind::Reference => self.reference.iter().sum(),
        }
    }
}

async fn transfer(
    report: &mut Report,
    plan: &Plan,
    disk: Option<&probe::FsyncProbe>,
    kura: &Server,
    reference: &Server,
) -> anyhow::Result<()> {
    let big_sizes = vec![plan.layer_bytes; 4];
    let big_label = size_label(4 * plan.layer_bytes as u64);
    let (mut push_mib_s, mut pull_mib_s) = (PerKind::default(), PerKind::default());
    let (mut push_cpu, mut pull_cpu, mut push_gib, mut pull_gib) = (
        PerKind::default(),
        PerKind::default(),
        PerKind::default(),
        PerKind::default(),
    );
    let (mut small_push, mut small_pull) = (PerKind::default(), PerKind::default());
    let (mut raw_pull_mib_s, mut raw_pull_cpu) = (PerKind::default(), PerKind::default());
    let (mut raw_pull_client, mut raw_pull_gib) = (PerKind::default(), PerKind::default());
    let (mut push_client, mut pull_client) = (PerKind::default(), PerKind::default());
    let (mut small_push_cpu, mut small_pull_cpu) = (PerKind::default(), PerKind::default());
    let (mut small_push_client, mut small_pull_client) = (PerKind::default(), PerKind::default());
    let client = transfer::client(PushMode::Monolithic);
    let mut small_bytes = 0u64;
    for round in 0..plan.rounds {
        for kind in order(round) {
            let s = pick(kind, kura, reference);
            progress(&format!(
                "transfer round {}/{}: {kind}: push + pull {big_label}",
                round + 1,
                plan.rounds
            ));
            let img = gen::image(&big_sizes);
            let r = transfer::reference(s, &format!("bench/big-{round}"), "latest")?;
            settle();
            let p = transfer::push(&client, s, &r, &img).await?;
            let gib = img.bytes as f64 / GIB;
            let img_blobs: Vec<_> = img
                .manifest
                .layers
                .iter()
                .chain([&img.manifest.config])
                .cloned()
                .collect();
            push_mib_s.push(kind, img.bytes as f64 / MIB / p.secs);
            push_cpu.push(kind, p.cpu);
            push_client.push(kind, p.client_cpu);
            push_gib.push(kind, gib);
            drop(img);
            settle();
            let (q, got) = transfer::pull(&client, s, &r).await?;
            pull_mib_s.push(kind, got as f64 / MIB / q.secs);
            pull_cpu.push(kind, q.cpu);
            pull_client.push(kind, q.client_cpu);
            pull_gib.push(kind, got as f64 / GIB);
            settle();
            let (q, got) = transfer::pull_raw(s, &format!("bench/big-{round}"), &img_blobs).await?;
            raw_pull_mib_s.push(kind, got as f64 / MIB / q.secs);
            raw_pull_cpu.push(kind, q.cpu);
            raw_pull_client.push(kind, q.client_cpu);
            raw_pull_gib.push(kind, got as f64 / GIB);

            progress(&format!(
                "transfer round {}/{}: {kind}: {} small layers",
                round + 1,
                plan.rounds,
                plan.small_layers
            ));
            let img = gen::image(&gen::small_sizes(plan.small_layers, 4 << 10, 64 << 10));
            small_bytes = img.bytes;
            let r = transfer::reference(s, &format!("bench/small-{round}"), "latest")?;
            settle();
            let p = transfer::push(&client, s, &r, &img).await?;
            small_push.push(kind, p.secs);
            small_push_cpu.push(kind, p.cpu);
            small_push_client.push(kind, p.client_cpu);
            settle();
            let (q, _) = transfer::pull(&client, s, &r).await?;
            small_pull.push(kind, q.secs);
            small_pull_cpu.push(kind, q.cpu);
            small_pull_client.push(kind, q.client_cpu);
        }
    }
    let faster = Target::RatioAtLeast(1.5);
    let faster_time = Target::RatioAtMost(1.0 / 1.5);
    report.section(&format!(
        "Push and pull ({} rounds, oci-client, one POST + PUT per blob)",
        plan.rounds
    ));
    let (k, r) = push_mib_s.take();
    report.rounds(&format!("push {big_label} (4 layers)"), "MiB/s", k, r, faster);
    if let Some(f) = disk {
        // Next to push throughput: what the disk allows with and without durability.
        report.row(
            "machine probe: 256 MiB write + one fsync, same disk (Kura column)",
            "MiB/s",
            Some(f.durable_mib_s()),
            None,
            Target::None,
        );
        report.row(
            "machine probe: the same write without fsync (page cache only)",
            "MiB/s",
            Some(f.buffered_mib_s()),
            None,
            Target::None,
        );
        report.row(
            "machine probe: 4 KiB write + fsync (median of 50)",
            "ms",
            Some(f.small_fsync_ms),
            None,
            Target::None,
        );
    }
    let (k, r) = pull_mib_s.take();
    report.rounds(&format!("pull {big_label} (4 layers)"), "MiB/s", k, r, faster);
    let (k, r) = raw_pull_mib_s.take();
    report.rounds(
        &format!("pull {big_label}, plain GETs, no client-side digest check"),
        "MiB/s",
        k,
        r,
        Target::None,
    );
    let n = plan.small_layers;
    let label = format!("{n} layers, {} MiB", (small_bytes as f64 / MIB).round());
    let (k, r) = small_push.take();
    report.rounds(&format!("push {label}"), "s", k, r, faster_time);
    let (k, r) = small_pull.take();
    report.rounds(&format!("pull {label}"), "s", k, r, faster_time);
    let per_gib = |cpu: &PerKind, gib: &PerKind, kind| cpu.sum(kind) / gib.sum(kind);
    // Per round, so the spread shows (the median is the figure, as elsewhere).
    let per_round = |cpu: &PerKind, gib: &PerKind, kind| -> Vec<f64> {
        cpu.get(kind).iter().zip(gib.get(kind)).map(|(c, g)| c / g).collect()
    };
    report.rounds(
        &format!("server CPU per GiB pushed ({big_label} image)"),
        "CPU-s/GiB",
        per_round(&push_cpu, &push_gib, Kind::Kura),
        per_round(&push_cpu, &push_gib, Kind::Reference),
        Target::KuraAtMost(1.5),
    );
    report.rounds(
        &format!("server CPU per GiB pulled ({big_label} image)"),
        "CPU-s/GiB",
        per_round(&pull_cpu, &pull_gib, Kind::Kura),
        per_round(&pull_cpu, &pull_gib, Kind::Reference),
        Target::None,
    );
    report.rounds(
        &format!("server CPU per GiB pulled by plain GETs ({big_label} image)"),
        "CPU-s/GiB",
        per_round(&raw_pull_cpu, &raw_pull_gib, Kind::Kura),
        per_round(&raw_pull_cpu, &raw_pull_gib, Kind::Reference),
        Target::None,
    );
    report.rounds(
        "client CPU per GiB pulled by plain GETs",
        "CPU-s/GiB",
        per_round(&raw_pull_client, &raw_pull_gib, Kind::Kura),
        per_round(&raw_pull_client, &raw_pull_gib, Kind::Reference),
        Target::None,
    );
    report.row(
        "client (oci-client) CPU per GiB pushed",
        "CPU-s/GiB",
        Some(per_gib(&push_client, &push_gib, Kind::Kura)),
        Some(per_gib(&push_client, &push_gib, Kind::Reference)),
        Target::None,
    );
    report.row(
        "client (oci-client) CPU per GiB pulled, verifying digests",
        "CPU-s/GiB",
        Some(per_gib(&pull_client, &pull_gib, Kind::Kura)),
        Some(per_gib(&pull_client, &pull_gib, Kind::Reference)),
        Target::None,
    );
    let (k, r) = small_push_cpu.take();
    report.rounds(&format!("server CPU, push {label}"), "CPU-s", k, r, Target::None);
    let (k, r) = small_push_client.take();
    report.rounds(&format!("client CPU, push {label}"), "CPU-s", k, r, Target::None);
    let (k, r) = small_pull_cpu.take();
    report.rounds(&format!("server CPU, pull {label}"), "CPU-s", k, r, Target::None);
    let (k, r) = small_pull_client.take();
    report.rounds(&format!("client CPU, pull {label}"), "CPU-s", k, r, Target::None);

    if plan.chunked {
        let rounds = plan.rounds.min(2);
        let chunked = transfer::client(PushMode::Chunked);
        let (mut mib_s, mut cpu, mut gib) = (PerKind::default(), PerKind::default(), PerKind::default());
        for round in 0..rounds {
            for kind in order(round) {
                let s = pick(kind, kura, reference);
                progress(&format!(
                    "chunked push round {}/{rounds}: {kind}: {big_label}",
                    round + 1
                ));
                let img = gen::image(&big_sizes);
                let r = transfer::reference(s, &format!("bench/chunked-{round}"), "latest")?;
                settle();
                let p = transfer::push(&chunked, s, &r, &img).await?;
                mib_s.push(kind, img.bytes as f64 / MIB / p.secs);
                cpu.push(kind, p.cpu);
                gib.push(kind, img.bytes as f64 / GIB);
            }
        }
        let (k, r) = mib_s.take();
        report.rounds(
            &format!("push {big_label}, oci-client default: 4 MiB PATCH chunks"),
            "MiB/s",
            k,
            r,
            Target::None,
        );
        report.row(
            "server CPU per GiB pushed in 4 MiB chunks",
            "CPU-s/GiB",
            Some(per_gib(&cpu, &gib, Kind::Kura)),
            Some(per_gib(&cpu, &gib, Kind::Reference)),
            Target::None,
        );
    }
    Ok(())
}

async fn rps(report: &mut Report, plan: &Plan, conns: usize, kura: &Server, reference: &Server) -> anyhow::Result<()> {
    // A small image in each registry to hammer.
    let client = transfer::client(PushMode::Monolithic);
    let img = gen::image(&[64 << 10]);
    let layer = img.manifest.layers[0].digest.clone();
    for s in [kura, reference] {
        let r = transfer::reference(s, "bench/rps", "latest")?;
        transfer::push(&client, s, &r, &img).await?;
    }
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                  application/vnd.docker.distribution.manifest.v2+json";
    let rounds = 2;
    let (mut get, mut head) = (PerKind::default(), PerKind::default());
    let (mut get_cpu, mut head_cpu) = (PerKind::default(), PerKind::default());
    let (mut get_p99, mut head_p99) = (PerKind::default(), PerKind::default());
    for round in 0..rounds {
        for kind in order(round) {
            let s = pick(kind, kura, reference);
            progress(&format!(
                "rps round {}/{rounds}: {kind}: manifest GET, blob HEAD",
                round + 1
            ));
            let m = load::run(
                s,
                Method::GET,
                "/v2/bench/rps/manifests/latest",
                Some(accept),
                conns,
                plan.rps_secs,
            )
            .await?;
            get.push(kind, m.rps);
            get_cpu.push(kind, m.cpu / m.requests as f64 * 1e6);
            get_p99.push(kind, m.p99_ms);
            let h = load::run(
                s,
                Method::HEAD,
                &format!("/v2/bench/rps/blobs/{layer}"),
                None,
                conns,
                plan.rps_secs,
            )
            .await?;
            head.push(kind, h.rps);
            head_cpu.push(kind, h.cpu / h.requests as f64 * 1e6);
            head_p99.push(kind, h.p99_ms);
            if m.errors + h.errors > 0 {
                report.notes.push(format!(
                    "{kind}: {} failed requests in the rps tests.",
                    m.errors + h.errors
                ));
            }
        }
    }
    report.section(&format!(
        "Requests per second ({conns} connections, {} s each, {rounds} rounds)",
        plan.rps_secs
    ));
    let (k, r) = get.take();
    report.rounds("manifest GET by tag", "req/s", k, r, Target::RatioAtLeast(3.0));
    let (k, r) = get_p99.take();
    report.rounds("manifest GET p99 latency", "ms", k, r, Target::None);
    let (k, r) = get_cpu.take();
    report.rounds("server CPU per manifest GET", "CPU-µs", k, r, Target::None);
    let (k, r) = head.take();
    report.rounds("blob HEAD", "req/s", k, r, Target::None);
    let (k, r) = head_p99.take();
    report.rounds("blob HEAD p99 latency", "ms", k, r, Target::None);
    let (k, r) = head_cpu.take();
    report.rounds("server CPU per blob HEAD", "CPU-µs", k, r, Target::None);
    Ok(())
}

async fn streams(report: &mut Report, plan: &Plan, bins: &Binaries) -> anyhow::Result<()> {
    let label = size_label(plan.stream_bytes);
    let mut results = Vec::new();
    for kind in [Kind::Kura, Kind::Reference] {
        progress(&format!(
            "stream: {kind}: {label} single layer in and out (fresh server)"
        ));
        let s = Server::start(kind, bins).await?;
        settle();
        let r = stream::run(&s, "bench/stream", plan.stream_bytes).await?;
        s.stop();
        results.push(r);
    }
    let (k, f) = (&results[0], &results[1]);
    let mib = |kib: u64| kib as f64 / 1024.0;
    report.section(&format!(
        "One {label} layer streamed in (one chunked PATCH) and out (fresh servers)"
    ));
    report.row(
        &format!("peak RSS while {label} streams in and out"),
        "MiB",
        Some(mib(k.peak_kib)),
        Some(mib(f.peak_kib)),
        Target::KuraAtMost(64.0),
    );
    report.row(
        "peak RSS during the push alone",
        "MiB",
        Some(mib(k.peak_push_kib)),
        Some(mib(f.peak_push_kib)),
        Target::None,
    );
    report.row(
        "RSS before the stream",
        "MiB",
        Some(mib(k.rss_before_kib)),
        Some(mib(f.rss_before_kib)),
        Target::None,
    );
    let gib = plan.stream_bytes as f64 / GIB;
    let mibs = plan.stream_bytes as f64 / MIB;
    report.row(
        &format!("push {label} streamed"),
        "MiB/s",
        Some(mibs / k.push_secs),
        Some(mibs / f.push_secs),
        Target::None,
    );
    report.row(
        &format!("pull {label} streamed"),
        "MiB/s",
        Some(mibs / k.pull_secs),
        Some(mibs / f.pull_secs),
        Target::None,
    );
    report.row(
        "server CPU per GiB pushed (streamed)",
        "CPU-s/GiB",
        Some(k.push_cpu / gib),
        Some(f.push_cpu / gib),
        Target::KuraAtMost(1.5),
    );
    report.row(
        "server CPU per GiB pulled (streamed)",
        "CPU-s/GiB",
        Some(k.pull_cpu / gib),
        Some(f.pull_cpu / gib),
        Target::None,
    );
    if !(k.peak_reset && f.peak_reset) {
        report
            .notes
            .push("The kernel refused to reset VmHWM: peak RSS is the peak since the server started.".into());
    }
    Ok(())
}

struct ScaleLevel {
    n: usize,
    put_rate: [f64; 2],
    tags: [scale::Walk; 2],
    list: scale::Walk,
    describe: scale::Walk,
}

/// Push bursts to `prod/bench` with the matching rule disabled and enabled, alternating which
/// goes first over 3 rounds; medians.
async fn events_section(report: &mut Report, plan: &Plan, bins: &Binaries) -> anyhow::Result<()> {
    let kura = Server::start(Kind::Kura, bins).await?;
    let rx = events::Receiver::default();
    let url = rx.start().await?;
    events::configure(&kura, &url).await?;
    // Warm-up (the repository, caches, the connection to the receiver).
    events::burst(&kura, 20, "warm", Some(&rx)).await?;
    let (mut off, mut on, mut p50, mut p99) = (vec![], vec![], vec![], vec![]);
    for round in 0..3 {
        for enabled in [round % 2 == 1, round % 2 == 0] {
            events::set_rule(&kura, enabled).await?;
            let label = format!("r{round}-{}", if enabled { "on" } else { "off" });
            progress(&format!("events: {label}: {} pushes", plan.event_pushes));
            let b = events::burst(&kura, plan.event_pushes, &label, enabled.then_some(&rx)).await?;
            if enabled {
                on.push(b.pushes_per_s);
                p50.push(b.p(0.5));
                p99.push(b.p(0.99));
            } else {
                off.push(b.pushes_per_s);
            }
        }
    }
    report.section(&format!(
        "EventBridge delivery (Kura only; {} manifest pushes per burst, {} in flight, a local receiver)",
        plan.event_pushes, 8
    ));
    report.rounds(
        "push rate, no enabled rule",
        "pushes/s",
        off.clone(),
        vec![],
        Target::None,
    );
    report.rounds(
        "push rate, a matching rule + API destination",
        "pushes/s",
        on.clone(),
        vec![],
        Target::None,
    );
    let ratio = report::median(&on) / report::median(&off);
    report.row("push rate, events on ÷ off", "ratio", Some(ratio), None, Target::None);
    report.rounds(
        "event delivery latency p50 (PUT sent → arrival)",
        "ms",
        p50,
        vec![],
        Target::None,
    );
    report.rounds("event delivery latency p99", "ms", p99, vec![], Target::None);
    Ok(())
}

async fn scale_section(report: &mut Report, plan: &Plan, bins: &Binaries) -> anyhow::Result<()> {
    let (kura, reference) = start_pair(bins).await?;
    let http = reqwest::Client::new();
    let mut repos = [
        scale::Repo::create(&http, &kura).await?,
        scale::Repo::create(&http, &reference).await?,
    ];
    let idx = |k: Kind| usize::from(k == Kind::Reference);
    let mut levels = Vec::new();
    for (li, &n) in plan.images.iter().enumerate() {
        let mut put_rate = [f64::NAN; 2];
        let mut tags: [Option<scale::Walk>; 2] = [None, None];
        let (mut list, mut describe) = (None, None);
        for kind in order(li) {
            let s = pick(kind, &kura, &reference);
            progress(&format!("scale: {kind}: grow to {n} images"));
            put_rate[idx(kind)] = repos[idx(kind)].grow(&http, s, n).await?;
            settle();
            progress(&format!("scale: {kind}: list at {n} images"));
            let min = 200;
            tags[idx(kind)] = Some(scale::walk_tags(s, plan.page_budget, min).await?);
            if kind == Kind::Kura {
                list = Some(scale::walk_ecr(s, "ListImages", plan.page_budget, min).await?);
                describe = Some(scale::walk_ecr(s, "DescribeImages", plan.page_budget, min).await?);
            }
        }
        let [tk, tr] = tags;
        levels.push(ScaleLevel {
            n,
            put_rate,
            tags: [tk.context("kura tags")?, tr.context("reference tags")?],
            list: list.context("ListImages")?,
            describe: describe.context("DescribeImages")?,
        });
    }
    drop((kura, reference));

    report.section(&format!(
        "Listing latency, one repository, pages of {} (tags/list n=100; ECR maxResults=100)",
        scale::PAGE
    ));
    for l in &levels {
        let c = count_label(l.n);
        for (name, k, r) in [
            ("tags/list", Some(&l.tags[0]), Some(&l.tags[1])),
            ("ListImages", Some(&l.list), None),
            ("DescribeImages", Some(&l.describe), None),
        ] {
            let k = k.expect("kura walk");
            report.row(
                &format!("{name} page p50 @ {c}"),
                "ms",
                Some(k.p50_ms),
                r.map(|w| w.p50_ms),
                Target::None,
            );
            report.row(
                &format!("{name} page p99 @ {c}"),
                "ms",
                Some(k.p99_ms),
                r.map(|w| w.p99_ms),
                Target::None,
            );
        }
    }
    if let (Some(first), Some(last)) = (levels.first(), levels.last()) {
        if levels.len() > 1 {
            let (a, b) = (count_label(first.n), count_label(last.n));
            for (name, f, l) in [
                ("tags/list", &first.tags[0], &last.tags[0]),
                ("ListImages", &first.list, &last.list),
                ("DescribeImages", &first.describe, &last.describe),
            ] {
                report.row(
                    &format!("{name} p50 @ {b} ÷ p50 @ {a}"),
                    "×",
                    Some(l.p50_ms / f.p50_ms),
                    Some(last.tags[1].p50_ms / first.tags[1].p50_ms).filter(|_| name == "tags/list"),
                    Target::KuraAtMost(2.0),
                );
                report.row(
                    &format!("{name} p99 @ {b} ÷ p99 @ {a}"),
                    "×",
                    Some(l.p99_ms / f.p99_ms),
                    Some(last.tags[1].p99_ms / first.tags[1].p99_ms).filter(|_| name == "tags/list"),
                    Target::KuraAtMost(2.0),
                );
            }
        }
        let grow_label = if levels.len() > 1 {
            format!("{}→{}", count_label(levels[levels.len() - 2].n), count_label(last.n))
        } else {
            format!("0→{}", count_label(last.n))
        };
        report.row(
            &format!("manifest PUT with tag, 8 in flight ({grow_label})"),
            "PUT/s",
            Some(last.put_rate[0]),
            Some(last.put_rate[1]),
            Target::None,
        );
    }
    for l in &levels {
        let pages = |w: &scale::Walk| {
            format!(
                "{} pages timed, {} items in a full walk, at most {} per response",
                w.pages,
                w.items
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "no complete walk,".into()),
                w.max_page_items
            )
        };
        report.notes.push(format!(
            "At {}: Kura tags/list {}; reference tags/list {}; ListImages {}; DescribeImages {}.",
            count_label(l.n),
            pages(&l.tags[0]),
            pages(&l.tags[1]),
            pages(&l.list),
            pages(&l.describe)
        ));
        for (what, w) in [
            ("Kura tags/list", &l.tags[0]),
            ("reference tags/list", &l.tags[1]),
            ("ListImages", &l.list),
            ("DescribeImages", &l.describe),
        ] {
            if w.items.is_some_and(|i| i != l.n) {
                report.notes.push(format!(
                    "WARNING: at {}, a full {what} walk returned {} items, not {}.",
                    count_label(l.n),
                    w.items.unwrap_or(0),
                    l.n
                ));
            }
        }
        if l.tags[1].max_page_items > scale::PAGE {
            report.notes.push(format!(
                "At {}: the reference ignored n={} and answered all {} tags in one response (Distribution 2.8 does not paginate tags/list).",
                count_label(l.n),
                scale::PAGE,
                l.tags[1].max_page_items
            ));
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // reqwest is built with rustls but no crypto provider of its own; the
    // harness never speaks TLS, but building a client needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plan = Plan::from(&args);
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    for (what, p) in [("Kura", &args.kura_bin), ("the reference registry", &args.registry_bin)] {
        if !p.is_file() {
            bail!(
                "{what} binary not found at {} (bench/run.sh builds and installs both)",
                p.display()
            );
        }
    }
    // Run a private copy of Kura: a rebuild of target/ during the run (another
    // session, an editor) must not swap the binary between sections.
    let bin_dir = tempfile::Builder::new()
        .prefix("kura-bench-bin-")
        .tempdir_in(&work_dir)?;
    let kura_copy = bin_dir.path().join("kura");
    std::fs::copy(&args.kura_bin, &kura_copy).with_context(|| format!("copying {}", args.kura_bin.display()))?;
    let kura_built = std::fs::metadata(&args.kura_bin)
        .and_then(|m| m.modified())
        .map(ecr::human_date)
        .unwrap_or_else(|_| "unknown".into());
    let bins = Binaries {
        kura: kura_copy,
        reference: args.registry_bin.clone(),
        work_dir: work_dir.clone(),
    };
    let want = |s: Section| args.only.is_empty() || args.only.contains(&s);
    let m = procstat::machine();
    let started = SystemTime::now();
    // The revision the Kura binary was (presumably) built from: read before measuring.
    let kura_rev = git_rev(&root);
    let mut report = Report::default();

    let disk = if want(Section::Probe) {
        Some(probes(&mut report, &work_dir, "at the start").await?)
    } else {
        None
    };
    if want(Section::Transfer) || want(Section::Rps) {
        let (kura, reference) = start_pair(&bins).await?;
        if want(Section::Transfer) {
            transfer(&mut report, &plan, disk.as_ref(), &kura, &reference).await?;
        }
        if want(Section::Rps) {
            rps(&mut report, &plan, args.connections, &kura, &reference).await?;
        }
        progress(&format!(
            "data on disk after transfer: kura {}, reference {}",
            kura.data_dir().display(),
            reference.data_dir().display()
        ));
    }
    if want(Section::Stream) {
        streams(&mut report, &plan, &bins).await?;
    }
    if want(Section::Scale) {
        scale_section(&mut report, &plan, &bins).await?;
    }

    if want(Section::Events) {
        events_section(&mut report, &plan, &bins).await?;
    }

    if want(Section::Metrics) {
        metrics_cost::section(&mut report, plan.rps_secs, args.connections, &bins).await?;
    }

    if want(Section::Probe) {
        probes(&mut report, &work_dir, "at the end").await?;
    }

    let took = started.elapsed().unwrap_or_default().as_secs_f64();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    report.header = vec![
        format!("## Latest run: {}", ecr::human_date(started)),
        String::new(),
        format!(
            "- Machine: {}, {} CPUs (`nproc`), {:.1} GiB memory, Linux {}; data directories on {}.",
            m.cpu_model,
            m.nproc,
            m.mem_gib,
            m.kernel,
            procstat::filesystem_of(&work_dir)
        ),
        format!(
            "- Kura {} (release build of {kura_built}); reference: Debian `docker-registry` ({}), filesystem storage, no auth, in-memory blob descriptor cache.",
            kura_rev,
            server::reference_version(&args.registry_bin)
        ),
        format!(
            "- Mode: {}; `kura-bench {}`; took {:.0} s. Client and servers share the machine; Kura and the reference alternate who goes first each round.",
            if args.quick { "quick" } else { "full" },
            argv.join(" "),
            took
        ),
    ];
    report.notes.push(
        "Ratios are Kura ÷ reference. For MiB/s and req/s higher is better; for seconds, ms, CPU and MiB lower is better."
            .into(),
    );
    let md = report.markdown();
    println!("{md}");
    std::fs::write(&args.out, &md).with_context(|| format!("writing {}", args.out.display()))?;
    progress(&format!("wrote {}", args.out.display()));
    Ok(())
}
