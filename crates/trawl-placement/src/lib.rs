//! Target placement for the Trawl cluster: which workers scrape which targets.
//!
//! [`assign`] maps targets (identified by their stable 64-bit label hash, see
//! `trawl_model::Labels::stable_hash`, with an optional weight = observed series count) onto
//! workers (string id, optional zone, optional capacity) and returns a [`Plan`]: the ordered
//! owner list of every target, the targets and load of every worker, and a [`Diff`] against the
//! previous plan for the make-before-break handoff.
//!
//! # Algorithm
//!
//! Consistent hashing with virtual nodes and bounded loads (Mirrokni, Thorup, Zadimoghaddam,
//! "Consistent Hashing with Bounded Loads"):
//! - Every worker owns `round(vnodes × capacity)` points (clamped to `1..=8192`). The point of
//!   vnode `i` of worker `id` is XXH64, seed 0, over `id bytes, 0xff, i as u32 little-endian`.
//!   A target sits at XXH64, seed 0, over its id as 8 little-endian bytes (re-hashing keeps
//!   synthetic, sequential ids uniform; real ids are already XXH64 outputs). The ring is sorted by
//!   `(point, worker id)`, so equal points break ties by id, never by input order.
//! - A target's candidates are the distinct workers met walking clockwise from its point.
//! - Every worker `w` has a bound `ceil((1+ε) × L × c_w / C)`, where `L` is the total load
//!   (Σ target weight × effective replication) and `C` the total capacity: with equal capacities
//!   that is `ceil((1+ε) × mean)`. A candidate that would exceed its bound is skipped.
//! - Replica `k` of a target goes to the first candidate that is not already an owner, is within
//!   its bound and, when the owners do not yet cover every zone, is in a zone the owners do not
//!   use. Failing a new zone, the first candidate within its bound is taken (zones are spread
//!   "when possible", never at the price of the bound). Workers without a zone form one zone.
//! - When every worker with room already owns the target (greedy placement with R close to N
//!   can leave the last slack there), one other target is moved off a full non-owner onto a
//!   worker with room, and the freed worker takes the replica.
//! - Only when no candidate fits even so (possible with heavy weighted targets: a single 100k-series
//!   target can be larger than the bound) does a replica go to the candidate with the smallest
//!   relative load `(load + weight) / capacity`; [`Plan::overflow`] counts those.
//!
//! # Minimal movement
//!
//! With a previous plan, a target keeps each previous owner that is still present unless that
//! owner is above its (new) bound, which then sheds its excess: first the targets consistent
//! hashing would give a newcomer anyway, then its highest target ids. The one other reason to
//! leave an owner is consistent hashing's own movement on a join: when workers absent from the
//! previous plan are among the target's ideal owners (the first R zone-spread candidates,
//! ignoring bounds), that many previous owners that are not ideal give up their slot (the last
//! such in owner order, so the primary stays when it can) — in target-id order, and only while
//! the load moved so far is within the newcomers' fair share (their capacity's part of the total
//! load, no slack). Without that cap a join would move as many targets as hash onto the
//! newcomer, a binomial count whose tail on small clusters is well above the share. Everything
//! else is kept, so a leave moves only the leaver's replicas and a join moves at most
//! `max(fair share, the excess over the new bounds)`, about `1/(N+1)` of all replicas.
//!
//! # Invariants
//!
//! - Deterministic: the plan depends only on the sets of targets and workers, the parameters and
//!   the previous plan, never on input order (inputs are sorted; all maps are `BTreeMap`; no
//!   `RandomState`).
//! - Every target has exactly `min(R, workers)` distinct owners.
//! - No worker's load exceeds its bound unless [`Plan::overflow`] is non-zero; with unit weights
//!   overflow does not happen in practice (the property tests check it).
//! - A target weight of `None` or `0` counts as 1: a target that has not reported a series count
//!   yet still costs a scrape.
//!
//! # Why not the `hashring` crate
//!
//! `hashring` offers `add`/`remove`/`get(key)` returning the one node that owns a key, hashed
//! through a `BuildHasher`. Bounded loads need to keep walking past full workers, replication and
//! zones need to skip owners and used zones during that walk, and the cluster needs a hash that is
//! documented and identical on every build and machine. None of that is in its API, and a sorted
//! `Vec<(point, worker)>` with a binary search is all the ring we need, so we keep our own.
//!
//! The crate does no I/O and has no runtime dependency.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh64::{Xxh64, xxh64};

/// Upper clamp for the number of vnodes of one worker, so a huge capacity cannot blow up the ring.
pub const MAX_VNODES_PER_WORKER: u32 = 8_192;

/// Errors in the placement inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    #[error("duplicate target id {0:#018x}")]
    DuplicateTarget(u64),
    #[error("duplicate worker id {0:?}")]
    DuplicateWorker(String),
    #[error("empty worker id")]
    EmptyWorkerId,
    #[error("worker {worker:?}: capacity must be a finite number > 0, got {capacity}")]
    InvalidCapacity { worker: String, capacity: f64 },
    #[error("epsilon must be a finite number >= 0, got {0}")]
    InvalidEpsilon(f64),
    #[error("replication factor must be at least 1")]
    ZeroReplication,
    #[error("vnodes must be at least 1")]
    ZeroVnodes,
}

/// A target to place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The stable hash of the target's labels.
    pub id: u64,
    /// Observed series count; `None` or `0` counts as 1.
    pub weight: Option<u64>,
}

impl Target {
    pub fn new(id: u64) -> Self {
        Target { id, weight: None }
    }

    pub fn weighted(id: u64, weight: u64) -> Self {
        Target {
            id,
            weight: Some(weight),
        }
    }

    fn cost(&self) -> u64 {
        self.weight.unwrap_or(1).max(1)
    }
}

/// A worker that can own targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Worker {
    pub id: String,
    /// Failure domain; `None` and `Some("")` are the same (no zone).
    pub zone: Option<String>,
    /// Relative capacity, default 1.0: scales both the worker's vnodes and its load bound.
    pub capacity: Option<f64>,
}

impl Worker {
    pub fn new(id: impl Into<String>) -> Self {
        Worker {
            id: id.into(),
            zone: None,
            capacity: None,
        }
    }

    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    pub fn with_capacity(mut self, capacity: f64) -> Self {
        self.capacity = Some(capacity);
        self
    }
}

/// Placement parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Replication factor R: distinct owners per target (fewer when there are fewer workers).
    pub replication: usize,
    /// Load slack ε: no worker above `ceil((1+ε) × mean)`.
    pub epsilon: f64,
    /// Virtual nodes per unit of capacity.
    pub vnodes: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            replication: 1,
            epsilon: 0.1,
            vnodes: 128,
        }
    }
}

/// What one worker got.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkerAssignment {
    pub zone: Option<String>,
    /// Target ids, ascending.
    pub targets: Vec<u64>,
    /// Σ weight of its targets.
    pub load: u64,
    /// The bounded-loads ceiling it was held to.
    pub bound: u64,
}

/// Owners that changed for a target present in both plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub target: u64,
    /// Previous owners that no longer own it (they stop once a new owner has scraped it).
    pub from: Vec<String>,
    /// New owners that did not own it before (they start at once).
    pub to: Vec<String>,
}

/// Differences from the previous plan.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Diff {
    /// Targets absent from the previous plan, ascending.
    pub added: Vec<u64>,
    /// Targets of the previous plan that are gone, ascending.
    pub removed: Vec<u64>,
    /// Targets whose owner set changed, ascending by target.
    pub moved: Vec<Move>,
}

impl Diff {
    /// Number of (target, owner) assignments that a target gained on an existing target.
    pub fn moved_assignments(&self) -> usize {
        self.moved.iter().map(|m| m.to.len()).sum()
    }
}

/// The result of [`assign`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// `min(R, workers)`.
    pub replication: usize,
    /// Per target, its owners; the first is the primary.
    pub owners: BTreeMap<u64, Vec<String>>,
    /// Per worker (every worker, even idle ones), what it owns.
    pub workers: BTreeMap<String, WorkerAssignment>,
    pub diff: Diff,
    /// Assignments that had to exceed a bound because no candidate fitted.
    pub overflow: usize,
}

struct Node {
    id: String,
    zone: u32,
    capacity: f64,
    bound: u64,
    load: u64,
}

struct Ring {
    points: Vec<(u64, u32)>,
}

impl Ring {
    fn new(nodes: &[Node], vnodes: u32) -> Ring {
        let mut points = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let count = (f64::from(vnodes) * n.capacity).round();
            let count = if count.is_nan() || count < 1.0 {
                1
            } else if count >= f64::from(MAX_VNODES_PER_WORKER) {
                MAX_VNODES_PER_WORKER
            } else {
                count as u32
            };
            for v in 0..count {
                let mut h = Xxh64::new(0);
                h.update(n.id.as_bytes());
                h.update(&[0xff]);
                h.update(&v.to_le_bytes());
                points.push((h.digest(), i as u32));
            }
        }
        // Nodes are sorted by id, so the index tie-break is an id tie-break.
        points.sort_unstable();
        Ring { points }
    }

    fn start(&self, target: u64) -> usize {
        let p = xxh64(&target.to_le_bytes(), 0);
        let i = self.points.partition_point(|&(q, _)| q < p);
        if i == self.points.len() { 0 } else { i }
    }
}

/// Distinct workers clockwise from a target's point.
struct Walk<'a> {
    ring: &'a Ring,
    pos: usize,
    steps: usize,
    seen: &'a mut [u64],
    stamp: u64,
}

impl Iterator for Walk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let len = self.ring.points.len();
        while self.steps < len {
            let (_, w) = self.ring.points[(self.pos + self.steps) % len];
            self.steps += 1;
            let w = w as usize;
            if self.seen[w] != self.stamp {
                self.seen[w] = self.stamp;
                return Some(w);
            }
        }
        None
    }
}

struct State {
    nodes: Vec<Node>,
    ring: Ring,
    zones: usize,
    seen: Vec<u64>,
    stamp: u64,
}

impl State {
    fn walk(&mut self, target: u64) -> Walk<'_> {
        self.stamp += 1;
        Walk {
            pos: self.ring.start(target),
            ring: &self.ring,
            steps: 0,
            seen: &mut self.seen,
            stamp: self.stamp,
        }
    }

    /// The first `r` zone-spread candidates, ignoring bounds.
    fn ideal(&mut self, target: u64, r: usize) -> Vec<usize> {
        let zones = self.zones;
        let zone_of: Vec<u32> = self.nodes.iter().map(|n| n.zone).collect();
        let mut picked = Vec::with_capacity(r);
        let mut skipped = Vec::new();
        let mut used = BTreeSet::new();
        for w in self.walk(target) {
            if picked.len() + skipped.len() >= r && used.len() == zones {
                break;
            }
            if picked.len() == r {
                break;
            }
            if used.len() == zones || used.contains(&zone_of[w]) {
                // Every zone is covered, or this one is: plain walk order fills the rest.
                skipped.push(w);
                continue;
            }
            used.insert(zone_of[w]);
            picked.push(w);
        }
        for w in skipped {
            if picked.len() == r {
                break;
            }
            picked.push(w);
        }
        picked
    }

    /// Picks the next owner of `target`; `None` only when every worker already owns it.
    fn pick(&mut self, target: u64, cost: u64, owners: &[usize]) -> Option<(usize, bool)> {
        let fits =
            |i: usize, n: &Node| !owners.contains(&i) && n.load.saturating_add(cost) <= n.bound;
        if !self.nodes.iter().enumerate().any(|(i, n)| fits(i, n)) {
            // Nothing fits: skip the walk (it would cover the whole ring) and overflow onto
            // the least relatively loaded non-owner, ties to the lowest id.
            let mut least: Option<(usize, f64)> = None;
            for (i, n) in self.nodes.iter().enumerate() {
                if owners.contains(&i) {
                    continue;
                }
                let score = n.load.saturating_add(cost) as f64 / n.capacity;
                if least.is_none_or(|(_, s)| score < s) {
                    least = Some((i, score));
                }
            }
            return least.map(|(w, _)| (w, true));
        }
        let used: BTreeSet<u32> = owners.iter().map(|&o| self.nodes[o].zone).collect();
        // Only look for a new zone when one has room: otherwise the walk would cover the
        // whole ring for every replica once a small zone fills up.
        let zone_seek = used.len() < self.zones
            && self.nodes.iter().enumerate().any(|(i, n)| {
                !used.contains(&n.zone)
                    && n.load.saturating_add(cost) <= n.bound
                    && !owners.contains(&i)
            });
        let mut first_fit = None;
        let mut least: Option<(usize, f64)> = None;
        let State {
            nodes,
            ring,
            seen,
            stamp,
            ..
        } = self;
        *stamp += 1;
        let walk = Walk {
            pos: ring.start(target),
            ring,
            steps: 0,
            seen,
            stamp: *stamp,
        };
        for w in walk {
            if owners.contains(&w) {
                continue;
            }
            let n = &nodes[w];
            if n.load.saturating_add(cost) <= n.bound {
                if !zone_seek || !used.contains(&n.zone) {
                    return Some((w, false));
                }
                if first_fit.is_none() {
                    first_fit = Some(w);
                }
            } else if first_fit.is_none() {
                let score = (n.load.saturating_add(cost)) as f64 / n.capacity;
                if least.is_none_or(|(_, s)| score < s) {
                    least = Some((w, score));
                }
            }
        }
        first_fit
            .map(|w| (w, false))
            .or(least.map(|(w, _)| (w, true)))
    }
}

fn validate(targets: &[Target], workers: &[Worker], params: &Params) -> Result<(), PlacementError> {
    if params.replication == 0 {
        return Err(PlacementError::ZeroReplication);
    }
    if params.vnodes == 0 {
        return Err(PlacementError::ZeroVnodes);
    }
    if !params.epsilon.is_finite() || params.epsilon < 0.0 {
        return Err(PlacementError::InvalidEpsilon(params.epsilon));
    }
    let mut ids = BTreeSet::new();
    for t in targets {
        if !ids.insert(t.id) {
            return Err(PlacementError::DuplicateTarget(t.id));
        }
    }
    let mut names = BTreeSet::new();
    for w in workers {
        if w.id.is_empty() {
            return Err(PlacementError::EmptyWorkerId);
        }
        if let Some(c) = w.capacity
            && (!c.is_finite() || c <= 0.0)
        {
            return Err(PlacementError::InvalidCapacity {
                worker: w.id.clone(),
                capacity: c,
            });
        }
        if !names.insert(w.id.as_str()) {
            return Err(PlacementError::DuplicateWorker(w.id.clone()));
        }
    }
    Ok(())
}

/// Places `targets` on `workers`, staying as close to `previous` as the bounds allow.
///
/// The result depends only on the sets given, not on their order.
pub fn assign(
    targets: &[Target],
    workers: &[Worker],
    previous: Option<&Plan>,
    params: &Params,
) -> Result<Plan, PlacementError> {
    validate(targets, workers, params)?;

    let mut targets: Vec<&Target> = targets.iter().collect();
    targets.sort_unstable_by_key(|t| t.id);
    let mut workers: Vec<&Worker> = workers.iter().collect();
    workers.sort_unstable_by(|a, b| a.id.cmp(&b.id));

    let zone_name = |w: &Worker| w.zone.clone().filter(|z| !z.is_empty());
    let zone_ids: BTreeMap<Option<String>, u32> = workers
        .iter()
        .map(|w| zone_name(w))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, z)| (z, i as u32))
        .collect();

    let r = params.replication.min(workers.len());
    let total_load: u128 = targets.iter().map(|t| u128::from(t.cost())).sum::<u128>() * r as u128;
    let total_capacity: f64 = workers.iter().map(|w| w.capacity.unwrap_or(1.0)).sum();
    let nodes: Vec<Node> = workers
        .iter()
        .map(|w| {
            let capacity = w.capacity.unwrap_or(1.0);
            let x = (1.0 + params.epsilon) * total_load as f64 * capacity / total_capacity;
            // Shave float noise so that e.g. 1.1 × 10 is 11, not 12.
            let bound = (x - x.max(1.0) * 1e-12).ceil().max(0.0) as u64;
            Node {
                id: w.id.clone(),
                zone: zone_ids[&zone_name(w)],
                capacity,
                bound,
                load: 0,
            }
        })
        .collect();
    let ring = Ring::new(&nodes, params.vnodes);
    let mut st = State {
        seen: vec![0; nodes.len()],
        nodes,
        ring,
        zones: zone_ids.len(),
        stamp: 0,
    };
    let index: BTreeMap<&str, usize> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| (w.id.as_str(), i))
        .collect();

    let mut owners: Vec<Vec<usize>> = vec![Vec::new(); targets.len()];

    // Phase 1: keep previous owners.
    if let Some(prev) = previous {
        let is_new: Vec<bool> = workers
            .iter()
            .map(|w| !prev.workers.contains_key(&w.id))
            .collect();
        // The newcomers' fair share (no slack): what consistent hashing may move to them.
        let quota: u64 = workers
            .iter()
            .zip(&is_new)
            .filter(|(_, new)| **new)
            .map(|(w, _)| {
                let share = total_load as f64 * w.capacity.unwrap_or(1.0) / total_capacity;
                (share + share.max(1.0) * 1e-12).floor().max(0.0) as u64
            })
            .sum();
        let kept: Vec<Vec<usize>> = targets
            .iter()
            .map(|t| {
                let mut kept: Vec<usize> = Vec::with_capacity(r);
                for o in prev.owners.get(&t.id).into_iter().flatten() {
                    if let Some(&w) = index.get(o.as_str())
                        && !kept.contains(&w)
                        && kept.len() < r
                    {
                        kept.push(w);
                    }
                }
                kept
            })
            .collect();
        owners = keep_previous(&mut st, &targets, kept, &is_new, r, quota);
    }

    // Phase 2: fill the empty slots, heaviest targets first so they find room.
    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        targets[b]
            .cost()
            .cmp(&targets[a].cost())
            .then(targets[a].id.cmp(&targets[b].id))
    });
    let mut overflow = 0;
    // Owners placed in this phase, which a repair may move without undoing a kept owner.
    let mut fresh: Vec<Vec<usize>> = vec![Vec::new(); targets.len()];
    for ti in order {
        let t = targets[ti];
        let cost = t.cost();
        while owners[ti].len() < r {
            let Some((mut w, mut over)) = st.pick(t.id, cost, &owners[ti]) else {
                break;
            };
            if over && let Some(x) = repair(&mut st, &targets, &mut owners, &mut fresh, ti, cost) {
                w = x;
                over = false;
            }
            overflow += usize::from(over);
            st.nodes[w].load = st.nodes[w].load.saturating_add(cost);
            owners[ti].push(w);
            fresh[ti].push(w);
        }
    }

    let mut plan = Plan {
        replication: r,
        overflow,
        ..Plan::default()
    };
    for (w, n) in workers.iter().zip(&st.nodes) {
        plan.workers.insert(
            n.id.clone(),
            WorkerAssignment {
                zone: zone_name(w),
                targets: Vec::new(),
                load: n.load,
                bound: n.bound,
            },
        );
    }
    for (t, os) in targets.iter().zip(&owners) {
        let names: Vec<String> = os.iter().map(|&w| st.nodes[w].id.clone()).collect();
        for name in &names {
            if let Some(wa) = plan.workers.get_mut(name) {
                wa.targets.push(t.id);
            }
        }
        plan.owners.insert(t.id, names);
    }
    plan.diff = diff(previous, &plan.owners);
    Ok(plan)
}

/// Phase 1 of [`assign`]: which previous owners (`kept`, per target, the ones still present)
/// keep their slot. Sets the node loads to the survivors' and returns them.
///
/// Two reasons take a slot away. A worker above its (new) bound must shed the excess; it sheds
/// first the targets consistent hashing would hand to a newcomer anyway, then its highest ids.
/// And on a join, a target whose ideal owners include a newcomer leaves a non-ideal owner, but
/// only while the load moved so far stays within the newcomers' fair share (`quota`): the count
/// of targets whose ideal owner is the newcomer is binomial around that share, and without the
/// cap a join would move up to its tail (26 of 100 where the share is 20).
fn keep_previous(
    st: &mut State,
    targets: &[&Target],
    kept: Vec<Vec<usize>>,
    is_new: &[bool],
    r: usize,
    quota: u64,
) -> Vec<Vec<usize>> {
    let n = st.nodes.len();
    let mut ideal_drop: Vec<Vec<usize>> = vec![Vec::new(); targets.len()];
    if is_new.iter().any(|&x| x) {
        for (ti, t) in targets.iter().enumerate() {
            if kept[ti].is_empty() {
                continue;
            }
            let ideal = st.ideal(t.id, r);
            let allowed = r - ideal.iter().filter(|&&w| is_new[w]).count();
            let mut k = kept[ti].clone();
            while k.len() > allowed {
                match k.iter().rposition(|w| !ideal.contains(w)) {
                    Some(i) => ideal_drop[ti].push(k.remove(i)),
                    None => break,
                }
            }
        }
    }
    // The node loads (zero before this phase) start as if every kept owner stayed; each
    // slot taken away below gives its cost back.
    let mut per_worker: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (ti, ks) in kept.iter().enumerate() {
        for &w in ks {
            let node = &mut st.nodes[w];
            node.load = node.load.saturating_add(targets[ti].cost());
            per_worker[w].push(ti);
        }
    }
    let mut s = Shed {
        kept,
        ideal_drop,
        nodes: &mut st.nodes,
        moved: 0,
    };
    for (w, mine) in per_worker.into_iter().enumerate() {
        let bound = s.nodes[w].bound;
        if s.nodes[w].load <= bound {
            continue;
        }
        for &ti in &mine {
            if s.nodes[w].load <= bound {
                break;
            }
            if s.ideal_drop[ti].contains(&w) {
                s.drop(ti, w, targets[ti].cost());
            }
        }
        for &ti in mine.iter().rev() {
            if s.nodes[w].load <= bound {
                break;
            }
            if s.kept[ti].contains(&w) {
                s.drop(ti, w, targets[ti].cost());
            }
        }
    }
    for (ti, t) in targets.iter().enumerate() {
        let cost = t.cost();
        for w in std::mem::take(&mut s.ideal_drop[ti]) {
            if s.moved.saturating_add(cost) <= quota {
                s.drop(ti, w, cost);
            }
        }
    }
    s.kept
}

/// The slots [`keep_previous`] takes away, and what that moved.
struct Shed<'a> {
    kept: Vec<Vec<usize>>,
    ideal_drop: Vec<Vec<usize>>,
    nodes: &'a mut [Node],
    moved: u64,
}

impl Shed<'_> {
    fn drop(&mut self, ti: usize, w: usize, cost: u64) {
        self.kept[ti].retain(|&x| x != w);
        self.ideal_drop[ti].retain(|&x| x != w);
        let node = &mut self.nodes[w];
        node.load -= cost.min(node.load);
        self.moved = self.moved.saturating_add(cost);
    }
}

/// How many full workers [`repair`] tries before giving up and overflowing.
const REPAIR_CANDIDATES: usize = 8;

/// Frees room for target `ti` when every worker with room already owns it (greedy placement
/// with R close to N can leave the last slack on the target's own owners): moves one target
/// `s` off a full non-owner `x` to a worker `y` with room that does not own `s`, then returns
/// `x`. Rare, so a linear scan is fine; bounded to a few candidates so heavy targets that fit
/// nowhere do not make it quadratic.
fn repair(
    st: &mut State,
    targets: &[&Target],
    owners: &mut [Vec<usize>],
    fresh: &mut [Vec<usize>],
    ti: usize,
    cost: u64,
) -> Option<usize> {
    let candidates: Vec<usize> = (0..st.nodes.len())
        .filter(|x| !owners[ti].contains(x) && cost <= st.nodes[*x].bound)
        .take(REPAIR_CANDIDATES)
        .collect();
    // First only owners placed in this run, so that kept owners stay (minimal movement);
    // then any, because the bound wins over movement.
    for fresh_only in [true, false] {
        for &x in &candidates {
            for s in 0..owners.len() {
                if s == ti || !owners[s].contains(&x) || (fresh_only && !fresh[s].contains(&x)) {
                    continue;
                }
                let cs = targets[s].cost();
                let nx = &st.nodes[x];
                if (nx.load - cs.min(nx.load)).saturating_add(cost) > nx.bound {
                    continue;
                }
                let y = (0..st.nodes.len()).find(|&y| {
                    y != x
                        && !owners[s].contains(&y)
                        && st.nodes[y].load.saturating_add(cs) <= st.nodes[y].bound
                });
                if let Some(y) = y {
                    for slot in owners[s].iter_mut().chain(fresh[s].iter_mut()) {
                        if *slot == x {
                            *slot = y;
                        }
                    }
                    st.nodes[x].load -= cs.min(st.nodes[x].load);
                    st.nodes[y].load += cs;
                    return Some(x);
                }
            }
        }
    }
    None
}

fn diff(previous: Option<&Plan>, owners: &BTreeMap<u64, Vec<String>>) -> Diff {
    let mut d = Diff::default();
    let Some(prev) = previous else {
        d.added = owners.keys().copied().collect();
        return d;
    };
    for (t, now) in owners {
        let Some(before) = prev.owners.get(t) else {
            d.added.push(*t);
            continue;
        };
        let from: Vec<String> = before
            .iter()
            .filter(|o| !now.contains(o))
            .cloned()
            .collect();
        let to: Vec<String> = now
            .iter()
            .filter(|o| !before.contains(o))
            .cloned()
            .collect();
        if !from.is_empty() || !to.is_empty() {
            d.moved.push(Move {
                target: *t,
                from,
                to,
            });
        }
    }
    d.removed = prev
        .owners
        .keys()
        .filter(|t| !owners.contains_key(t))
        .copied()
        .collect();
    d
}
