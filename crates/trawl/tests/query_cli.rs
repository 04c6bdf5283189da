//! `trawl query` run as a real process against an in-process Query service over the
//! engine's `MemStorage`: JSON output is byte-for-byte the API rendering of the engine's own
//! answer, tables are readable, errors exit non-zero with Prometheus's errorType.

use std::process::{Command, Output};
use std::sync::Arc;

use trawl_model::Labels;
use trawl_promql::{Engine, MemStorage, Queryable};
use trawl_query::{Answer, Listing, QueryOptions, QueryableLabels, json};

struct Server {
    addr: String,
    store: Arc<MemStorage>,
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    fn start() -> Self {
        let mut s = MemStorage::new();
        for (job, inst, base) in [("api", "a:1", 1.0), ("api", "b:1", 2.0), ("db", "c:1", 3.0)] {
            let up = Labels::from_pairs([("__name__", "up"), ("job", job), ("instance", inst)]);
            let c =
                Labels::from_pairs([("__name__", "req_total"), ("job", job), ("instance", inst)]);
            for k in 0..=40i64 {
                s.append(up.clone(), k * 15_000, 1.0);
                s.append(c.clone(), k * 15_000, base * k as f64);
            }
        }
        let store = Arc::new(s);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let q: Arc<dyn Queryable> = store.clone();
        let labels = Arc::new(QueryableLabels(q.clone()));
        rt.spawn(trawl_query::serve(
            listener,
            q,
            labels,
            QueryOptions::default(),
            async {
                let _ = rx.await;
            },
        ));
        Self {
            addr,
            store,
            rt,
            stop: Some(tx),
        }
    }

    fn trawl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .arg("query")
            .args(args)
            .args(["--addr", &self.addr])
            .env("TRAWL_LOG", "off")
            .output()
            .expect("run trawl")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = &self.rt;
    }
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn json_output_is_the_api_rendering_of_the_engines_answer() {
    let srv = Server::start();
    let e = Engine::default();
    for (q, t, arg) in [
        ("up", 300_000, "300"),
        (
            "sum by (job) (rate(req_total[1m]))",
            600_000,
            "1970-01-01T00:10:00Z",
        ),
        ("req_total / 2", 450_500, "450.5"),
        ("scalar(sum(up))", 60_000, "60"),
        ("quantile(2, up)", 60_000, "60"),
    ] {
        let want = Answer {
            result: e.instant_query(srv.store.as_ref(), q, t).unwrap(),
            time_ms: t,
        };
        let got = stdout(&srv.trawl(&[q, "--time", arg, "-o", "json"]));
        assert_eq!(got, json::answer_json(&want) + "\n", "{q}");
    }
    // Range: RFC3339 with an offset, unix seconds, Prometheus duration and seconds as steps.
    for (args, start, end, step) in [
        (
            vec![
                "--start",
                "1970-01-01T01:00:00+01:00",
                "--end",
                "600",
                "--step",
                "30s",
            ],
            0,
            600_000,
            30_000,
        ),
        (
            vec!["--start", "60", "--end", "120", "--step", "15"],
            60_000,
            120_000,
            15_000,
        ),
    ] {
        let q = "rate(req_total[1m])";
        let want = Answer {
            result: e
                .range_query(srv.store.as_ref(), q, start, end, step)
                .unwrap(),
            time_ms: start,
        };
        let mut a = vec![q, "-o", "json"];
        a.extend(args);
        assert_eq!(stdout(&srv.trawl(&a)), json::answer_json(&want) + "\n");
    }
    // Metadata calls.
    let names = Listing {
        items: vec!["__name__".to_string(), "instance".into(), "job".into()],
        warnings: vec![],
    };
    assert_eq!(
        stdout(&srv.trawl(&["labels", "-o", "json"])),
        json::strings_json(&names) + "\n"
    );
    let series = stdout(&srv.trawl(&["series", "--match", "up{job=\"db\"}", "-o", "json"]));
    assert_eq!(
        series,
        r#"{"status":"success","data":[{"__name__":"up","instance":"c:1","job":"db"}]}"#.to_owned()
            + "\n"
    );
}

#[test]
fn tables_are_readable() {
    let srv = Server::start();
    let out = stdout(&srv.trawl(&["up{job=\"api\"}", "--time", "60"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("SERIES")
            && lines[0].contains("VALUE")
            && lines[0].contains("TIMESTAMP")
    );
    assert!(
        lines[1].starts_with("up{instance=\"a:1\", job=\"api\"}"),
        "{out}"
    );
    assert!(
        lines[1].contains("  1  ") && lines[1].ends_with("1970-01-01T00:01:00Z"),
        "{out}"
    );

    // Range: one block per series, separated by a blank line.
    let out = stdout(&srv.trawl(&[
        "req_total{job=\"api\"}",
        "--start",
        "0",
        "--end",
        "30",
        "--step",
        "15s",
    ]));
    let blocks: Vec<&str> = out.split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "{out}");
    assert!(
        blocks[0].starts_with("req_total{instance=\"a:1\", job=\"api\"}\n  TIMESTAMP"),
        "{out}"
    );
    assert!(blocks[1].contains("1970-01-01T00:00:30Z  4"), "{out}");

    let out = stdout(&srv.trawl(&["scalar(sum(up))", "--time", "0"]));
    assert!(out.lines().nth(1).unwrap().starts_with("3  "), "{out}");

    assert_eq!(stdout(&srv.trawl(&["labels", "job"])), "api\ndb\n");
    assert_eq!(
        stdout(&srv.trawl(&["labels", "instance", "--match", "up{job=\"api\"}"])),
        "a:1\nb:1\n"
    );
    assert_eq!(
        stdout(&srv.trawl(&["series", "--match", "req_total", "--limit", "1"])),
        "req_total{instance=\"a:1\", job=\"api\"}\n"
    );
    let o = srv.trawl(&["series", "--match", "req_total", "--limit", "1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning: results truncated due to limit"));
    // An empty vector prints nothing.
    assert_eq!(stdout(&srv.trawl(&["nope", "--time", "0"])), "");
}

#[test]
fn errors_exit_non_zero_with_the_error_type() {
    let srv = Server::start();
    let o = srv.trawl(&["sum(", "--time", "0"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: bad_data: ") && err.len() > 20,
        "{err}"
    );

    let o = srv.trawl(&["sum(", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with(r#"{"status":"error","errorType":"bad_data","error":""#),
        "{out}"
    );

    let o = srv.trawl(&["up", "--start", "600", "--end", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let o = srv.trawl(&["up", "--time", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("cannot parse \"yesterday\" to a valid timestamp")
    );
    let o = srv.trawl(&["up", "--time", "0", "--start", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let o = srv.trawl(&[]);
    assert_eq!(o.status.code(), Some(2));
    let o = srv.trawl(&["series"]);
    assert_eq!(o.status.code(), Some(2));

    // Nothing listening: a connection error, exit 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let o = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["query", "up", "--addr", &addr])
        .env("TRAWL_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("connecting to {addr}")));
}
