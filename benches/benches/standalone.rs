//! `trawl standalone` next to Prometheus, scraping the same test exporters on loopback
//! (issue 4's acceptance benchmark): N targets × M series at a fixed interval, both
//! processes started by this benchmark with the same configuration and measured over the
//! same window.
//!
//! Figures: CPU seconds (utime + stime from `/proc/<pid>/stat`) per million samples
//! appended (each process's own appended-samples counter), and resident memory
//! (`VmRSS`, and the peak `VmHWM`) at the end of the window.
//!
//! Run: `cargo bench -p trawl-benches --bench standalone`. Environment knobs:
//! `BENCH_TARGETS` (500), `BENCH_SERIES` (1000), `BENCH_INTERVAL` (5s), `BENCH_WARMUP_SECS`
//! (30), `BENCH_SECONDS` (60), `PROMETHEUS` (/usr/bin/prometheus), `TRAWL_BIN` (else built
//! with `cargo build --release -p trawl`), `TRAWL_ARGS` (extra flags for `trawl
//! standalone`, split on whitespace, e.g. `--scrape.threads=1`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn env_or<T: std::str::FromStr>(name: &str, dflt: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(dflt)
}

/// One exporter per port; each request renders `series` gauges whose values move.
fn start_exporters(n: usize, series: usize) -> Res<Vec<SocketAddr>> {
    let mut addrs = Vec::with_capacity(n);
    let tick = Arc::new(AtomicU64::new(0));
    for t in 0..n {
        let l = TcpListener::bind("127.0.0.1:0")?;
        addrs.push(l.local_addr()?);
        let tick = tick.clone();
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                for c in l.incoming().flatten() {
                    let k = tick.fetch_add(1, Ordering::Relaxed);
                    let _ = serve(c, t, series, k);
                }
            })?;
    }
    Ok(addrs)
}

fn serve(c: TcpStream, target: usize, series: usize, k: u64) -> Res<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let mut body = String::with_capacity(series * 48);
    body.push_str("# TYPE bench_metric gauge\n");
    for i in 0..series {
        // Realistic mix: most series change slowly, some every scrape.
        let v = if i % 10 == 0 {
            k as f64
        } else {
            (i + target) as f64
        };
        body.push_str(&format!("bench_metric{{series=\"{i}\",shard=\"a\"}} {v}\n"));
    }
    let mut c = c;
    write!(
        c,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    c.write_all(body.as_bytes())?;
    Ok(())
}

fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn trawl_bin() -> Res<PathBuf> {
    if let Some(p) = std::env::var_os("TRAWL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("bench binary not in <target>/<profile>/deps")?;
    let target_dir = profile_dir.parent().ok_or("no target dir")?;
    let root = trawl_benches::manifest_dir().join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "--release", "-p", "trawl", "--bin", "trawl"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(root)
        .status()?;
    if !st.success() {
        return Err("cargo build --release -p trawl failed".into());
    }
    Ok(target_dir.join("release").join("trawl"))
}

/// utime + stime in seconds.
fn cpu_seconds(pid: u32) -> Res<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &s[s.rfind(')').ok_or("bad stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11).ok_or("no utime")?.parse()?;
    let st: f64 = f.get(12).ok_or("no stime")?.parse()?;
    Ok((ut + st) / 100.0)
}

/// (VmRSS, VmHWM) in bytes.
fn memory(pid: u32) -> Res<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| -> f64 {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            * 1024.0
    };
    Ok((kb("VmRSS:"), kb("VmHWM:")))
}

fn http_get(addr: SocketAddr, path: &str) -> Res<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok(body.to_string())
}

/// The sum over every sample of `name` in a (possibly chunked) text body, labeled or not:
/// Prometheus 2.42 splits its appended-samples counter by `type` (float, histogram).
fn metric(addr: SocketAddr, name: &str) -> Res<f64> {
    let body = http_get(addr, "/metrics")?;
    let mut sum = None;
    for l in body.lines() {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(v) = rest.strip_prefix(' ') {
            v
        } else if rest.starts_with('{') {
            match rest.rsplit_once("} ") {
                Some((_, v)) => v,
                None => continue,
            }
        } else {
            continue;
        };
        let v: f64 = value.split_whitespace().next().unwrap_or("").parse()?;
        *sum.get_or_insert(0.0) += v;
    }
    sum.ok_or_else(|| format!("{name} not found").into())
}

struct Proc {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    samples_metric: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_up(p: &Proc) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if metric(p.addr, p.samples_metric).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("{} did not come up", p.name).into())
}

struct Figures {
    cpu: f64,
    samples: f64,
    rss: f64,
    hwm: f64,
}

fn main() -> Res<()> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let targets: usize = env_or("BENCH_TARGETS", 500);
    let series: usize = env_or("BENCH_SERIES", 1000);
    let interval: String = env_or("BENCH_INTERVAL", "5s".to_string());
    let warmup = Duration::from_secs(env_or("BENCH_WARMUP_SECS", 30));
    let window = Duration::from_secs(env_or("BENCH_SECONDS", 60));
    let prom_bin: String = env_or("PROMETHEUS", "/usr/bin/prometheus".to_string());
    if std::env::args().any(|a| a == "--list") {
        println!("standalone: bench");
        return Ok(());
    }

    let trawl = trawl_bin()?;
    let addrs = start_exporters(targets, series)?;
    let dir = tempfile::tempdir()?;
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let cfg = dir.path().join("bench.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\nscrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        ),
    )?;

    let mut procs = Vec::new();
    let tport = free_port()?;
    procs.push(Proc {
        name: "trawl",
        child: Command::new(&trawl)
            .arg("standalone")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("trawl").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{tport}"))
            .args(
                std::env::var("TRAWL_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .env("TRAWL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
        addr: SocketAddr::from(([127, 0, 0, 1], tport)),
        samples_metric: "trawl_tsdb_head_samples_appended_total",
    });
    if Path::new(&prom_bin).exists() {
        let pport = free_port()?;
        procs.push(Proc {
            name: "prometheus",
            child: Command::new(&prom_bin)
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("prom").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
            addr: SocketAddr::from(([127, 0, 0, 1], pport)),
            samples_metric: "prometheus_tsdb_head_samples_appended_total",
        });
    } else {
        println!("standalone: {prom_bin} not found, measuring trawl alone");
    }
    for p in &procs {
        wait_up(p)?;
    }
    println!(
        "standalone: {targets} targets x {series} series every {interval}; warm-up {warmup:?}, window {window:?}"
    );
    std::thread::sleep(warmup);
    let start: Vec<(f64, f64)> = procs
        .iter()
        .map(|p| -> Res<(f64, f64)> {
            Ok((
                cpu_seconds(p.child.id())?,
                metric(p.addr, p.samples_metric)?,
            ))
        })
        .collect::<Res<_>>()?;
    std::thread::sleep(window);
    let mut figs = Vec::new();
    for (p, (c0, s0)) in procs.iter().zip(start) {
        let cpu = cpu_seconds(p.child.id())? - c0;
        let samples = metric(p.addr, p.samples_metric)? - s0;
        let (rss, hwm) = memory(p.child.id())?;
        figs.push(Figures {
            cpu,
            samples,
            rss,
            hwm,
        });
    }
    for (p, f) in procs.iter().zip(&figs) {
        println!(
            "standalone: {:<10} cpu {:>7.2} s  samples {:>11.0}  cpu/Msample {:>7.3} s  rss {:>7.1} MiB  peak rss {:>7.1} MiB",
            p.name,
            f.cpu,
            f.samples,
            f.cpu / (f.samples / 1e6).max(1e-9),
            f.rss / (1 << 20) as f64,
            f.hwm / (1 << 20) as f64,
        );
    }
    if let [t, p] = figs.as_slice() {
        let per = |f: &Figures| f.cpu / f.samples.max(1.0);
        println!(
            "standalone: ratio trawl/prometheus  cpu per sample {:.3}x  rss {:.3}x  peak rss {:.3}x",
            per(t) / per(p),
            t.rss / p.rss,
            t.hwm / p.hwm
        );
    }
    Ok(())
}
