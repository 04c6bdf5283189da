//! DNS service discovery (`dns_sd_configs`), with Prometheus's semantics.
//!
//! Every `refresh_interval` each configured name is looked up (all names concurrently)
//! and becomes one [`TargetGroup`] whose `source` is the name as configured:
//!
//! - SRV (default): `__address__` is `target:port` from the record, the target's final dot
//!   trimmed; `__meta_dns_srv_record_target` (untrimmed) and `__meta_dns_srv_record_port`.
//! - A / AAAA: `ip:port` with the configured port (IPv6 in brackets).
//! - MX / NS: the exchange / name server (final dot trimmed) with the configured port, and
//!   `__meta_dns_mx_record_target` / `__meta_dns_ns_record_target` (untrimmed).
//! - Every target has `__meta_dns_name`. Labels with an empty value are left out, as
//!   Prometheus's label population drops them.
//! - CNAME records in an answer are skipped; records of any other unexpected type are
//!   logged and skipped.
//!
//! Names are resolved as Prometheus does (not as a stub resolver would): the search list
//! and `ndots` of `/etc/resolv.conf` (re-read on every refresh) give the candidate names;
//! the first candidate that a server answers with NOERROR wins (even with no records);
//! if every candidate is NXDOMAIN the name has no targets (an empty group, which removes
//! its previous targets); if any candidate failed otherwise (SERVFAIL, REFUSED, timeout,
//! …) the lookup fails, is counted and logged, and no group is sent for the name, so its
//! previous targets stay in place.
//!
//! The mapping from records to groups ([`group_for`]) and the candidate names
//! ([`candidate_names`]) are pure; [`run`] is the refresh loop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::sync::mpsc;
use trawl_config::{DnsRecordType, DnsSdConfig};
use trawl_model::{ADDRESS_LABEL, Labels};

use crate::{DiscoveryError, TargetGroup};

/// `__meta_dns_name`: the configured name that produced the target.
pub const NAME_LABEL: &str = "__meta_dns_name";
/// `__meta_dns_srv_record_target`: the SRV target as received (final dot kept).
pub const SRV_TARGET_LABEL: &str = "__meta_dns_srv_record_target";
/// `__meta_dns_srv_record_port`: the SRV port.
pub const SRV_PORT_LABEL: &str = "__meta_dns_srv_record_port";
/// `__meta_dns_mx_record_target`: the MX exchange as received.
pub const MX_TARGET_LABEL: &str = "__meta_dns_mx_record_target";
/// `__meta_dns_ns_record_target`: the NS name server as received.
pub const NS_TARGET_LABEL: &str = "__meta_dns_ns_record_target";

const RESOLV_CONF: &str = "/etc/resolv.conf";

static LOOKUPS: AtomicU64 = AtomicU64::new(0);
static LOOKUP_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Lookups made by every DNS provider of the process (Prometheus's
/// `prometheus_sd_dns_lookups_total`).
pub fn lookups_total() -> u64 {
    LOOKUPS.load(Ordering::Relaxed)
}

/// Lookups that failed (Prometheus's `prometheus_sd_dns_lookup_failures_total`).
pub fn lookup_failures_total() -> u64 {
    LOOKUP_FAILURES.load(Ordering::Relaxed)
}

/// Which DNS servers a provider asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nameservers {
    /// The servers, search list and `ndots` of `/etc/resolv.conf`, re-read on every
    /// refresh (as Prometheus does).
    System,
    /// These servers, in order (UDP, TCP when truncated), with this search list and
    /// `ndots`. For tests and embedders.
    Explicit {
        /// Server addresses (any port).
        servers: Vec<SocketAddr>,
        /// Search domains, as resolv.conf's `search`.
        search: Vec<String>,
        /// resolv.conf's `ndots` (1 there by default).
        ndots: usize,
    },
}

/// One `dns_sd_configs` entry and where its lookups go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSd {
    /// The entry from the configuration file.
    pub config: DnsSdConfig,
    /// Where lookups go.
    pub nameservers: Nameservers,
}

impl DnsSd {
    /// The entry resolved through `/etc/resolv.conf`, as in production.
    pub fn system(config: DnsSdConfig) -> Self {
        DnsSd {
            config,
            nameservers: Nameservers::System,
        }
    }
}

/// The DNS record type queried for a configured type.
pub fn record_type(kind: DnsRecordType) -> RecordType {
    match kind {
        DnsRecordType::Srv => RecordType::SRV,
        DnsRecordType::A => RecordType::A,
        DnsRecordType::Aaaa => RecordType::AAAA,
        DnsRecordType::Mx => RecordType::MX,
        DnsRecordType::Ns => RecordType::NS,
    }
}

/// `host:port`, with the host in brackets when it contains a colon (an IPv6 address).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The group for `name` from the answer records of its lookup. `port` is used for every
/// record type except SRV, which carries its own.
pub fn group_for(name: &str, records: &[Record], port: u16) -> TargetGroup {
    let mut targets = Vec::with_capacity(records.len());
    for r in records {
        // (label, value) pairs besides `__meta_dns_name`.
        let (address, meta): (String, Option<(&str, String)>) = match &r.data {
            RData::SRV(srv) => {
                let raw = srv.target.to_ascii();
                let addr = join_host_port(raw.trim_end_matches('.'), srv.port);
                targets.push(Labels::from_pairs([
                    (ADDRESS_LABEL, addr.as_str()),
                    (NAME_LABEL, name),
                    (SRV_TARGET_LABEL, raw.as_str()),
                    (SRV_PORT_LABEL, srv.port.to_string().as_str()),
                ]));
                continue;
            }
            RData::MX(mx) => {
                let raw = mx.exchange.to_ascii();
                (
                    join_host_port(raw.trim_end_matches('.'), port),
                    Some((MX_TARGET_LABEL, raw)),
                )
            }
            RData::NS(ns) => {
                let raw = ns.0.to_ascii();
                (
                    join_host_port(raw.trim_end_matches('.'), port),
                    Some((NS_TARGET_LABEL, raw)),
                )
            }
            RData::A(a) => (join_host_port(&a.0.to_string(), port), None),
            RData::AAAA(a) => (join_host_port(&a.0.to_string(), port), None),
            // An A or AAAA answer may start with the CNAME chain that led to it.
            RData::CNAME(_) => continue,
            other => {
                tracing::warn!(name, record = ?other, "DNS SD: invalid record");
                continue;
            }
        };
        let mut pairs = vec![(ADDRESS_LABEL, address.as_str()), (NAME_LABEL, name)];
        if let Some((label, value)) = &meta
            && !value.is_empty()
        {
            pairs.push((label, value.as_str()));
        }
        targets.push(Labels::from_pairs(pairs));
    }
    TargetGroup {
        source: name.to_owned(),
        targets,
        labels: Labels::empty(),
    }
}

/// The fully qualified names tried for `name`, in order, as Prometheus builds them from
/// resolv.conf: a name with a final dot is tried alone; a name with at least `ndots`
/// dots is tried as is before the search domains, otherwise after them.
pub fn candidate_names(name: &str, search: &[String], ndots: usize) -> Vec<String> {
    if name.ends_with('.') {
        return vec![name.to_owned()];
    }
    let absolute = format!("{name}.");
    let dots = name.matches('.').count();
    let mut out = Vec::with_capacity(search.len() + 1);
    let first = dots >= ndots;
    if first {
        out.push(absolute.clone());
    }
    for s in search {
        let s = s.trim_end_matches('.');
        out.push(format!("{name}.{s}."));
    }
    if !first {
        out.push(absolute);
    }
    out
}

/// A resolver for one refresh, with the search list and `ndots` that go with it.
struct Client {
    resolver: TokioResolver,
    search: Vec<String>,
    ndots: usize,
}

fn client(ns: &Nameservers) -> Result<Client, DiscoveryError> {
    let (servers, search, ndots, mut opts) = match ns {
        Nameservers::System => {
            let text = std::fs::read(RESOLV_CONF)
                .map_err(|e| DiscoveryError::Io(format!("could not load resolv.conf: {e}")))?;
            let (cfg, opts) = hickory_resolver::system_conf::parse_resolv_conf(text)
                .map_err(|e| DiscoveryError::Io(format!("could not load resolv.conf: {e}")))?;
            let search = cfg.search().iter().map(|n| n.to_ascii()).collect();
            let ndots = opts.ndots;
            (cfg.name_servers().to_vec(), search, ndots, opts)
        }
        Nameservers::Explicit {
            servers,
            search,
            ndots,
        } => {
            let servers = servers
                .iter()
                .map(|a| {
                    let conns = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                        .into_iter()
                        .map(|mut c| {
                            c.port = a.port();
                            c
                        })
                        .collect();
                    NameServerConfig::new(a.ip(), true, conns)
                })
                .collect();
            (servers, search.clone(), *ndots, ResolverOpts::default())
        }
    };
    // Prometheus asks the servers directly: no hosts file, and each refresh is a new
    // resolver, so nothing is served from a cache.
    opts.use_hosts_file = ResolveHosts::Never;
    let cfg = ResolverConfig::from_parts(None, Vec::new(), servers);
    let resolver = TokioResolver::builder_with_config(cfg, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| DiscoveryError::Io(format!("DNS resolver: {e}")))?;
    Ok(Client {
        resolver,
        search,
        ndots,
    })
}

/// Looks `name` up with Prometheus's outcomes: the answer records of the first
/// candidate answered with NOERROR; no records when every candidate is NXDOMAIN; an
/// error when some candidate failed and none succeeded.
async fn lookup(
    client: &Client,
    name: &str,
    rtype: RecordType,
) -> Result<Vec<Record>, DiscoveryError> {
    let mut all_valid = true;
    for candidate in candidate_names(name, &client.search, client.ndots) {
        match client.resolver.lookup(candidate.as_str(), rtype).await {
            Ok(l) => return Ok(l.answers().to_vec()),
            Err(e) => match no_records_code(&e) {
                // The name exists but has no records of this type.
                Some(ResponseCode::NoError) => return Ok(Vec::new()),
                Some(ResponseCode::NXDomain) => {}
                _ => {
                    tracing::warn!(name = %candidate, error = %e, "DNS resolution failed");
                    all_valid = false;
                }
            },
        }
    }
    if all_valid {
        Ok(Vec::new())
    } else {
        Err(DiscoveryError::Io(format!(
            "could not resolve {name:?}: all servers responded with errors to at least one search domain"
        )))
    }
}

fn no_records_code(e: &NetError) -> Option<ResponseCode> {
    match e {
        NetError::Dns(hickory_resolver::net::DnsError::NoRecordsFound(nr)) => {
            Some(nr.response_code)
        }
        _ => None,
    }
}

/// One refresh: a group for every name whose lookup did not fail, in configuration
/// order. Failed lookups are counted and logged and have no group.
pub async fn refresh(sd: &DnsSd) -> Vec<TargetGroup> {
    let names = &sd.config.names;
    let client = match client(&sd.nameservers) {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => {
            LOOKUPS.fetch_add(names.len() as u64, Ordering::Relaxed);
            LOOKUP_FAILURES.fetch_add(names.len() as u64, Ordering::Relaxed);
            tracing::error!(error = %e, "Error refreshing DNS targets");
            return Vec::new();
        }
    };
    let rtype = record_type(sd.config.kind);
    let port = sd.config.port;
    let mut set = tokio::task::JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let client = std::sync::Arc::clone(&client);
        let name = name.clone();
        set.spawn(async move {
            let r = lookup(&client, &name, rtype).await;
            LOOKUPS.fetch_add(1, Ordering::Relaxed);
            match r {
                Ok(records) => Some((i, group_for(&name, &records, port))),
                Err(e) => {
                    LOOKUP_FAILURES.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(name = %name, error = %e, "Error refreshing DNS targets");
                    None
                }
            }
        });
    }
    let mut out = Vec::with_capacity(names.len());
    while let Some(r) = set.join_next().await {
        if let Ok(Some(g)) = r {
            out.push(g);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, g)| g).collect()
}

/// Refreshes now and then every `refresh_interval`, sending each refresh's groups until
/// the receiver is gone. A refresh that yields the same groups as the previous one is
/// not sent again.
pub async fn run(sd: DnsSd, tx: mpsc::Sender<Vec<TargetGroup>>) {
    let every = sd
        .config
        .refresh_interval
        .as_std()
        .max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Vec<TargetGroup>> = None;
    loop {
        ticker.tick().await;
        let groups = refresh(&sd).await;
        if last.as_ref() == Some(&groups) {
            continue;
        }
        if tx.send(groups.clone()).await.is_err() {
            return;
        }
        last = Some(groups);
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_resolver::proto::rr::Name;
    use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SRV, TXT};

    use super::*;

    fn rec(data: RData) -> Record {
        Record::from_rdata(Name::from_str("q.example.").expect("name"), 60, data)
    }

    fn name(s: &str) -> Name {
        Name::from_str(s).expect("name")
    }

    fn pairs(l: &Labels) -> Vec<(String, String)> {
        l.iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect()
    }

    #[test]
    fn srv_records_carry_their_port_and_trim_the_final_dot() {
        let g = group_for(
            "_http._tcp.example.",
            &[
                rec(RData::SRV(SRV::new(0, 0, 9100, name("node1.example.")))),
                rec(RData::SRV(SRV::new(1, 5, 80, name("node2.example.")))),
            ],
            0,
        );
        assert_eq!(g.source, "_http._tcp.example.");
        assert!(g.labels.is_empty());
        assert_eq!(g.targets.len(), 2);
        assert_eq!(g.targets[0].get(ADDRESS_LABEL), Some("node1.example:9100"));
        assert_eq!(
            g.targets[0].get(SRV_TARGET_LABEL),
            Some("node1.example."),
            "the meta label keeps the final dot"
        );
        assert_eq!(g.targets[0].get(SRV_PORT_LABEL), Some("9100"));
        assert_eq!(g.targets[0].get(NAME_LABEL), Some("_http._tcp.example."));
        assert_eq!(g.targets[1].get(ADDRESS_LABEL), Some("node2.example:80"));
        assert_eq!(g.targets[0].get(MX_TARGET_LABEL), None);
    }

    #[test]
    fn a_and_aaaa_use_the_configured_port_and_bracket_ipv6() {
        let g = group_for(
            "web",
            &[
                rec(RData::CNAME(CNAME(name("real.example.")))),
                rec(RData::A(A::new(192, 0, 2, 7))),
                rec(RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
            ],
            8080,
        );
        let addrs: Vec<_> = g
            .targets
            .iter()
            .map(|t| t.get_or_empty(ADDRESS_LABEL).to_owned())
            .collect();
        assert_eq!(addrs, ["192.0.2.7:8080", "[2001:db8::1]:8080"]);
        assert_eq!(
            pairs(&g.targets[0]),
            [
                ("__address__".to_owned(), "192.0.2.7:8080".to_owned()),
                ("__meta_dns_name".to_owned(), "web".to_owned()),
            ],
            "no empty SRV/MX/NS labels"
        );
    }

    #[test]
    fn mx_and_ns_targets() {
        let g = group_for(
            "example.com",
            &[
                rec(RData::MX(MX::new(10, name("mail.example.com.")))),
                rec(RData::NS(NS(name("ns1.example.com.")))),
                rec(RData::TXT(TXT::new(vec!["ignored".into()]))),
            ],
            25,
        );
        assert_eq!(g.targets.len(), 2, "the TXT record is skipped");
        assert_eq!(g.targets[0].get(ADDRESS_LABEL), Some("mail.example.com:25"));
        assert_eq!(g.targets[0].get(MX_TARGET_LABEL), Some("mail.example.com."));
        assert_eq!(g.targets[1].get(ADDRESS_LABEL), Some("ns1.example.com:25"));
        assert_eq!(g.targets[1].get(NS_TARGET_LABEL), Some("ns1.example.com."));
        assert_eq!(g.targets[1].get(MX_TARGET_LABEL), None);
    }

    #[test]
    fn no_records_is_an_empty_group_for_the_name() {
        let g = group_for("gone.example", &[], 80);
        assert_eq!(g.source, "gone.example");
        assert!(g.targets.is_empty());
    }

    #[test]
    fn candidates_follow_ndots_and_the_search_list() {
        let search = vec!["a.example".to_owned(), "b.example.".to_owned()];
        assert_eq!(candidate_names("x.", &search, 1), ["x."]);
        assert_eq!(
            candidate_names("x", &search, 1),
            ["x.a.example.", "x.b.example.", "x."],
            "too few dots: search domains first"
        );
        assert_eq!(
            candidate_names("x.y", &search, 1),
            ["x.y.", "x.y.a.example.", "x.y.b.example."],
            "enough dots: as is first"
        );
        assert_eq!(
            candidate_names("x.y", &search, 2),
            ["x.y.a.example.", "x.y.b.example.", "x.y."]
        );
        assert_eq!(candidate_names("x", &[], 1), ["x."]);
    }

    #[test]
    fn record_types() {
        assert_eq!(record_type(DnsRecordType::Srv), RecordType::SRV);
        assert_eq!(record_type(DnsRecordType::A), RecordType::A);
        assert_eq!(record_type(DnsRecordType::Aaaa), RecordType::AAAA);
        assert_eq!(record_type(DnsRecordType::Mx), RecordType::MX);
        assert_eq!(record_type(DnsRecordType::Ns), RecordType::NS);
        assert_eq!(join_host_port("::1", 9), "[::1]:9");
    }
}
