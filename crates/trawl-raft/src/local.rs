//! One replica in one process: commands are applied under a lock in proposal order and the
//! state is written to a snapshot file after each command, so a restart resumes it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::{ReplicaError, ReplicaStatus, Replicator, StateMachine};

/// A single-replica [`Replicator`]: always the leader of term 1.
pub struct Local<S: StateMachine> {
    state: Mutex<(S, u64)>,
    path: Option<PathBuf>,
    status: watch::Sender<ReplicaStatus>,
}

impl<S: StateMachine> std::fmt::Debug for Local<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const SNAPSHOT_FILE: &str = "state.snapshot";

impl<S: StateMachine> Local<S> {
    /// A replica over `initial`, restored from `dir`'s snapshot when one exists; `dir` of
    /// `None` keeps the state in memory only.
    pub fn open(dir: Option<&Path>, mut initial: S, address: String) -> Result<Self, ReplicaError> {
        let mut applied = 0;
        let path = match dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .map_err(|e| ReplicaError::Fatal(format!("{}: {e}", d.display())))?;
                let p = d.join(SNAPSHOT_FILE);
                match std::fs::read(&p) {
                    Ok(b) if b.len() >= 8 => {
                        let (idx, body) = b.split_at(8);
                        applied = u64::from_le_bytes(idx.try_into().unwrap_or([0; 8]));
                        initial
                            .restore(body)
                            .map_err(|e| ReplicaError::Fatal(format!("{}: {e}", p.display())))?;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(ReplicaError::Fatal(format!("{}: {e}", p.display()))),
                }
                Some(p)
            }
            None => None,
        };
        let (status, _) = watch::channel(ReplicaStatus {
            id: 1,
            term: 1,
            leader: Some(1),
            applied,
            members: vec![(1, address)],
        });
        Ok(Local {
            state: Mutex::new((initial, applied)),
            path,
            status,
        })
    }

    fn persist(&self, s: &S, applied: u64) -> Result<(), ReplicaError> {
        let Some(p) = &self.path else { return Ok(()) };
        let mut b = applied.to_le_bytes().to_vec();
        b.extend_from_slice(&s.snapshot());
        // Write then rename, so a crash leaves the old or the new snapshot, never half of one.
        let tmp = p.with_extension("tmp");
        let io = |e: std::io::Error| ReplicaError::Fatal(format!("{}: {e}", p.display()));
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&b).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, p).map_err(io)
    }
}

impl<S: StateMachine> Replicator<S> for Local<S> {
    fn propose(&self, cmd: S::Command) -> BoxFuture<'_, Result<S::Response, ReplicaError>> {
        Box::pin(async move {
            let (resp, applied) = {
                let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let resp = g.0.apply(&cmd);
                g.1 += 1;
                self.persist(&g.0, g.1)?;
                (resp, g.1)
            };
            self.status.send_modify(|s| s.applied = applied);
            Ok(resp)
        })
    }

    fn read(&self, f: &mut dyn FnMut(&S)) {
        let g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&g.0);
    }

    fn status(&self) -> watch::Receiver<ReplicaStatus> {
        self.status.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_with;

    #[derive(Debug, Default)]
    struct Sum(u64);

    impl StateMachine for Sum {
        type Command = u64;
        type Response = u64;

        fn apply(&mut self, cmd: &u64) -> u64 {
            self.0 += cmd;
            self.0
        }

        fn snapshot(&self) -> Vec<u8> {
            self.0.to_le_bytes().to_vec()
        }

        fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
            let b: [u8; 8] = bytes
                .try_into()
                .map_err(|_| format!("{} bytes", bytes.len()))?;
            self.0 = u64::from_le_bytes(b);
            Ok(())
        }
    }

    #[tokio::test]
    async fn restart_resumes_state_and_applied_index() {
        let dir = tempfile::tempdir().unwrap();
        let local = Local::open(Some(dir.path()), Sum::default(), "a:1".into()).unwrap();
        assert_eq!(local.propose(5).await.unwrap(), 5);
        assert_eq!(local.propose(7).await.unwrap(), 12);
        let st = local.status().borrow().clone();
        assert!(st.is_leader());
        assert_eq!(st.applied, 2);
        drop(local);

        let local = Local::open(Some(dir.path()), Sum::default(), "a:1".into()).unwrap();
        assert_eq!(read_with(&local, |s: &Sum| s.0), 12);
        assert_eq!(local.status().borrow().applied, 2);
        assert_eq!(local.propose(1).await.unwrap(), 13);
        assert_eq!(local.status().borrow().applied, 3);
        assert_eq!(local.status().borrow().leader_address(), Some("a:1"));
    }

    #[tokio::test]
    async fn in_memory_replica_starts_empty_every_time() {
        let local = Local::open(None, Sum(3), "a:1".into()).unwrap();
        assert_eq!(local.propose(4).await.unwrap(), 7);
        let again = Local::open(None, Sum(3), "a:1".into()).unwrap();
        assert_eq!(read_with(&again, |s: &Sum| s.0), 3);
        assert_eq!(again.status().borrow().applied, 0);
    }

    #[test]
    fn unreadable_snapshot_fails_the_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SNAPSHOT_FILE), [1, 0, 0, 0, 0, 0, 0, 0, 9]).unwrap();
        let err = Local::open(Some(dir.path()), Sum::default(), "a:1".into()).unwrap_err();
        assert!(matches!(err, ReplicaError::Fatal(_)));
    }
}
