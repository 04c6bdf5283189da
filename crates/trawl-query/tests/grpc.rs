//! The Query service in process on 127.0.0.1:0 over `MemStorage`: answers equal the
//! engine's, errors carry the right codes and error types, large ranges stream.

use std::sync::Arc;

use tokio::sync::oneshot;
use tonic::Code;
use trawl_model::{Labels, STALE_NAN_BITS};
use trawl_promql::{Engine, EngineOptions, MemStorage, QueryResult, Queryable, Value};
use trawl_query::{
    Client, ErrorType, LabelSource, MetadataQuery, QueryOptions, QueryableLabels, serve,
};

struct Server {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(store: Arc<MemStorage>, opts: QueryOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = oneshot::channel::<()>();
        let q: Arc<dyn Queryable> = store;
        let labels = Arc::new(QueryableLabels(q.clone()));
        let task = tokio::spawn(async move {
            serve(listener, q, labels, opts, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            stop: Some(tx),
            task,
        }
    }

    async fn client(&self) -> Client {
        Client::connect(&self.addr).await.unwrap()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap();
    }
}

/// `n` series of `up`-like gauges and a counter, sampled every 15 s over an hour.
fn store(n: usize) -> MemStorage {
    let mut s = MemStorage::new();
    for i in 0..n {
        let job = if i % 2 == 0 { "api" } else { "db" };
        let inst = format!("host-{i}:9100");
        let g = Labels::from_pairs([("__name__", "g"), ("job", job), ("instance", &inst)]);
        let c = Labels::from_pairs([("__name__", "c_total"), ("job", job), ("instance", &inst)]);
        for k in 0..=240i64 {
            let t = k * 15_000;
            s.append(g.clone(), t, ((i as i64 * 7 + k) % 13) as f64 - 6.0);
            s.append(c.clone(), t, (k * (i as i64 + 1)) as f64);
        }
    }
    // A series whose last sample is a staleness marker, and one holding -0.0.
    let st = Labels::from_pairs([("__name__", "stale"), ("job", "x")]);
    s.append(st.clone(), 0, 1.0);
    s.append(st, 30_000, f64::from_bits(STALE_NAN_BITS));
    s.append(Labels::from_pairs([("__name__", "negzero")]), 0, -0.0);
    s
}

/// Compares two results bit-exactly on values.
fn assert_same(got: &QueryResult, want: &QueryResult, q: &str) {
    assert_eq!(got.annotations, want.annotations, "{q}");
    let bits = |v: &Value| -> Vec<(String, i64, u64)> {
        match v {
            Value::Scalar(x) => vec![(String::new(), 0, x.to_bits())],
            Value::String(s) => vec![(s.clone(), 0, 0)],
            Value::Vector(v) => v
                .iter()
                .map(|s| (s.labels.to_string(), s.t, s.v.to_bits()))
                .collect(),
            Value::Matrix(m) => m
                .iter()
                .flat_map(|s| {
                    s.samples
                        .iter()
                        .map(move |p| (s.labels.to_string(), p.t, p.v.to_bits()))
                })
                .collect(),
        }
    };
    assert_eq!(got.value.type_name(), want.value.type_name(), "{q}");
    assert_eq!(bits(&got.value), bits(&want.value), "{q}");
}

const QUERIES: &[&str] = &[
    "g",
    "c_total",
    "sum by (job) (rate(c_total[5m]))",
    "topk(3, g)",
    "g > 0",
    "-g * 0",
    "negzero",
    "stale",
    "1 + 2",
    "time()",
    "\"hello\"",
    "g[1m]",
    "histogram_quantile(0.9, g)",
    "quantile(1.5, g)",
    "count_values(\"v\", g)",
    "absent(nope)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_and_range_answers_equal_the_engine() {
    let s = Arc::new(store(20));
    let srv = Server::start(s.clone(), QueryOptions::default()).await;
    let mut c = srv.client().await;
    let e = Engine::default();
    let mut compared = 0;
    for q in QUERIES {
        for t in [0, 20_000, 1_800_000, 3_600_000] {
            let mut want = e.instant_query(s.as_ref(), q, t).unwrap();
            // The API stamps instant vectors with the evaluation time, as Prometheus does.
            if let Value::Vector(v) = &mut want.value {
                for e in v {
                    e.t = t;
                }
            }
            let got = c.instant(q, Some(t)).await.unwrap();
            assert_same(&got.result, &want, q);
            compared += 1;
        }
        if q.ends_with("[1m]") || q.starts_with('"') {
            continue;
        }
        let want = e.range_query(s.as_ref(), q, 0, 3_600_000, 60_000).unwrap();
        let got = c.range(q, 0, 3_600_000, 60_000).await.unwrap();
        assert_same(&got.result, &want, q);
        compared += 1;
    }
    println!("compared {compared} answers with the engine's");
    // Warnings and infos travel (quantile out of range warns, histogram on a gauge infos).
    let w = c.instant("quantile(1.5, g)", Some(0)).await.unwrap();
    assert!(!w.result.annotations.warnings.is_empty());
    let t = c.instant("time()", Some(42_000)).await.unwrap();
    assert_eq!(t.time_ms, 42_000);
    assert_eq!(t.result.value, Value::Scalar(42.0));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_answers_equal_the_label_source() {
    let s = Arc::new(store(6));
    let q: Arc<dyn Queryable> = s.clone();
    let src = QueryableLabels(q);
    let srv = Server::start(s.clone(), QueryOptions::default()).await;
    let mut c = srv.client().await;
    let all = MetadataQuery::default();

    let names = c.label_names(&all).await.unwrap();
    assert_eq!(
        names.items,
        src.label_names(&[], i64::MIN, i64::MAX).unwrap()
    );
    assert_eq!(names.items, vec!["__name__", "instance", "job"]);
    let jobs = c.label_values("job", &all).await.unwrap();
    assert_eq!(jobs.items, vec!["api", "db", "x"]);
    let names_of = |m: &str| MetadataQuery {
        matchers: vec![m.to_owned()],
        ..Default::default()
    };
    let vals = c
        .label_values("__name__", &names_of(r#"{job="api"}"#))
        .await
        .unwrap();
    assert_eq!(vals.items, vec!["c_total", "g"]);

    let sel = MetadataQuery {
        matchers: vec![r#"g{job="db"}"#.into(), "stale".into()],
        ..Default::default()
    };
    let series = c.series(&sel).await.unwrap();
    let mut want: Vec<Labels> = Vec::new();
    for set in trawl_query::parse_selectors(&sel.matchers).unwrap() {
        want.extend(src.series(&set, i64::MIN, i64::MAX).unwrap());
    }
    want.sort();
    assert_eq!(series.items, want);
    assert_eq!(series.items.len(), 4);
    assert!(series.warnings.is_empty());

    // Limits truncate with Prometheus's warning.
    let lim = MetadataQuery {
        limit: 2,
        ..sel.clone()
    };
    let cut = c.series(&lim).await.unwrap();
    assert_eq!(cut.items, want[..2]);
    assert_eq!(cut.warnings, vec!["results truncated due to limit"]);

    // Time bounds: the stale series has samples only at 0 and 30s.
    let late = MetadataQuery {
        matchers: vec!["stale".into()],
        start_ms: Some(60_000),
        end_ms: Some(120_000),
        limit: 0,
    };
    assert!(c.series(&late).await.unwrap().items.is_empty());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_codes_and_prometheus_error_types() {
    let s = Arc::new(store(2));
    let mut dup = (*s).clone();
    for v in ["a", "b"] {
        dup.append(Labels::from_pairs([("__name__", "l"), ("k", v)]), 0, 1.0);
    }
    let srv = Server::start(Arc::new(dup), QueryOptions::default()).await;
    let mut c = srv.client().await;
    let check = |r: Result<trawl_query::Answer, trawl_query::Error>,
                 code: Code,
                 et: ErrorType,
                 prefix: &str| {
        let e = r.unwrap_err();
        assert_eq!((e.code(), e.error_type()), (code, et), "{e}");
        assert!(e.to_string().starts_with(prefix), "{e}");
    };
    check(
        c.instant("sum(", Some(0)).await,
        Code::InvalidArgument,
        ErrorType::BadData,
        "",
    );
    check(
        c.instant("label_replace(l, \"k\", \"x\", \"k\", \".*\")", Some(0))
            .await,
        Code::InvalidArgument,
        ErrorType::Execution,
        "vector cannot contain metrics with the same labelset",
    );
    check(
        c.range("g", 10, 0, 1).await,
        Code::InvalidArgument,
        ErrorType::BadData,
        "invalid parameter \"end\": end timestamp must not be before start time",
    );
    check(
        c.range("g", 0, 10, 0).await,
        Code::InvalidArgument,
        ErrorType::BadData,
        "invalid parameter \"step\": zero or negative",
    );
    check(
        c.range("g", 0, 11_001_000, 1000).await,
        Code::InvalidArgument,
        ErrorType::BadData,
        "exceeded maximum resolution of 11,000 points per timeseries",
    );
    check(
        c.range("g[5m]", 0, 10, 1).await,
        Code::InvalidArgument,
        ErrorType::BadData,
        "invalid expression type \"range vector\" for range query",
    );
    let e = c.series(&MetadataQuery::default()).await.unwrap_err();
    assert_eq!(e.to_string(), "no match[] parameter provided");
    assert_eq!(e.error_type(), ErrorType::BadData);
    let e = c
        .label_values("", &MetadataQuery::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    srv.stop().await;

    // Limits: too many samples is execution / RESOURCE_EXHAUSTED.
    let tight = QueryOptions {
        engine: EngineOptions {
            max_samples: 10,
            ..EngineOptions::default()
        },
        ..QueryOptions::default()
    };
    let srv = Server::start(s, tight).await;
    let mut c = srv.client().await;
    check(
        c.instant("g[1h]", Some(3_600_000)).await,
        Code::ResourceExhausted,
        ErrorType::Execution,
        "query processing would load too many samples into memory",
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_range_results_stream_in_several_messages() {
    // 400 series x 241 points = 96,400 samples: several default-size batches.
    let s = Arc::new(store(200));
    let srv = Server::start(s.clone(), QueryOptions::default()).await;
    let mut c = srv.client().await;
    let want = Engine::default()
        .range_query(s.as_ref(), "{job=~\"api|db\"}", 0, 3_600_000, 15_000)
        .unwrap();
    let (got, messages) = c
        .range_counted("{job=~\"api|db\"}", 0, 3_600_000, 15_000)
        .await
        .unwrap();
    assert_same(&got.result, &want, "all");
    let Value::Matrix(m) = &got.result.value else {
        panic!("matrix")
    };
    assert_eq!(m.len(), 400);
    let samples: usize = m.iter().map(|s| s.samples.len()).sum();
    let batch = QueryOptions::default().range_batch_samples;
    assert!(
        messages >= samples / (batch + 241),
        "{messages} messages for {samples} samples"
    );
    assert!(messages > 1);
    println!("{samples} samples in {messages} messages");
    // An empty result is still one message saying "matrix".
    let (empty, n) = c.range_counted("nope", 0, 60_000, 15_000).await.unwrap();
    assert_eq!(n, 1);
    assert_eq!(empty.result.value, Value::Matrix(vec![]));
    srv.stop().await;

    // A tiny batch size: one series per message.
    let small = QueryOptions {
        range_batch_samples: 1,
        ..QueryOptions::default()
    };
    let srv = Server::start(s.clone(), small).await;
    let mut c = srv.client().await;
    let (got, n) = c.range_counted("g", 0, 60_000, 15_000).await.unwrap();
    let Value::Matrix(m) = &got.result.value else {
        panic!("matrix")
    };
    assert_eq!(n, m.len());
    srv.stop().await;
}
