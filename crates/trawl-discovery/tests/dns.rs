//! DNS SD end to end against a DNS server the test runs on loopback (UDP, and TCP for
//! truncated answers), built from hickory-proto messages.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use trawl_config::{DnsRecordType, DnsSdConfig};
use trawl_discovery::dns::{self, DnsSd, Nameservers};
use trawl_discovery::{DiscoveryManager, JobGroups, ProviderConfig, TargetGroup};
use trawl_model::PromDuration;

const DEADLINE: Duration = Duration::from_secs(10);

/// What the test server answers for one (name, type).
#[derive(Clone, Debug)]
enum Answer {
    Records(Vec<RData>),
    NxDomain,
    ServFail,
    /// Over UDP: an empty answer with the TC bit; over TCP: these records.
    Truncated(Vec<RData>),
}

type Zone = Arc<Mutex<HashMap<(String, RecordType), Answer>>>;

/// A DNS server on 127.0.0.1 (UDP and TCP on the same port). Names not in the zone are
/// NXDOMAIN. Stops when dropped.
struct TestServer {
    addr: SocketAddr,
    zone: Zone,
    queries: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl TestServer {
    async fn start() -> Self {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = udp.local_addr().expect("udp addr");
        let tcp = TcpListener::bind(addr)
            .await
            .expect("bind tcp on the same port");
        let zone: Zone = Arc::default();
        let queries: Arc<Mutex<Vec<String>>> = Arc::default();
        let (z, q) = (Arc::clone(&zone), Arc::clone(&queries));
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                if let Some(resp) = respond(&z, &q, &buf[..n], false) {
                    let _ = udp.send_to(&resp, from).await;
                }
            }
        });
        let (z, q) = (Arc::clone(&zone), Arc::clone(&queries));
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = tcp.accept().await else {
                    return;
                };
                let (z, q) = (Arc::clone(&z), Arc::clone(&q));
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 2];
                        if conn.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if conn.read_exact(&mut msg).await.is_err() {
                            return;
                        }
                        let Some(resp) = respond(&z, &q, &msg, true) else {
                            return;
                        };
                        let Ok(n) = u16::try_from(resp.len()) else {
                            return;
                        };
                        if conn.write_all(&n.to_be_bytes()).await.is_err()
                            || conn.write_all(&resp).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        TestServer {
            addr,
            zone,
            queries,
            tasks: vec![udp_task, tcp_task],
        }
    }

    fn set(&self, name: &str, rtype: RecordType, answer: Answer) {
        self.zone
            .lock()
            .expect("zone")
            .insert((name.to_ascii_lowercase(), rtype), answer);
    }

    fn queries(&self) -> Vec<String> {
        self.queries.lock().expect("queries").clone()
    }

    fn nameservers(&self, search: &[&str], ndots: usize) -> Nameservers {
        Nameservers::Explicit {
            servers: vec![self.addr],
            search: search.iter().map(|s| s.to_string()).collect(),
            ndots,
        }
    }
}

fn respond(zone: &Zone, log: &Mutex<Vec<String>>, req: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let req = Message::from_vec(req).ok()?;
    let q = req.queries.first()?.clone();
    let qname = q.name().to_ascii().to_ascii_lowercase();
    log.lock().ok()?.push(format!(
        "{qname} {}{}",
        q.query_type(),
        if tcp { " tcp" } else { "" }
    ));
    let answer = zone
        .lock()
        .ok()?
        .get(&(qname, q.query_type()))
        .cloned()
        .unwrap_or(Answer::NxDomain);
    let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(q.clone());
    let records = match answer {
        Answer::Records(r) => r,
        Answer::Truncated(r) if tcp => r,
        Answer::Truncated(_) => {
            resp.metadata.truncation = true;
            Vec::new()
        }
        Answer::NxDomain => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            Vec::new()
        }
        Answer::ServFail => {
            resp.metadata.response_code = ResponseCode::ServFail;
            Vec::new()
        }
    };
    for r in records {
        resp.add_answer(Record::from_rdata(q.name().clone(), 30, r));
    }
    resp.to_vec().ok()
}

fn name(s: &str) -> Name {
    Name::from_str(s).expect("name")
}

fn srv(port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(0, 0, port, name(target)))
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A::new(ip[0], ip[1], ip[2], ip[3]))
}

fn cfg(names: &[&str], kind: DnsRecordType, port: u16, every: Duration) -> DnsSdConfig {
    DnsSdConfig {
        names: names.iter().map(|s| s.to_string()).collect(),
        refresh_interval: PromDuration::from_millis(every.as_millis() as u64),
        kind,
        port,
    }
}

/// Every target of the groups as (source, sorted labels).
fn flat(groups: &[TargetGroup]) -> Vec<(String, BTreeMap<String, String>)> {
    let mut v: Vec<_> = groups
        .iter()
        .flat_map(|g| g.targets.iter().map(|t| (g.source.clone(), t.to_map())))
        .collect();
    v.sort();
    v
}

fn addrs(groups: &[TargetGroup]) -> Vec<String> {
    let mut v: Vec<String> = flat(groups)
        .into_iter()
        .map(|(_, l)| l.get("__address__").cloned().unwrap_or_default())
        .collect();
    v.sort();
    v
}

async fn wait_for<T: std::fmt::Debug>(
    rx: &mut mpsc::Receiver<T>,
    what: &str,
    mut pred: impl FnMut(&T) -> bool,
) -> T {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Some(v)) if pred(&v) => return v,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("channel closed while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn srv_lookup_gives_one_group_per_name_with_prometheus_labels() {
    let srv_server = TestServer::start().await;
    srv_server.set(
        "_web._tcp.example.",
        RecordType::SRV,
        Answer::Records(vec![srv(8080, "web1.example."), srv(8081, "web2.example.")]),
    );
    srv_server.set(
        "_db._tcp.example.",
        RecordType::SRV,
        Answer::Records(vec![srv(5432, "db.example.")]),
    );
    let sd = DnsSd {
        config: cfg(
            &["_web._tcp.example.", "_db._tcp.example."],
            DnsRecordType::Srv,
            0,
            Duration::from_secs(30),
        ),
        nameservers: srv_server.nameservers(&[], 1),
    };
    let groups = dns::refresh(&sd).await;
    let sources: Vec<&str> = groups.iter().map(|g| g.source.as_str()).collect();
    assert_eq!(sources, ["_web._tcp.example.", "_db._tcp.example."]);
    assert_eq!(
        flat(&groups),
        [
            (
                "_db._tcp.example.".to_owned(),
                labels(&[
                    ("__address__", "db.example:5432"),
                    ("__meta_dns_name", "_db._tcp.example."),
                    ("__meta_dns_srv_record_port", "5432"),
                    ("__meta_dns_srv_record_target", "db.example."),
                ])
            ),
            (
                "_web._tcp.example.".to_owned(),
                labels(&[
                    ("__address__", "web1.example:8080"),
                    ("__meta_dns_name", "_web._tcp.example."),
                    ("__meta_dns_srv_record_port", "8080"),
                    ("__meta_dns_srv_record_target", "web1.example."),
                ])
            ),
            (
                "_web._tcp.example.".to_owned(),
                labels(&[
                    ("__address__", "web2.example:8081"),
                    ("__meta_dns_name", "_web._tcp.example."),
                    ("__meta_dns_srv_record_port", "8081"),
                    ("__meta_dns_srv_record_target", "web2.example."),
                ])
            ),
        ]
    );
    assert!(
        srv_server.queries().iter().all(|q| q.ends_with(" SRV")),
        "only SRV was asked: {:?}",
        srv_server.queries()
    );
}

#[tokio::test]
async fn a_aaaa_mx_ns_use_the_configured_port() {
    let s = TestServer::start().await;
    s.set(
        "hosts.example.",
        RecordType::A,
        Answer::Records(vec![
            RData::CNAME(CNAME(name("real.example."))),
            a([127, 0, 0, 7]),
            a([127, 0, 0, 8]),
        ]),
    );
    s.set(
        "hosts.example.",
        RecordType::AAAA,
        Answer::Records(vec![RData::AAAA(AAAA::new(0xfd00, 0, 0, 0, 0, 0, 0, 2))]),
    );
    s.set(
        "example.",
        RecordType::MX,
        Answer::Records(vec![RData::MX(MX::new(10, name("mail.example.")))]),
    );
    s.set(
        "example.",
        RecordType::NS,
        Answer::Records(vec![RData::NS(NS(name("ns1.example.")))]),
    );
    let every = Duration::from_secs(30);
    let run = |names: &[&str], kind, port| DnsSd {
        config: cfg(names, kind, port, every),
        nameservers: s.nameservers(&[], 1),
    };

    let g = dns::refresh(&run(&["hosts.example."], DnsRecordType::A, 9100)).await;
    assert_eq!(addrs(&g), ["127.0.0.7:9100", "127.0.0.8:9100"]);
    assert_eq!(
        flat(&g)[0].1,
        labels(&[
            ("__address__", "127.0.0.7:9100"),
            ("__meta_dns_name", "hosts.example.")
        ])
    );

    let g = dns::refresh(&run(&["hosts.example."], DnsRecordType::Aaaa, 9100)).await;
    assert_eq!(addrs(&g), ["[fd00::2]:9100"]);

    let g = dns::refresh(&run(&["example."], DnsRecordType::Mx, 25)).await;
    assert_eq!(
        flat(&g)[0].1,
        labels(&[
            ("__address__", "mail.example:25"),
            ("__meta_dns_mx_record_target", "mail.example."),
            ("__meta_dns_name", "example.")
        ])
    );

    let g = dns::refresh(&run(&["example."], DnsRecordType::Ns, 53)).await;
    assert_eq!(
        flat(&g)[0].1,
        labels(&[
            ("__address__", "ns1.example:53"),
            ("__meta_dns_name", "example."),
            ("__meta_dns_ns_record_target", "ns1.example.")
        ])
    );
}

#[tokio::test]
async fn truncated_udp_answers_are_asked_again_over_tcp() {
    let s = TestServer::start().await;
    let many: Vec<RData> = (0..200u16)
        .map(|i| {
            srv(
                10_000 + i,
                &format!("node-{i}.a-rather-long-domain-name.example."),
            )
        })
        .collect();
    s.set(
        "_big._tcp.example.",
        RecordType::SRV,
        Answer::Truncated(many),
    );
    let sd = DnsSd {
        config: cfg(
            &["_big._tcp.example."],
            DnsRecordType::Srv,
            0,
            Duration::from_secs(30),
        ),
        nameservers: s.nameservers(&[], 1),
    };
    let g = dns::refresh(&sd).await;
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].targets.len(), 200);
    assert!(
        s.queries().iter().any(|q| q.ends_with(" tcp")),
        "{:?}",
        s.queries()
    );
}

#[tokio::test]
async fn search_list_outcomes_are_prometheus_ones() {
    let s = TestServer::start().await;
    s.set(
        "svc.b.example.",
        RecordType::A,
        Answer::Records(vec![a([127, 0, 0, 2])]),
    );
    let every = Duration::from_secs(30);
    let sd = |names: &[&str], search: &[&str]| DnsSd {
        config: cfg(names, DnsRecordType::A, 80, every),
        nameservers: s.nameservers(search, 1),
    };

    // "svc" has no dot: the search domains come first; a.example is NXDOMAIN, then
    // b.example answers.
    let g = dns::refresh(&sd(&["svc"], &["a.example", "b.example"])).await;
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].source, "svc", "the source is the name as configured");
    assert_eq!(g[0].targets[0].get("__meta_dns_name"), Some("svc"));
    assert_eq!(addrs(&g), ["127.0.0.2:80"]);
    let asked: Vec<String> = s.queries();
    assert_eq!(asked, ["svc.a.example. A", "svc.b.example. A"]);

    // Every candidate NXDOMAIN: a group with no targets (the name's targets go away).
    let failures = dns::lookup_failures_total();
    let g = dns::refresh(&sd(&["nothing"], &["a.example"])).await;
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].source, "nothing");
    assert!(g[0].targets.is_empty());

    // One candidate failing (SERVFAIL) and none answering: the lookup fails, nothing is
    // sent for the name and the failure is counted.
    s.set("nothing.a.example.", RecordType::A, Answer::ServFail);
    let g = dns::refresh(&sd(&["nothing"], &["a.example"])).await;
    assert!(g.is_empty(), "{g:?}");
    assert!(dns::lookup_failures_total() > failures);

    // A failing candidate followed by an answering one: the answer wins.
    s.set("svc.a.example.", RecordType::A, Answer::ServFail);
    let g = dns::refresh(&sd(&["svc"], &["a.example", "b.example"])).await;
    assert_eq!(addrs(&g), ["127.0.0.2:80"]);

    // NOERROR with no records of the type ends the search with no targets.
    s.set("svc.a.example.", RecordType::A, Answer::Records(Vec::new()));
    let g = dns::refresh(&sd(&["svc"], &["a.example", "b.example"])).await;
    assert_eq!(g.len(), 1);
    assert!(g[0].targets.is_empty());
}

#[tokio::test]
async fn manager_keeps_the_previous_targets_of_a_failing_name() {
    let s = TestServer::start().await;
    s.set(
        "one.example.",
        RecordType::A,
        Answer::Records(vec![a([127, 0, 0, 1])]),
    );
    s.set(
        "two.example.",
        RecordType::A,
        Answer::Records(vec![a([127, 0, 0, 2])]),
    );
    let (tx, mut rx) = mpsc::channel::<JobGroups>(16);
    let mut m = DiscoveryManager::new(Duration::from_millis(10), tx);
    let sd = DnsSd {
        config: cfg(
            &["one.example.", "two.example."],
            DnsRecordType::A,
            9100,
            Duration::from_millis(50),
        ),
        nameservers: s.nameservers(&[], 1),
    };
    m.apply(BTreeMap::from([(
        "dns".to_owned(),
        vec![ProviderConfig::Dns(sd)],
    )]));
    let job = |u: &JobGroups| u.get("dns").map(|g| addrs(g)).unwrap_or_default();

    wait_for(&mut rx, "both names", |u| {
        job(u) == ["127.0.0.1:9100", "127.0.0.2:9100"]
    })
    .await;

    // two.example fails while one.example changes: two.example's targets stay.
    s.set("two.example.", RecordType::A, Answer::ServFail);
    s.set(
        "one.example.",
        RecordType::A,
        Answer::Records(vec![a([127, 0, 0, 1]), a([127, 0, 0, 3])]),
    );
    wait_for(
        &mut rx,
        "one.example's new target with two.example kept",
        |u| job(u) == ["127.0.0.1:9100", "127.0.0.2:9100", "127.0.0.3:9100"],
    )
    .await;

    // two.example no longer exists: its targets go.
    s.set("two.example.", RecordType::A, Answer::NxDomain);
    wait_for(&mut rx, "two.example gone", |u| {
        job(u) == ["127.0.0.1:9100", "127.0.0.3:9100"]
    })
    .await;
}

#[test]
fn dns_sd_configs_become_dns_providers_on_resolv_conf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("prometheus.yml");
    let yaml = "scrape_configs:\n  - job_name: d\n    dns_sd_configs:\n      - names: [_x._tcp.example.]\n      - names: [a.example]\n        type: A\n        port: 9100\n";
    std::fs::write(&path, yaml).expect("write");
    let c = trawl_config::load_file(&path).expect("config");
    let p = trawl_discovery::manager::providers_of(&c.scrape_configs[0]);
    assert_eq!(p.len(), 2);
    let ProviderConfig::Dns(d) = &p[1] else {
        panic!("not a DNS provider: {:?}", p[1]);
    };
    assert_eq!(d.nameservers, Nameservers::System);
    assert_eq!(d.config.kind, DnsRecordType::A);
    assert_eq!(d.config.port, 9100);
    let ProviderConfig::Dns(d) = &p[0] else {
        panic!("not a DNS provider: {:?}", p[0]);
    };
    assert_eq!(d.config.kind, DnsRecordType::Srv);
    assert_eq!(d.config.refresh_interval.as_std(), Duration::from_secs(30));
}
