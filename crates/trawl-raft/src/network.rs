//! Raft traffic over the `trawl.v1.Raft` gRPC service: each message is a `RaftMessage` whose
//! payload is the serde_json of openraft's request, answered by the serde_json of
//! `Result<response, openraft::error::RaftError>`.
//!
//! Client side: one lazily connected tonic channel per peer (connect and request timeouts),
//! so a peer that is down costs nothing until it is used and every failure to reach it is an
//! openraft `Unreachable` (openraft then backs off) instead of an error that stops the node.
//! Server side: [`RaftService`] decodes, hands the request to the local openraft node and
//! encodes its answer; a stopped node answers `UNAVAILABLE`, which its peers see as
//! unreachable, like a dead process.

// Proto messages end in `..Default::default()` so fields added to the contract later do not
// break this code, even where every field is set today.
#![allow(clippy::needless_update)]

use std::collections::HashMap;
use std::time::Duration;

use openraft::Raft;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use trawl_proto::tls::ClientTls;
use trawl_proto::v1::RaftMessage;
use trawl_proto::v1::raft_client::RaftClient;

use crate::{BasicNode, TypeConfig};

/// The largest Raft message either side accepts: a batch of entries or a snapshot chunk
/// (chunks are sized well below it, see `crate::node`).
pub(crate) const MAX_MESSAGE: usize = 64 << 20;

/// Creates one client per peer as openraft asks for them.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub(crate) connect_timeout: Duration,
    pub(crate) channels: HashMap<u64, (String, Channel)>,
    pub(crate) tls: Option<ClientTls>,
}

impl Network {
    pub(crate) fn new(connect_timeout: Duration, tls: Option<ClientTls>) -> Self {
        Network {
            connect_timeout,
            channels: HashMap::new(),
            tls,
        }
    }

    fn channel(&mut self, target: u64, addr: &str) -> Result<Channel, String> {
        if let Some((a, ch)) = self.channels.get(&target)
            && a == addr
        {
            return Ok(ch.clone());
        }
        let ch = trawl_proto::tls::endpoint(addr, self.tls.as_ref())
            .map_err(|e| format!("peer {target}: {e}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        self.channels.insert(target, (addr.to_string(), ch.clone()));
        Ok(ch)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        let client = match self.channel(target, &node.addr) {
            Ok(ch) => Ok(RaftClient::new(ch)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE)),
            Err(e) => {
                tracing::error!(peer = target, error = %e, "raft peer address is not a valid uri");
                Err(e)
            }
        };
        PeerClient { target, client }
    }
}

/// A client for one peer.
#[derive(Debug)]
pub(crate) struct PeerClient {
    target: u64,
    client: Result<RaftClient<Channel>, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failure(String);

fn network_err<E: std::error::Error>(e: impl std::fmt::Display) -> RPCError<u64, BasicNode, E> {
    RPCError::Network(NetworkError::new(&Failure(e.to_string())))
}

impl PeerClient {
    /// One round trip: encode, send with the RPC's deadline, decode the peer's `Result`.
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&Failure(e.clone())))),
        };
        let payload = serde_json::to_vec(req).map_err(network_err)?;
        let mut request = tonic::Request::new(RaftMessage {
            payload,
            ..Default::default()
        });
        request.set_timeout(option.hard_ttl());
        let res = match rpc {
            "append_entries" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        };
        let msg = match res {
            Ok(r) => r.into_inner(),
            Err(status) => {
                return Err(match status.code() {
                    tonic::Code::InvalidArgument
                    | tonic::Code::Internal
                    | tonic::Code::Unimplemented => {
                        network_err(format!("{rpc} to peer {}: {status}", self.target))
                    }
                    // Transport failures, deadlines and a stopped peer: back off and retry.
                    _ => RPCError::Unreachable(Unreachable::new(&Failure(format!(
                        "{rpc} to peer {}: {}",
                        self.target,
                        status.message()
                    )))),
                });
            }
        };
        let answer: Result<Resp, RaftError<u64, E>> = serde_json::from_slice(&msg.payload)
            .map_err(|e| network_err(format!("{rpc} answer from peer {}: {e}", self.target)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("append_entries", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call("install_snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("vote", &rpc, &option).await
    }
}

/// The `trawl.v1.Raft` gRPC service of one replica, as [`crate::RaftNode::grpc_service`]
/// wraps it (with the message limits Raft traffic needs).
#[derive(Clone)]
pub struct RaftService {
    pub(crate) raft: Raft<TypeConfig>,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService").finish_non_exhaustive()
    }
}

fn decode<T: DeserializeOwned>(req: tonic::Request<RaftMessage>) -> Result<T, tonic::Status> {
    serde_json::from_slice(&req.into_inner().payload)
        .map_err(|e| tonic::Status::invalid_argument(format!("undecodable raft message: {e}")))
}

fn answer<T: Serialize, E: std::error::Error + Serialize>(
    res: Result<T, RaftError<u64, E>>,
) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
    if let Err(RaftError::Fatal(f)) = &res {
        // A stopped (or failed) node must look like a dead one to its peers.
        return Err(tonic::Status::unavailable(format!(
            "raft node stopped: {f}"
        )));
    }
    let payload =
        serde_json::to_vec(&res).map_err(|e| tonic::Status::internal(format!("encoding: {e}")))?;
    Ok(tonic::Response::new(RaftMessage {
        payload,
        ..Default::default()
    }))
}

#[tonic::async_trait]
impl trawl_proto::v1::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let req: AppendEntriesRequest<TypeConfig> = decode(request)?;
        answer(self.raft.append_entries(req).await)
    }

    async fn vote(
        &self,
        request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let req: VoteRequest<u64> = decode(request)?;
        answer(self.raft.vote(req).await)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let req: InstallSnapshotRequest<TypeConfig> = decode(request)?;
        answer(self.raft.install_snapshot(req).await)
    }
}
