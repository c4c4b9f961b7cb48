//! Choosing an agent for a waiting caller (the queues' side of #14), sans-IO: the engine holds
//! the callers waiting in each queue and the agents who could take them, and answers "who gets
//! which call now" from indexes, so a decision costs O(log n) in the number of agents (the
//! benchmark `cargo bench -p switchboard-router --bench routing` prints the growth).
//!
//! Rules, from the complaints about Teams call queues, mod_callcenter and app_queue:
//! - an agent with any call — offered, ringing, talking, in wrap-up, or a call that is not the
//!   queue's — is never offered another ([`Engine::set_busy_elsewhere`] covers calls the
//!   engine did not place);
//! - callers are served by priority (5 highest), then by how long they have waited since they
//!   first reached a queue: a caller who moves between attendant and queues, or comes back
//!   after a failed offer, keeps [`Caller::since`] and so keeps their place;
//! - a failed offer frees the agent at once (no agent stays "reserved"): after no answer the
//!   agent goes to the state the queue says (Not ready, "missed call", by default), after a
//!   refusal (busy, declined) they stay as they were;
//! - an agent whose Teams presence says DoNotDisturb, Presenting or InAMeeting is skipped
//!   ([`Engine::set_presence_allows`]).
//!
//! Ties are broken predictably: each strategy's order, then the agent's rank (its place in the
//! configuration), then its id. The strategies:
//!
//! | strategy | who first |
//! |---|---|
//! | longest idle | the longest since their last call ended (or since they became ready) |
//! | round robin | the next by rank after the last one offered, wrapping (the owner keeps the place across restarts: [`Engine::round_robin_last`]) |
//! | ring all | every available member at once; the first to answer takes it |
//! | fewest calls | fewest answered calls, then longest idle |
//! | least talk time | least talk time, then longest idle |
//! | linear | lowest rank (top-down) |
//! | random | uniformly at random |
//! | best skill | highest sum of proficiency in the queue's skills, then longest idle |

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rand::Rng;

pub mod estimate;
#[cfg(test)]
mod tests;

/// An agent, as the owner numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(pub u32);

/// A queue, as the owner numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u32);

/// A call, as the owner numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// A skill, interned by the owner (the name lives in the configuration).
pub type SkillId = u32;

/// How a queue chooses among its available agents (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    LongestIdle,
    RoundRobin,
    RingAll,
    FewestCalls,
    LeastTalkTime,
    Linear,
    Random,
    BestSkill,
}

/// What a queue asks of its agents and how it chooses.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub strategy: Strategy,
    /// Skills an agent needs, each with its lowest level (1–5); none: every agent.
    pub skills: Vec<(SkillId, u8)>,
    /// Callers waiting at most; more are refused with [`Refused::Full`].
    pub max_size: Option<usize>,
    /// Longest wait in this queue; then [`Engine::handle_timeout`] hands the caller back.
    pub max_wait: Option<Duration>,
}

/// What the engine knows of an agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Skills with proficiency 1–5.
    pub skills: Vec<(SkillId, u8)>,
    /// Place in the configuration: linear and round-robin order, and the last tie-break.
    pub rank: u32,
}

/// A caller waiting, or moving between attendant and queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub call: CallId,
    /// 1 (lowest) to 5 (highest).
    pub priority: u8,
    /// When the caller first reached a queue: kept across moves, so they keep their place.
    pub since: Instant,
}

/// Why a caller could not join a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the queue is full")]
    Full,
    #[error("no agent of the queue is logged in")]
    NoAgents,
    #[error("no such queue")]
    NoSuchQueue,
    #[error("the call is already in a queue or being offered")]
    AlreadyQueued,
}

/// A call offered to agents: ring them (ring all: several; otherwise one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub call: CallId,
    pub queue: QueueId,
    pub agents: Vec<AgentId>,
}

/// Where an agent goes after an offer rang out unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterMissed {
    /// Not ready (the owner records the reason, "missed call" by default).
    NotReady,
    /// Ready again (the next caller may ring them at once).
    Ready,
}

/// How an offer ended for one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferEnd {
    /// Rang out (the queue's alert time) without an answer.
    NoAnswer(AfterMissed),
    /// The agent's endpoint refused (busy, declined, unreachable): they stay as they were,
    /// passed over for [`REFUSED_PAUSE`].
    Refused,
}

#[derive(Debug)]
struct AgentSlot {
    skills: BTreeMap<SkillId, u8>,
    rank: u32,
    online: bool,
    ready: bool,
    presence_allows: bool,
    /// The call the agent is offered, on, or wrapping up — theirs through us or elsewhere.
    busy: Option<CallId>,
    /// In wrap-up after a call of ours (busy with no call).
    wrap_up: bool,
    /// Their phone refused an offer (busy, declined, unreachable): held back from offers
    /// until this time ([`REFUSED_PAUSE`]), so a phone that refuses everything is not rung
    /// in a tight loop.
    held_back_until: Option<Instant>,
    idle_since: Duration,
    answered: u64,
    talk: Duration,
    /// Queues this agent belongs to (skills match).
    queues: Vec<QueueId>,
}

impl AgentSlot {
    fn available(&self) -> bool {
        self.online
            && self.ready
            && self.presence_allows
            && self.busy.is_none()
            && !self.wrap_up
            && self.held_back_until.is_none()
    }
}

/// A strategy's order key for one agent in one queue (smallest first), the agent id last.
type Key = (u64, u64, u32, AgentId);

#[derive(Debug)]
struct QueueSlot {
    spec: QueueSpec,
    members: BTreeSet<AgentId>,
    online_members: usize,
    /// Available members in the strategy's order (all strategies but random).
    order: BTreeSet<Key>,
    /// Each available member's key in `order`.
    keys: HashMap<AgentId, Key>,
    /// Available members for random: a vector and each one's place in it.
    pool: Vec<AgentId>,
    pool_at: HashMap<AgentId, usize>,
    /// Round robin: the rank and id offered last.
    cursor: Option<(u32, AgentId)>,
    /// Waiting callers: (priority high first, since, sequence).
    waiting: BTreeSet<(Reverse<u8>, Instant, u64)>,
    /// Sequence → (caller, when they entered this queue).
    entries: HashMap<u64, (Caller, Instant)>,
}

/// Where a call is.
#[derive(Debug, Clone)]
enum Place {
    Waiting {
        queue: QueueId,
        seq: u64,
    },
    Offered {
        queue: QueueId,
        caller: Caller,
        entered: Instant,
        ringing: Vec<AgentId>,
    },
}

/// The routing engine of one tenant.
#[derive(Debug)]
pub struct Engine {
    origin: Instant,
    agents: Vec<Option<AgentSlot>>,
    queues: Vec<Option<QueueSlot>>,
    calls: HashMap<CallId, Place>,
    /// The best waiting caller of each queue that has one: (priority, since, seq, queue).
    heads: BTreeSet<(Reverse<u8>, Instant, u64, QueueId)>,
    /// Max-wait deadlines: (deadline, call).
    deadlines: BTreeSet<(Instant, CallId)>,
    /// Agents held back after a refused offer: (until, agent).
    held_back: BTreeSet<(Instant, AgentId)>,
    next_seq: u64,
}

/// How long an agent whose phone refused an offer (busy, declined, unreachable) is passed
/// over before being offered again: Asterisk's `retry` default. Other agents are offered the
/// caller meanwhile.
pub const REFUSED_PAUSE: Duration = Duration::from_secs(5);

impl Engine {
    /// An empty engine; `now` anchors the idle times.
    pub fn new(now: Instant) -> Self {
        Self {
            origin: now,
            agents: Vec::new(),
            queues: Vec::new(),
            calls: HashMap::new(),
            heads: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            held_back: BTreeSet::new(),
            next_seq: 0,
        }
    }

    fn since_origin(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.origin)
    }

    // ----- configuration ---------------------------------------------------------------------

    /// Adds (or replaces) queue `id`. Agents whose skills fit become its members.
    pub fn set_queue(&mut self, id: QueueId, spec: QueueSpec) {
        self.remove_queue_members(id);
        let i = id.0 as usize;
        if self.queues.len() <= i {
            self.queues.resize_with(i + 1, || None);
        }
        // Callers already waiting stay (a changed strategy or skill list does not drop them).
        // Nor does round robin forget where it stopped.
        let (waiting, entries, cursor) = match self.queues[i].take() {
            Some(q) => (q.waiting, q.entries, q.cursor),
            None => Default::default(),
        };
        self.queues[i] = Some(QueueSlot {
            spec,
            members: BTreeSet::new(),
            online_members: 0,
            order: BTreeSet::new(),
            keys: HashMap::new(),
            pool: Vec::new(),
            pool_at: HashMap::new(),
            cursor,
            waiting,
            entries,
        });
        let agents: Vec<AgentId> = (0..self.agents.len() as u32)
            .map(AgentId)
            .filter(|a| self.agent(*a).is_some())
            .collect();
        for a in agents {
            self.join_if_fit(a, id);
        }
    }

    /// Takes agent `id` out: out of every queue, offered nothing, until [`Self::set_agent`]
    /// adds them again.
    pub fn remove_agent(&mut self, id: AgentId) {
        let Some(old) = self.agents.get_mut(id.0 as usize).and_then(Option::take) else {
            return;
        };
        for q in old.queues {
            self.leave(id, q, old.online);
        }
    }

    /// Adds (or replaces) agent `id`, offline; their queues follow from their skills.
    pub fn set_agent(&mut self, id: AgentId, spec: AgentSpec, now: Instant) {
        let i = id.0 as usize;
        if self.agents.len() <= i {
            self.agents.resize_with(i + 1, || None);
        }
        let kept = self.agents[i].take();
        if let Some(old) = &kept {
            for q in old.queues.clone() {
                self.leave(id, q, old.online);
            }
        }
        let idle_since = self.since_origin(now);
        self.agents[i] = Some(AgentSlot {
            skills: spec.skills.into_iter().collect(),
            rank: spec.rank,
            online: kept.as_ref().is_some_and(|k| k.online),
            ready: kept.as_ref().is_some_and(|k| k.ready),
            presence_allows: kept.as_ref().is_none_or(|k| k.presence_allows),
            busy: kept.as_ref().and_then(|k| k.busy),
            wrap_up: kept.as_ref().is_some_and(|k| k.wrap_up),
            held_back_until: kept.as_ref().and_then(|k| k.held_back_until),
            idle_since: kept.as_ref().map_or(idle_since, |k| k.idle_since),
            answered: kept.as_ref().map_or(0, |k| k.answered),
            talk: kept.as_ref().map_or(Duration::ZERO, |k| k.talk),
            queues: Vec::new(),
        });
        let queues: Vec<QueueId> = (0..self.queues.len() as u32)
            .map(QueueId)
            .filter(|q| self.queue(*q).is_some())
            .collect();
        for q in queues {
            self.join_if_fit(id, q);
        }
    }

    fn remove_queue_members(&mut self, id: QueueId) {
        let members: Vec<AgentId> = match self.queue(id) {
            Some(q) => q.members.iter().copied().collect(),
            None => return,
        };
        for a in members {
            let online = self.agent(a).is_some_and(|s| s.online);
            self.leave(a, id, online);
        }
    }

    fn join_if_fit(&mut self, a: AgentId, q: QueueId) {
        let (Some(agent), Some(queue)) = (self.agent(a), self.queue(q)) else {
            return;
        };
        let fits = queue
            .spec
            .skills
            .iter()
            .all(|(s, min)| agent.skills.get(s).is_some_and(|l| l >= min));
        if !fits {
            return;
        }
        let online = agent.online;
        if let Some(queue) = self.queue_mut(q) {
            queue.members.insert(a);
            if online {
                queue.online_members += 1;
            }
        }
        if let Some(agent) = self.agent_mut(a) {
            agent.queues.push(q);
        }
        self.index(a);
    }

    fn leave(&mut self, a: AgentId, q: QueueId, online: bool) {
        self.unindex_in(a, q);
        if let Some(queue) = self.queue_mut(q) {
            if queue.members.remove(&a) && online {
                queue.online_members -= 1;
            }
        }
        if let Some(agent) = self.agent_mut(a) {
            agent.queues.retain(|x| *x != q);
        }
    }

    // ----- agents' state ---------------------------------------------------------------------

    /// Logged in (any state but Offline) or not.
    pub fn set_online(&mut self, a: AgentId, online: bool, now: Instant) {
        let Some(agent) = self.agent_mut(a) else {
            return;
        };
        if agent.online == online {
            return;
        }
        agent.online = online;
        let queues = agent.queues.clone();
        for q in queues {
            if let Some(queue) = self.queue_mut(q) {
                if online {
                    queue.online_members += 1;
                } else {
                    queue.online_members -= 1;
                }
            }
        }
        self.touch_idle(a, now);
    }

    /// Ready, or Not ready (any reason).
    pub fn set_ready(&mut self, a: AgentId, ready: bool, now: Instant) {
        let Some(agent) = self.agent_mut(a) else {
            return;
        };
        if agent.ready == ready {
            return;
        }
        agent.ready = ready;
        self.touch_idle(a, now);
    }

    /// Whether Teams presence lets the agent take a call (not DoNotDisturb, Presenting or
    /// InAMeeting).
    pub fn set_presence_allows(&mut self, a: AgentId, allows: bool) {
        let Some(agent) = self.agent_mut(a) else {
            return;
        };
        agent.presence_allows = allows;
        self.reindex(a);
    }

    /// A call the engine did not place (a direct call, a consultation): while it lasts the
    /// agent is offered nothing.
    pub fn set_busy_elsewhere(&mut self, a: AgentId, call: Option<CallId>, now: Instant) {
        let Some(agent) = self.agent_mut(a) else {
            return;
        };
        agent.busy = call;
        if call.is_none() {
            self.touch_idle(a, now);
        } else {
            self.reindex(a);
        }
    }

    /// The agent's call ended after `talk`; they go to wrap-up (offered nothing) until
    /// [`Engine::wrap_up_done`].
    pub fn call_ended(&mut self, a: AgentId, talk: Duration) {
        let Some(agent) = self.agent_mut(a) else {
            return;
        };
        agent.busy = None;
        agent.wrap_up = true;
        agent.answered += 1;
        agent.talk += talk;
        self.reindex(a);
    }

    /// Wrap-up is over: the agent is idle from `now`.
    pub fn wrap_up_done(&mut self, a: AgentId, now: Instant) {
        let Some(agent) = self.agent_mut(a) else {
            return;
        };
        agent.wrap_up = false;
        self.touch_idle(a, now);
    }

    /// Round robin: the agent queue `q` offered its last call to (none yet). The owner keeps
    /// it so that a restart goes on where the queue stopped.
    pub fn round_robin_last(&self, q: QueueId) -> Option<AgentId> {
        self.queue(q)?.cursor.map(|(_, a)| a)
    }

    /// Round robin: queue `q` goes on after agent `a` (kept from before a restart). An agent
    /// the engine does not know is ignored.
    pub fn set_round_robin_last(&mut self, q: QueueId, a: AgentId) {
        let Some(rank) = self.agent(a).map(|s| s.rank) else {
            return;
        };
        if let Some(queue) = self.queue_mut(q) {
            queue.cursor = Some((rank, a));
        }
    }

    /// The agent queue `q` would offer its next call to now, for an agent who consults the
    /// queue: its strategy's choice (ring all: the first it would ring), passing over those in
    /// `skip` (people this consultation already rang, who declined or did not answer: the
    /// next in the strategy's order is taken instead). `None` when nobody of the queue is
    /// available besides them, or callers wait in it (they come first: a consultation never
    /// takes an agent before them). Only a look: round robin moves on when the owner rings
    /// that agent ([`Self::consulted`]), not before, so a consultation refused after this
    /// leaves the queue's place where it was.
    pub fn next_for_consult(&self, q: QueueId, skip: &[AgentId]) -> Option<AgentId> {
        if self.waiting(q) > 0 {
            return None;
        }
        let queue = self.queue(q)?;
        let open = |a: &AgentId| !skip.contains(a);
        match queue.spec.strategy {
            Strategy::Random => {
                let pool: Vec<AgentId> = queue.pool.iter().copied().filter(open).collect();
                (!pool.is_empty()).then(|| pool[rand::rng().random_range(0..pool.len())])
            }
            Strategy::RoundRobin => {
                // After the one offered last, wrapping round.
                let after = queue.cursor.map(|(r, a)| (u64::from(r), 0, r, a));
                let later = after.map(|k| {
                    queue
                        .order
                        .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                });
                later
                    .into_iter()
                    .flatten()
                    .chain(&queue.order)
                    .map(|k| k.3)
                    .find(open)
            }
            _ => queue.order.iter().map(|k| k.3).find(open),
        }
    }

    /// Agent `a`, chosen by [`Self::next_for_consult`] for queue `q`, is rung: round robin
    /// goes on after them, as after a call.
    pub fn consulted(&mut self, q: QueueId, a: AgentId) {
        if self
            .queue(q)
            .is_some_and(|x| x.spec.strategy == Strategy::RoundRobin)
        {
            self.set_round_robin_last(q, a);
        }
    }

    /// Whether the agent is busy with a call outside the queues (a direct offer).
    pub fn is_busy(&self, a: AgentId) -> bool {
        self.agent(a).is_some_and(|s| s.busy.is_some())
    }

    /// Whether the agent may be offered a call now.
    pub fn is_available(&self, a: AgentId) -> bool {
        self.agent(a).is_some_and(AgentSlot::available)
    }

    fn touch_idle(&mut self, a: AgentId, now: Instant) {
        let t = self.since_origin(now);
        if let Some(agent) = self.agent_mut(a) {
            agent.idle_since = t;
        }
        self.reindex(a);
    }

    // ----- the indexes -----------------------------------------------------------------------

    fn key(&self, a: AgentId, q: QueueId) -> Option<Key> {
        let agent = self.agent(a)?;
        let queue = self.queue(q)?;
        let idle = agent.idle_since.as_nanos() as u64;
        let rank = agent.rank;
        let (p, s) = match queue.spec.strategy {
            Strategy::LongestIdle => (idle, 0),
            Strategy::RoundRobin | Strategy::Linear | Strategy::RingAll | Strategy::Random => {
                (u64::from(rank), 0)
            }
            Strategy::FewestCalls => (agent.answered, idle),
            Strategy::LeastTalkTime => (agent.talk.as_millis() as u64, idle),
            Strategy::BestSkill => {
                let score: u64 = queue
                    .spec
                    .skills
                    .iter()
                    .map(|(s, _)| u64::from(*agent.skills.get(s).unwrap_or(&0)))
                    .sum();
                (u64::MAX - score, idle)
            }
        };
        Some((p, s, rank, a))
    }

    fn index(&mut self, a: AgentId) {
        let Some(agent) = self.agent(a) else { return };
        if !agent.available() {
            return;
        }
        for q in agent.queues.clone() {
            let Some(key) = self.key(a, q) else { continue };
            let Some(queue) = self.queue_mut(q) else {
                continue;
            };
            if queue.spec.strategy == Strategy::Random {
                if !queue.pool_at.contains_key(&a) {
                    queue.pool_at.insert(a, queue.pool.len());
                    queue.pool.push(a);
                }
            } else if queue.keys.insert(a, key).is_none() {
                queue.order.insert(key);
            }
        }
    }

    fn unindex_in(&mut self, a: AgentId, q: QueueId) {
        let Some(queue) = self.queue_mut(q) else {
            return;
        };
        if let Some(key) = queue.keys.remove(&a) {
            queue.order.remove(&key);
        }
        if let Some(at) = queue.pool_at.remove(&a) {
            queue.pool.swap_remove(at);
            if let Some(moved) = queue.pool.get(at).copied() {
                queue.pool_at.insert(moved, at);
            }
        }
    }

    /// Takes the agent out of every queue's index and puts them back as they are now.
    fn reindex(&mut self, a: AgentId) {
        let Some(agent) = self.agent(a) else { return };
        for q in agent.queues.clone() {
            self.unindex_in(a, q);
        }
        self.index(a);
    }

    /// The agents the queue's strategy offers the next call to (empty: none available).
    fn choose(&mut self, q: QueueId) -> Vec<AgentId> {
        let Some(queue) = self.queue_mut(q) else {
            return Vec::new();
        };
        match queue.spec.strategy {
            Strategy::RingAll => queue.order.iter().map(|k| k.3).collect(),
            Strategy::Random => {
                if queue.pool.is_empty() {
                    return Vec::new();
                }
                let i = rand::rng().random_range(0..queue.pool.len());
                vec![queue.pool[i]]
            }
            Strategy::RoundRobin => {
                let after = queue.cursor.map(|(r, a)| (u64::from(r), 0, r, a));
                let next = after
                    .and_then(|k| {
                        queue
                            .order
                            .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                            .next()
                    })
                    .or_else(|| queue.order.iter().next())
                    .copied();
                match next {
                    Some(k) => {
                        queue.cursor = Some((k.2, k.3));
                        vec![k.3]
                    }
                    None => Vec::new(),
                }
            }
            _ => queue
                .order
                .iter()
                .next()
                .map(|k| vec![k.3])
                .unwrap_or_default(),
        }
    }

    // ----- callers ---------------------------------------------------------------------------

    /// A caller joins queue `q` at `now` (their place comes from `caller.since`).
    pub fn enqueue(&mut self, q: QueueId, caller: Caller, now: Instant) -> Result<(), Refused> {
        if self.calls.contains_key(&caller.call) {
            return Err(Refused::AlreadyQueued);
        }
        let queue = self.queue(q).ok_or(Refused::NoSuchQueue)?;
        if queue.online_members == 0 {
            return Err(Refused::NoAgents);
        }
        if queue
            .spec
            .max_size
            .is_some_and(|m| queue.waiting.len() >= m)
        {
            return Err(Refused::Full);
        }
        self.put_back(q, caller, now);
        Ok(())
    }

    fn put_back(&mut self, q: QueueId, caller: Caller, entered: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let max_wait = self.queue(q).and_then(|x| x.spec.max_wait);
        let Some(queue) = self.queue_mut(q) else {
            return;
        };
        let priority = Reverse(caller.priority.clamp(1, 5));
        let old_head = queue.waiting.iter().next().copied();
        queue.waiting.insert((priority, caller.since, seq));
        queue.entries.insert(seq, (caller, entered));
        let new_head = queue.waiting.iter().next().copied();
        if old_head != new_head {
            if let Some((p, s, n)) = old_head {
                self.heads.remove(&(p, s, n, q));
            }
            if let Some((p, s, n)) = new_head {
                self.heads.insert((p, s, n, q));
            }
        }
        if let Some(w) = max_wait {
            self.deadlines.insert((entered + w, caller.call));
        }
        self.calls
            .insert(caller.call, Place::Waiting { queue: q, seq });
    }

    /// Takes a caller out of wherever they are (they hung up, or move to another queue or to
    /// the attendant); agents ringing for them are freed. Returns the caller, with their
    /// place, to hand to [`Engine::enqueue`] elsewhere.
    pub fn remove(&mut self, call: CallId) -> Option<Caller> {
        match self.calls.remove(&call)? {
            Place::Waiting { queue, seq } => {
                let (caller, entered) = self.unwait(queue, seq)?;
                self.drop_deadline(queue, caller.call, entered);
                Some(caller)
            }
            Place::Offered {
                queue,
                caller,
                entered,
                ringing,
            } => {
                self.drop_deadline(queue, caller.call, entered);
                for a in ringing {
                    self.free(a, call);
                }
                Some(caller)
            }
        }
    }

    fn drop_deadline(&mut self, q: QueueId, call: CallId, entered: Instant) {
        if let Some(w) = self.queue(q).and_then(|x| x.spec.max_wait) {
            self.deadlines.remove(&(entered + w, call));
        }
    }

    fn unwait(&mut self, q: QueueId, seq: u64) -> Option<(Caller, Instant)> {
        let queue = self.queue_mut(q)?;
        let (caller, entered) = queue.entries.remove(&seq)?;
        let old_head = queue.waiting.iter().next().copied();
        queue
            .waiting
            .remove(&(Reverse(caller.priority.clamp(1, 5)), caller.since, seq));
        let new_head = queue.waiting.iter().next().copied();
        if old_head != new_head {
            if let Some((p, s, n)) = old_head {
                self.heads.remove(&(p, s, n, q));
            }
            if let Some((p, s, n)) = new_head {
                self.heads.insert((p, s, n, q));
            }
        }
        Some((caller, entered))
    }

    fn free(&mut self, a: AgentId, call: CallId) {
        if let Some(agent) = self.agent_mut(a) {
            if agent.busy == Some(call) {
                agent.busy = None;
            }
        }
        self.reindex(a);
    }

    /// Offers the best waiting callers to the agents their queues choose, as long as both
    /// remain: callers in order of priority then wait across all queues, so a caller is never
    /// passed over for a later one of another queue that shares the agent.
    pub fn dispatch(&mut self) -> Vec<Offer> {
        let mut offers = Vec::new();
        let mut skip: BTreeSet<QueueId> = BTreeSet::new();
        while let Some(&(_, _, seq, q)) = self.heads.iter().find(|h| !skip.contains(&h.3)) {
            let agents = self.choose(q);
            if agents.is_empty() {
                skip.insert(q);
                continue;
            }
            let Some((caller, entered)) = self.unwait(q, seq) else {
                skip.insert(q);
                continue;
            };
            for a in &agents {
                if let Some(agent) = self.agent_mut(*a) {
                    agent.busy = Some(caller.call);
                }
                self.reindex(*a);
            }
            self.calls.insert(
                caller.call,
                Place::Offered {
                    queue: q,
                    caller,
                    entered,
                    ringing: agents.clone(),
                },
            );
            offers.push(Offer {
                call: caller.call,
                queue: q,
                agents,
            });
        }
        offers
    }

    /// An agent answered an offered call: it is theirs; the others ringing for it are freed.
    /// `false` when the call was not offered to them (it ended, or another agent answered).
    pub fn answered(&mut self, call: CallId, a: AgentId) -> bool {
        let Some(Place::Offered {
            queue,
            caller,
            entered,
            ringing,
        }) = self.calls.get(&call).cloned()
        else {
            return false;
        };
        if !ringing.contains(&a) {
            return false;
        }
        self.calls.remove(&call);
        self.drop_deadline(queue, caller.call, entered);
        for other in ringing.into_iter().filter(|x| *x != a) {
            self.free(other, call);
        }
        true
    }

    /// The offer to `a` ended without an answer: the agent is freed (and, after no answer,
    /// set as the queue says); when nobody else rings for the call, the caller goes back to
    /// their place in the queue.
    pub fn offer_ended(&mut self, call: CallId, a: AgentId, how: OfferEnd, now: Instant) {
        let Some(Place::Offered { ringing, .. }) = self.calls.get_mut(&call) else {
            return;
        };
        let before = ringing.len();
        ringing.retain(|x| *x != a);
        if ringing.len() == before {
            return;
        }
        let nobody = ringing.is_empty();
        if how == OfferEnd::Refused {
            let until = now + REFUSED_PAUSE;
            if let Some(agent) = self.agent_mut(a) {
                if let Some(old) = agent.held_back_until.replace(until) {
                    self.held_back.remove(&(old, a));
                }
                self.held_back.insert((until, a));
            }
        }
        self.free(a, call);
        if let OfferEnd::NoAnswer(AfterMissed::NotReady) = how {
            self.set_ready(a, false, now);
        }
        if nobody {
            if let Some(Place::Offered {
                queue,
                caller,
                entered,
                ..
            }) = self.calls.remove(&call)
            {
                self.drop_deadline(queue, caller.call, entered);
                self.put_back(queue, caller, entered);
            }
        }
    }

    /// When the engine next has work: a caller's maximum wait runs out, or an agent held back
    /// after a refused offer is to be released ([`Engine::release_held_back`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.deadlines.iter().next().map(|(t, _)| *t);
        let held = self.held_back.iter().next().map(|(t, _)| *t);
        deadline.into_iter().chain(held).min()
    }

    /// Agents held back after a refused offer whose pause is over by `now` are offered calls
    /// again; whether any is (then [`Engine::dispatch`]).
    pub fn release_held_back(&mut self, now: Instant) -> bool {
        let due: Vec<(Instant, AgentId)> = self
            .held_back
            .range(..=(now, AgentId(u32::MAX)))
            .copied()
            .collect();
        for (t, a) in &due {
            self.held_back.remove(&(*t, *a));
            if let Some(agent) = self.agent_mut(*a) {
                agent.held_back_until = None;
            }
            self.reindex(*a);
        }
        !due.is_empty()
    }

    /// Callers whose maximum wait ran out by `now`, taken out of their queues (with the queue
    /// they were in): the owner applies the queue's overflow action. A caller being offered
    /// is not taken (their phone is ringing).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(QueueId, Caller)> {
        let due: Vec<(Instant, CallId)> = self
            .deadlines
            .range(..=(now, CallId(u64::MAX)))
            .copied()
            .collect();
        let mut out = Vec::new();
        for (t, call) in due {
            if let Some(Place::Waiting { queue, .. }) = self.calls.get(&call) {
                let queue = *queue;
                if let Some(caller) = self.remove(call) {
                    out.push((queue, caller));
                }
            } else {
                self.deadlines.remove(&(t, call));
            }
        }
        out
    }

    /// The caller's place in their queue (1: next), while they wait.
    pub fn position(&self, call: CallId) -> Option<usize> {
        let Place::Waiting { queue, seq } = self.calls.get(&call)? else {
            return None;
        };
        let q = self.queue(*queue)?;
        q.waiting.iter().position(|w| w.2 == *seq).map(|p| p + 1)
    }

    /// Callers waiting in queue `q`.
    pub fn waiting(&self, q: QueueId) -> usize {
        self.queue(q).map_or(0, |x| x.waiting.len())
    }

    /// Members of queue `q` (logged in or not).
    pub fn members(&self, q: QueueId) -> Vec<AgentId> {
        self.queue(q)
            .map(|x| x.members.iter().copied().collect())
            .unwrap_or_default()
    }

    fn agent(&self, a: AgentId) -> Option<&AgentSlot> {
        self.agents.get(a.0 as usize)?.as_ref()
    }

    fn agent_mut(&mut self, a: AgentId) -> Option<&mut AgentSlot> {
        self.agents.get_mut(a.0 as usize)?.as_mut()
    }

    fn queue(&self, q: QueueId) -> Option<&QueueSlot> {
        self.queues.get(q.0 as usize)?.as_ref()
    }

    fn queue_mut(&mut self, q: QueueId) -> Option<&mut QueueSlot> {
        self.queues.get_mut(q.0 as usize)?.as_mut()
    }
}
