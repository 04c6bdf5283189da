//! Running the real `trawl` binary from tests, and a minimal HTTP client to talk to it.
//!
//! Locating the binary: `CARGO_BIN_EXE_trawl` exists only inside the `trawl` package, and a
//! binary-only package cannot be a dev-dependency, so [`trawl_bin`] builds it once per test
//! process with `cargo build -p trawl --bin trawl` into the same target directory and
//! profile the test binary came from (found from `current_exe()`: `<target>/<profile>/deps/…`).
//! Cargo has released its build lock by the time tests run, so the nested build does not
//! block; when nothing changed it is a no-op. `TRAWL_BIN` overrides the path.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The path of a freshly built `trawl` binary.
pub fn trawl_bin() -> anyhow::Result<PathBuf> {
    BIN.get_or_init(|| build_trawl().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

fn build_trawl() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("TRAWL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // <target>/<profile>/deps/<test-binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary is not in <target>/<profile>/deps")?;
    let target_dir = profile_dir
        .parent()
        .context("no target directory above the profile directory")?;
    let profile = match profile_dir.file_name().and_then(|s| s.to_str()) {
        Some("debug") => "dev",
        Some(p) => p,
        None => bail!("no profile directory name"),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "trawl",
            "--bin",
            "trawl",
            "--profile",
        ])
        .arg(profile)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(crate::repo_root())
        .status()
        .context("running cargo build -p trawl")?;
    if !status.success() {
        bail!("cargo build -p trawl failed: {status}");
    }
    let bin = profile_dir.join("trawl");
    if !bin.exists() {
        bail!("{} not found after building", bin.display());
    }
    Ok(bin)
}

/// A running `trawl` process; killed when dropped.
#[derive(Debug)]
pub struct TrawlProcess {
    child: Child,
    /// The web listen address the process reported.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl TrawlProcess {
    /// Starts `trawl standalone` with `--config.file=config --storage.tsdb.path=data`,
    /// listening on a loopback port chosen by the OS, plus `extra` flags; waits until it
    /// logs its listen address.
    pub fn standalone(config: &Path, data: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let bin = trawl_bin()?;
        let mut cmd = Command::new(bin);
        cmd.arg("standalone")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .args(extra)
            .env("TRAWL_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> anyhow::Result<Self> {
        let mut child = cmd.spawn().context("spawning trawl")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("web server listening")
                    && let Some(a) = field(&line, "address")
                    && let Ok(a) = a.parse()
                {
                    let _ = tx.send(a);
                }
                eprintln!("[trawl] {line}");
                l.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "trawl did not report a listen address; log:\n{}",
                    log.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
                );
            }
        };
        Ok(TrawlProcess { child, addr, log })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends a signal by name (`HUP`, `TERM`) with `kill(1)`.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let st = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()?;
        if !st.success() {
            bail!("kill -{name} failed: {st}");
        }
        Ok(())
    }

    /// Sends SIGTERM and waits up to `within` for a clean exit; returns whether it exited
    /// successfully.
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<bool> {
        self.signal("TERM")?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("trawl did not exit within {within:?}")
    }

    /// GET `path` (with query string) on the web address.
    pub fn get(&self, path: &str) -> anyhow::Result<Response> {
        http(self.addr, "GET", path, None)
    }

    /// POST an empty body to `path`.
    pub fn post(&self, path: &str) -> anyhow::Result<Response> {
        http(self.addr, "POST", path, Some(""))
    }

    /// `/api/v1/query?query=expr` as JSON (any status).
    pub fn query(&self, expr: &str) -> anyhow::Result<serde_json::Value> {
        let r = self.get(&format!("/api/v1/query?query={}", urlencode(expr)))?;
        serde_json::from_str(&r.body).with_context(|| format!("query {expr}: {}", r.body))
    }

    /// The `result` vector of an instant query as (labels, value) pairs.
    pub fn query_vector(&self, expr: &str) -> anyhow::Result<Vec<(serde_json::Value, f64)>> {
        let v = self.query(expr)?;
        if v["status"] != "success" {
            bail!("query {expr} failed: {v}");
        }
        let mut out = Vec::new();
        for s in v["data"]["result"].as_array().into_iter().flatten() {
            let val = s["value"][1]
                .as_str()
                .and_then(parse_prom_float)
                .context("sample value")?;
            out.push((s["metric"].clone(), val));
        }
        Ok(out)
    }

    /// `/api/v1/targets` (with an optional query string) as JSON.
    pub fn targets(&self, query: &str) -> anyhow::Result<serde_json::Value> {
        let r = self.get(&format!("/api/v1/targets{query}"))?;
        serde_json::from_str(&r.body).with_context(|| format!("targets: {}", r.body))
    }
}

impl Drop for TrawlProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Value of `name=value` in a tracing fmt log line.
pub fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=");
    let i = line.find(&key)? + key.len();
    let rest = &line[i..];
    Some(rest.split_whitespace().next().unwrap_or(""))
}

/// Parses a Prometheus JSON sample value ("NaN", "+Inf", "1.5").
pub fn parse_prom_float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// A header value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("no status line")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size_text = std::str::from_utf8(&b[..eol])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Polls `f` until it returns `Ok(Some(x))` or `within` passes; the last error or
/// `None` is reported in the failure. This is how the tests wait: on a condition, with a
/// generous deadline, never on a fixed sleep.
pub fn eventually<T>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    let mut last = String::from("condition never held");
    loop {
        match f() {
            Ok(Some(x)) => return Ok(x),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {within:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_and_plain_responses() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("parse");
        assert_eq!((r.status, r.body.as_str()), (200, "abcde"));
        let r = parse_response(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\nno")
            .expect("parse");
        assert_eq!((r.status, r.body.as_str()), (503, "no"));
        assert_eq!(r.header("content-length"), Some("2"));
    }

    #[test]
    fn log_fields_and_urlencoding() {
        let line = "2026-01-01T00:00:00Z  INFO trawl::standalone: web server listening address=127.0.0.1:4242";
        assert_eq!(field(line, "address"), Some("127.0.0.1:4242"));
        assert_eq!(urlencode("up{job=\"a b\"}"), "up%7Bjob%3D%22a%20b%22%7D");
    }
}
