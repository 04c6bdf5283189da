//! The tower layers every role's gRPC server runs behind, by the flags
//! `--grpc.max-concurrent-requests` and `--grpc.request-timeout`.
//!
//! - A concurrency limit shared by all connections of the server, with load shedding: a
//!   call arriving while the limit is reached is answered at once with
//!   `RESOURCE_EXHAUSTED` instead of queueing behind the others, so a saturated process
//!   tells its callers to go elsewhere (a querier marks the shard failed, a worker retries
//!   its coordinator) rather than piling up work it cannot finish.
//! - A per-call timeout (`DEADLINE_EXCEEDED` once reached, sooner when the caller's
//!   `grpc-timeout` is shorter).
//!
//! Both apply to a call until its response *headers*: tonic's timeout and tower's limit
//! wrap the future that yields the `Response`, not its body. A server-streaming call such
//! as `WatchAssignment` returns its stream at once, so it neither holds a slot nor is cut
//! by the timeout while it streams; a unary call holds its slot for its whole duration.

use tonic::transport::Server;
use tower::layer::util::{Identity, Stack};
use tower::limit::GlobalConcurrencyLimitLayer;
use trawl_model::PromDuration;

/// Default of `--grpc.max-concurrent-requests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 256;
/// Default of `--grpc.request-timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: &str = "2m";

fn parse_duration(s: &str) -> Result<PromDuration, String> {
    let d = PromDuration::parse(s).map_err(|e| e.to_string())?;
    if d.as_std().is_zero() {
        return Err("must be positive".into());
    }
    Ok(d)
}

fn parse_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The gRPC server's limits, to `#[command(flatten)]` into a role's arguments.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct GrpcLimits {
    /// Calls the gRPC server runs at once across all connections; more are refused with
    /// RESOURCE_EXHAUSTED. Streaming calls count only until their stream starts.
    #[arg(
        long = "grpc.max-concurrent-requests",
        default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS,
        value_parser = parse_limit
    )]
    pub max_concurrent_requests: usize,
    /// Longest a gRPC call may take until its response starts (streams are not cut once
    /// started); a caller's shorter grpc-timeout wins.
    #[arg(
        long = "grpc.request-timeout",
        default_value = DEFAULT_REQUEST_TIMEOUT,
        value_parser = parse_duration
    )]
    pub request_timeout: PromDuration,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            request_timeout: PromDuration::from_secs(120),
        }
    }
}

/// The server builder type [`GrpcLimits::server`] returns.
pub type LimitedServer = Server<Stack<GlobalConcurrencyLimitLayer, Identity>>;

impl GrpcLimits {
    /// Flags as `/api/v1/status/flags` shows them.
    pub fn flags(&self) -> [(&'static str, String); 2] {
        [
            (
                "grpc.max-concurrent-requests",
                self.max_concurrent_requests.to_string(),
            ),
            ("grpc.request-timeout", self.request_timeout.to_string()),
        ]
    }

    /// A tonic server builder with the limits applied; add TLS and services to it as to
    /// `Server::builder()`.
    pub fn server(&self) -> LimitedServer {
        Server::builder()
            .timeout(self.request_timeout.as_std())
            // Sheds when the global limit below is reached: tonic's load-shed layer sits
            // outside the added layers and turns `Overloaded` into RESOURCE_EXHAUSTED.
            .load_shed(true)
            .layer(GlobalConcurrencyLimitLayer::new(
                self.max_concurrent_requests.max(1),
            ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use tokio::sync::Semaphore;
    use tonic::{Code, Request, Response, Status};

    use super::*;
    use crate::v1::RaftMessage;
    use crate::v1::raft_client::RaftClient;
    use crate::v1::raft_server::{Raft, RaftServer};

    /// `AppendEntries` waits for a permit of `release` (held open until the test says);
    /// `Vote` answers at once.
    #[derive(Debug, Clone)]
    struct Held {
        entered: Arc<AtomicUsize>,
        release: Arc<Semaphore>,
    }

    #[tonic::async_trait]
    impl Raft for Held {
        async fn append_entries(
            &self,
            _: Request<RaftMessage>,
        ) -> Result<Response<RaftMessage>, Status> {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let permit = self.release.acquire().await;
            drop(permit);
            Ok(Response::new(RaftMessage::default()))
        }
        async fn vote(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
            Ok(Response::new(RaftMessage::default()))
        }
        async fn install_snapshot(
            &self,
            _: Request<RaftMessage>,
        ) -> Result<Response<RaftMessage>, Status> {
            Ok(Response::new(RaftMessage::default()))
        }
    }

    async fn start(limits: GrpcLimits) -> (Held, RaftClient<tonic::transport::Channel>) {
        let held = Held {
            entered: Arc::new(AtomicUsize::new(0)),
            release: Arc::new(Semaphore::new(0)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let svc = RaftServer::new(held.clone());
        tokio::spawn(async move {
            let _ = limits
                .server()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        let client = RaftClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        (held, client)
    }

    async fn wait_entered(held: &Held, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while held.entered.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "the held call never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_saturated_server_sheds_and_recovers() {
        let limits = GrpcLimits {
            max_concurrent_requests: 1,
            ..GrpcLimits::default()
        };
        let (held, client) = start(limits).await;
        let mut c1 = client.clone();
        let first = tokio::spawn(async move { c1.append_entries(RaftMessage::default()).await });
        wait_entered(&held, 1).await;
        // A second connection sees the same limit: it is global, not per connection.
        let mut other = client.clone();
        let err = other
            .vote(RaftMessage::default())
            .await
            .expect_err("the server is saturated");
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        held.release.add_permits(1);
        first.await.expect("join").expect("the held call completes");
        // The slot is free again.
        let mut again = client.clone();
        again
            .vote(RaftMessage::default())
            .await
            .expect("served once the slot is free");
    }

    #[tokio::test]
    async fn a_call_past_the_timeout_is_cancelled_and_frees_its_slot() {
        let limits = GrpcLimits {
            max_concurrent_requests: 1,
            request_timeout: PromDuration::from_millis(50),
        };
        let (held, mut client) = start(limits).await;
        // Never released: only the timeout ends it.
        let err = client
            .append_entries(RaftMessage::default())
            .await
            .expect_err("the handler never answers");
        assert_eq!(err.code(), Code::Cancelled, "{err}");
        assert_eq!(held.entered.load(Ordering::SeqCst), 1);
        client
            .vote(RaftMessage::default())
            .await
            .expect("the timed-out call released its slot");
    }

    #[test]
    fn flags_parse_with_defaults_and_reject_zero() {
        use clap::Parser as _;
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            limits: GrpcLimits,
        }
        let cli = Cli::try_parse_from(["x"]).expect("defaults");
        assert_eq!(cli.limits, GrpcLimits::default());
        assert_eq!(cli.limits.request_timeout.to_string(), "2m");
        let cli = Cli::try_parse_from([
            "x",
            "--grpc.max-concurrent-requests=3",
            "--grpc.request-timeout=15s",
        ])
        .expect("flags");
        assert_eq!(cli.limits.max_concurrent_requests, 3);
        assert_eq!(cli.limits.request_timeout, PromDuration::from_secs(15));
        assert!(Cli::try_parse_from(["x", "--grpc.max-concurrent-requests=0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--grpc.request-timeout=0s"]).is_err());
    }
}
