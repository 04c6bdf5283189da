use proptest::prelude::*;
use trawl_raft::StateMachine as _;

use super::*;

fn cmd(op: Op) -> Command {
    Command { term: 1, op }
}

fn register(id: &str) -> Op {
    Op::RegisterWorker {
        id: id.into(),
        grpc_address: format!("{id}:9000"),
        web_address: format!("{id}:8000"),
        zone: String::new(),
        now_ms: 1_000,
    }
}

fn job(name: &str, interval: &str) -> JobSpec {
    let yaml =
        format!("global:\n  scrape_interval: {interval}\nscrape_configs:\n- job_name: {name}\n");
    JobSpec {
        name: name.into(),
        config_hash: xxhash_rust::xxh64::xxh64(yaml.as_bytes(), 0),
        yaml,
    }
}

fn target(job: &str, i: usize) -> TargetSpec {
    let addr = format!("host{i}:9100");
    TargetSpec::new(
        job,
        Labels::from_pairs([("__address__", addr.as_str()), ("job", job)]),
        Labels::from_pairs([("__address__", addr.as_str())]),
    )
}

fn set_targets(n: usize) -> Op {
    Op::SetTargets {
        jobs: vec![job("node", "15s")],
        targets: (0..n).map(|i| target("node", i)).collect(),
    }
}

fn apply_all(s: &mut ClusterState, ops: impl IntoIterator<Item = Op>) -> Vec<Response> {
    ops.into_iter().map(|op| s.apply(&cmd(op))).collect()
}

fn roles(s: &ClusterState, w: &str) -> BTreeMap<u64, Role> {
    s.views.get(w).cloned().unwrap_or_default()
}

fn count(s: &ClusterState, w: &str, role: Role) -> usize {
    roles(s, w).values().filter(|r| **r == role).count()
}

#[test]
fn new_targets_go_straight_to_owner() {
    let mut s = ClusterState::new(1);
    apply_all(&mut s, [register("w1"), set_targets(10)]);
    assert_eq!(count(&s, "w1", Role::Owner), 10);
    assert!(s.handoffs.is_empty());
    let a = s.assignment_for("w1");
    assert_eq!(a.targets.len(), 10);
    assert_eq!(a.jobs.len(), 1);
    assert_eq!(a.jobs[0].job_name, "node");
    assert_eq!(
        a.jobs[0].config_hash,
        xxhash_rust::xxh64::xxh64(a.jobs[0].scrape_config_yaml.as_bytes(), 0)
    );
    for t in &a.targets {
        assert_eq!(
            t.target_hash,
            trawl_proto::labels_from_proto(t.labels.clone()).stable_hash()
        );
        assert_eq!(t.role, v1::assigned_target::Role::Owner as i32);
    }
}

#[test]
fn a_join_hands_off_make_before_break() {
    let mut s = ClusterState::new(1);
    apply_all(&mut s, [register("w1"), set_targets(40)]);
    let e0 = s.epoch;
    apply_all(&mut s, [register("w2")]);
    assert_eq!(s.epoch, e0 + 1, "the join is one new epoch");
    let incoming: Vec<u64> = roles(&s, "w2")
        .into_iter()
        .filter(|(_, r)| *r == Role::Incoming)
        .map(|(h, _)| h)
        .collect();
    assert!(!incoming.is_empty(), "some targets move to the new worker");
    assert_eq!(count(&s, "w2", Role::Owner), 0);
    // The old owner keeps every moving target, as OUTGOING, and all others as OWNER.
    let w1 = roles(&s, "w1");
    assert_eq!(w1.len(), 40);
    for h in &incoming {
        assert_eq!(w1[h], Role::Outgoing);
    }
    assert_eq!(s.handoffs_pending(), incoming.len());

    // Confirming one target finishes that one handoff only.
    let (first, rest) = incoming.split_first().expect("one target");
    apply_all(
        &mut s,
        [Op::ConfirmScrapes {
            worker: "w2".into(),
            hashes: vec![*first],
        }],
    );
    assert_eq!(s.epoch, e0 + 2);
    assert_eq!(roles(&s, "w2")[first], Role::Owner);
    assert!(!roles(&s, "w1").contains_key(first));
    assert_eq!(s.handoffs_pending(), rest.len());

    // A confirmation from the old owner or for a non-moving target changes nothing.
    let before = s.clone();
    apply_all(
        &mut s,
        [Op::ConfirmScrapes {
            worker: "w1".into(),
            hashes: rest.to_vec(),
        }],
    );
    assert_eq!(s, before);

    apply_all(
        &mut s,
        [Op::ConfirmScrapes {
            worker: "w2".into(),
            hashes: rest.to_vec(),
        }],
    );
    assert_eq!(s.handoffs_pending(), 0);
    assert_eq!(count(&s, "w2", Role::Owner), incoming.len());
    assert_eq!(roles(&s, "w1").len(), 40 - incoming.len());
    assert!(roles(&s, "w1").values().all(|r| *r == Role::Owner));
}

#[test]
fn a_down_worker_targets_are_owned_elsewhere_at_once() {
    let mut s = ClusterState::new(1);
    apply_all(&mut s, [register("w1"), register("w2"), set_targets(30)]);
    let on_w1: Vec<u64> = roles(&s, "w1").keys().copied().collect();
    assert!(!on_w1.is_empty());
    let e = s.epoch;
    apply_all(&mut s, [Op::SetWorkerDown { id: "w1".into() }]);
    assert_eq!(s.epoch, e + 1);
    assert!(!s.views.contains_key("w1"));
    assert!(s.assignment_for("w1").targets.is_empty());
    assert_eq!(s.assignment_for("w1").epoch, Some(s.epoch_proto()));
    let w2 = roles(&s, "w2");
    assert_eq!(w2.len(), 30);
    assert!(
        w2.values().all(|r| *r == Role::Owner),
        "nobody to hand off from"
    );
    assert!(s.handoffs.is_empty());
    let c = s.cluster();
    let w1 = c.workers.iter().find(|w| w.id == "w1").expect("w1 listed");
    assert_eq!(w1.state, v1::worker_info::State::Down as i32);
}

#[test]
fn a_handoff_whose_old_owner_dies_completes() {
    let mut s = ClusterState::new(1);
    apply_all(&mut s, [register("w1"), set_targets(40), register("w2")]);
    assert!(s.handoffs_pending() > 0);
    apply_all(&mut s, [Op::SetWorkerDown { id: "w1".into() }]);
    assert_eq!(s.handoffs_pending(), 0);
    assert_eq!(count(&s, "w2", Role::Owner), 40);
}

#[test]
fn re_registration_keeps_targets() {
    let mut s = ClusterState::new(2);
    apply_all(
        &mut s,
        [
            register("w1"),
            register("w2"),
            register("w3"),
            set_targets(30),
        ],
    );
    let views = s.views.clone();
    let epoch = s.epoch;
    apply_all(
        &mut s,
        [
            register("w2"),
            Op::RegisterWorker {
                id: "w3".into(),
                grpc_address: "elsewhere:1".into(),
                web_address: "elsewhere:2".into(),
                zone: String::new(),
                now_ms: 5_000,
            },
        ],
    );
    assert_eq!(s.views, views);
    assert_eq!(s.epoch, epoch);
    assert_eq!(s.workers["w3"].grpc_address, "elsewhere:1");
}

#[test]
fn replication_places_each_target_on_distinct_workers() {
    let mut s = ClusterState::new(2);
    apply_all(
        &mut s,
        [
            register("w1"),
            register("w2"),
            register("w3"),
            set_targets(30),
        ],
    );
    for t in s.targets.keys() {
        let ws = s.workers_of(*t);
        assert_eq!(ws.len(), 2, "target {t:#x} on {ws:?}");
    }
}

#[test]
fn a_job_config_change_is_a_new_epoch_for_its_workers() {
    let mut s = ClusterState::new(1);
    apply_all(&mut s, [register("w1"), set_targets(3)]);
    let e = s.epoch;
    apply_all(&mut s, [set_targets(3)]);
    assert_eq!(s.epoch, e, "the same target set is no change");
    apply_all(
        &mut s,
        [Op::SetTargets {
            jobs: vec![job("node", "30s")],
            targets: (0..3).map(|i| target("node", i)).collect(),
        }],
    );
    assert_eq!(s.epoch, e + 1);
    assert!(
        s.assignment_for("w1").jobs[0]
            .scrape_config_yaml
            .contains("30s")
    );
}

#[test]
fn removed_targets_leave_the_assignment() {
    let mut s = ClusterState::new(1);
    apply_all(&mut s, [register("w1"), set_targets(5), set_targets(2)]);
    assert_eq!(s.assignment_for("w1").targets.len(), 2);
    assert_eq!(s.targets.len(), 2);
}

#[test]
fn bad_commands_are_rejected_without_change() {
    let mut s = ClusterState::new(1);
    apply_all(&mut s, [register("w1")]);
    let before = s.clone();
    let r = apply_all(
        &mut s,
        [
            Op::RegisterWorker {
                id: String::new(),
                grpc_address: String::new(),
                web_address: String::new(),
                zone: String::new(),
                now_ms: 0,
            },
            Op::SetWorkerDown { id: "nope".into() },
            Op::ConfirmScrapes {
                worker: "nope".into(),
                hashes: vec![1],
            },
        ],
    );
    assert!(
        r.iter().all(|r| matches!(r, Response::Rejected(_))),
        "{r:?}"
    );
    assert_eq!(s, before);
}

#[test]
fn snapshot_restore_round_trip() {
    let mut s = ClusterState::new(2);
    apply_all(
        &mut s,
        [
            register("w1"),
            register("w2"),
            set_targets(20),
            register("w3"),
            Op::SetWeights {
                series_per_target: [(target("node", 1).hash, 500)].into(),
                loads: [(
                    "w1".to_string(),
                    WorkerLoad {
                        head_series: 10,
                        samples_per_second: 2.5,
                    },
                )]
                .into(),
            },
        ],
    );
    let bytes = s.snapshot();
    let mut r = ClusterState::new(2);
    r.restore(&bytes).expect("restore");
    assert_eq!(r, s);
    assert!(r.restore(b"not json").is_err());
}

#[test]
fn weights_and_loads_replicate_only_material_changes() {
    let old: BTreeMap<u64, u64> = [(1, 1000), (2, 5)].into();
    let new: BTreeMap<u64, u64> = [(1, 1050), (2, 9), (3, 1)].into();
    assert_eq!(weights_changed(&old, &new), [(3, 1)].into());
    let new: BTreeMap<u64, u64> = [(1, 1200)].into();
    assert_eq!(weights_changed(&old, &new), [(1, 1200)].into());
    let l = WorkerLoad {
        head_series: 1000,
        samples_per_second: 100.0,
    };
    assert!(!load_changed(
        &l,
        &WorkerLoad {
            head_series: 1050,
            ..l
        }
    ));
    assert!(load_changed(
        &l,
        &WorkerLoad {
            head_series: 1200,
            ..l
        }
    ));
    assert!(load_changed(
        &l,
        &WorkerLoad {
            samples_per_second: 150.0,
            ..l
        }
    ));
}

#[test]
fn weights_rebalance_by_series() {
    let mut s = ClusterState::new(1);
    apply_all(&mut s, [register("w1"), register("w2"), set_targets(20)]);
    let heavy: u64 = *roles(&s, "w1").keys().next().expect("a target on w1");
    apply_all(
        &mut s,
        [Op::SetWeights {
            series_per_target: [(heavy, 100_000)].into(),
            loads: BTreeMap::new(),
        }],
    );
    // Placement counts the weight: the loads add up to it, and the heavy target's worker
    // is charged with it.
    let total: u64 = s.plan.workers.values().map(|w| w.load).sum();
    assert_eq!(total, 100_000 + 19);
    let owner = &s.plan.owners[&heavy][0];
    assert!(s.plan.workers[owner].load >= 100_000);
    assert_eq!(s.weights.get(&heavy), Some(&100_000));
}

fn arb_op() -> impl Strategy<Value = Op> {
    let worker = prop::sample::select(vec!["w1", "w2", "w3", "w4"]);
    prop_oneof![
        worker.clone().prop_map(register),
        worker
            .clone()
            .prop_map(|w| Op::SetWorkerDown { id: w.to_string() }),
        (0usize..30).prop_map(set_targets),
        (worker, prop::collection::vec(0usize..30, 0..10)).prop_map(|(w, is)| {
            Op::ConfirmScrapes {
                worker: w.to_string(),
                hashes: is.into_iter().map(|i| target("node", i).hash).collect(),
            }
        }),
    ]
}

/// What a worker receives, without the epoch.
fn received(s: &ClusterState, w: &str) -> v1::Assignment {
    v1::Assignment {
        epoch: None,
        ..s.assignment_for(w)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn replicas_applying_the_same_log_agree(ops in prop::collection::vec(arb_op(), 0..30)) {
        let mut a = ClusterState::new(2);
        let mut b = ClusterState::new(2);
        for op in &ops {
            let ra = a.apply(&cmd(op.clone()));
            let rb = b.apply(&cmd(op.clone()));
            prop_assert_eq!(ra, rb);
        }
        prop_assert_eq!(a.snapshot(), b.snapshot());
        // A replica restored from a snapshot continues identically.
        let mut c = ClusterState::new(2);
        c.restore(&a.snapshot()).map_err(TestCaseError::fail)?;
        a.apply(&cmd(register("w5")));
        c.apply(&cmd(register("w5")));
        prop_assert_eq!(a, c);
    }

    #[test]
    fn epoch_advances_by_one_exactly_when_an_assignment_changes(
        ops in prop::collection::vec(arb_op(), 0..30)
    ) {
        let mut s = ClusterState::new(1);
        let ids = ["w1", "w2", "w3", "w4"];
        for op in ops {
            let before: Vec<_> = ids.iter().map(|w| received(&s, w)).collect();
            let e = s.epoch;
            s.apply(&cmd(op));
            let after: Vec<_> = ids.iter().map(|w| received(&s, w)).collect();
            if before == after {
                prop_assert_eq!(s.epoch, e);
            } else {
                prop_assert_eq!(s.epoch, e + 1);
            }
            // Every target is scraped by every UP desired owner and never by a down worker.
            for (w, v) in &s.views {
                prop_assert!(s.workers[w].up);
                prop_assert!(v.keys().all(|h| s.targets.contains_key(h)));
            }
            if s.up_workers().count() > 0 {
                for h in s.targets.keys() {
                    prop_assert!(!s.workers_of(*h).is_empty(), "target {:#x} unscraped", h);
                }
            }
        }
    }

    #[test]
    fn target_order_does_not_matter(n in 1usize..30, seed in any::<u64>()) {
        let mut ts: Vec<TargetSpec> = (0..n).map(|i| target("node", i)).collect();
        let mut a = ClusterState::new(1);
        apply_all(&mut a, [register("w1"), register("w2")]);
        let mut b = a.clone();
        apply_all(&mut a, [Op::SetTargets { jobs: vec![job("node", "15s")], targets: ts.clone() }]);
        // A deterministic shuffle.
        let len = ts.len();
        for i in (1..len).rev() {
            let j = (seed.wrapping_mul(i as u64 + 7) >> 7) as usize % (i + 1);
            ts.swap(i, j);
        }
        apply_all(&mut b, [Op::SetTargets { jobs: vec![job("node", "15s")], targets: ts }]);
        prop_assert_eq!(a.views, b.views);
    }
}

#[test]
fn membership_without_targets_is_no_new_epoch() {
    let mut s = ClusterState::new(1);
    apply_all(&mut s, [register("w1"), register("w2")]);
    assert_eq!(s.epoch, 0);
    apply_all(&mut s, [Op::SetWorkerDown { id: "w2".into() }]);
    assert_eq!(s.epoch, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn confirming_every_incoming_target_settles_all_handoffs(
        ops in prop::collection::vec(arb_op(), 0..30),
        r in 1usize..4,
    ) {
        let mut s = ClusterState::new(r);
        for op in ops {
            s.apply(&cmd(op));
        }
        let incoming: Vec<(String, Vec<u64>)> = s
            .views
            .iter()
            .map(|(w, v)| {
                let hs = v.iter().filter(|(_, r)| **r == Role::Incoming).map(|(h, _)| *h).collect();
                (w.clone(), hs)
            })
            .collect();
        for (worker, hashes) in incoming {
            s.apply(&cmd(Op::ConfirmScrapes { worker, hashes }));
        }
        prop_assert_eq!(s.handoffs_pending(), 0);
        let up = s.up_workers().count();
        for h in s.targets.keys() {
            let ws = s.workers_of(*h);
            prop_assert_eq!(ws.len(), r.min(up), "target {:#x} on {:?}", h, ws);
            for w in ws {
                prop_assert_eq!(s.views[&w][h], Role::Owner);
            }
        }
    }
}
