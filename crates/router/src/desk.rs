//! The contact center at run time: each tenant's agents (their SIP credentials, registration
//! and state) and its queues in a routing [`Engine`], shared by the HTTP API (an agent asks
//! for credentials, says Ready or Not ready, ends wrap-up) and the SIP edge (registrations,
//! offers, calls). One lock, held for short, synchronous steps only; the edge is woken when
//! the API changes something that may let a waiting caller through.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use rand::Rng;
use switchboard_api::{
    AgentState, AgentStatus, AgentsByState, QueueFigures, RequestedState, SipCredentials,
};

use crate::figures::QueueStats;

use crate::center::{AgentConfig, AttendantSpec, QueueConfig, TargetSpec, TenantSpec};
use crate::routing::{AfterMissed, AgentId, AgentSpec, Engine, QueueId, QueueSpec, SkillId};

/// An agent of a tenant, as the router follows them.
#[derive(Debug, Clone)]
pub struct AgentRt {
    pub upn: String,
    pub name: String,
    /// The SIP user name and password issued last (the password is never shown again).
    pub username: Option<String>,
    password: Option<String>,
    /// The address of record the phone registered, and its contact, while registered.
    pub aor: Option<String>,
    pub contact: Option<String>,
    pub ready: bool,
    pub reason: Option<String>,
    /// Queue calls ringing the agent's phone.
    pub ringing: u32,
    /// In a call the router placed.
    pub on_call: bool,
    /// In wrap-up until then.
    pub wrap_up_until: Option<Instant>,
    /// The record id of the last queue call the agent took.
    pub last_call: Option<String>,
    /// The queue of that call (none: it came directly, a transfer to the agent).
    pub last_queue: Option<QueueId>,
    /// The queue call in wrap-up: its queue, talk time, and when it ended (for handle time).
    pub handling: Option<(QueueId, std::time::Duration, Instant)>,
    /// The state last announced on the event stream.
    pub published: Option<(AgentState, Option<String>)>,
    /// When the agent entered that state (as the edge noticed it, every 100 ms at most).
    pub state_since: Option<Instant>,
    /// The agent's Entra object id (configured, or from their token), for Teams presence.
    pub object_id: Option<String>,
    /// Teams presence as last heard (`availability/activity`).
    pub teams: Option<String>,
    /// The skills the agent's Microsoft 365 profile lists (Graph `skills`, lower case), as
    /// last read; expert groups with `from_graph` count them.
    pub graph_skills: std::collections::BTreeSet<String>,
    /// The agent's consultation now, as the edge last set it.
    pub consult: Option<switchboard_api::ConsultStatus>,
    /// The agent's call this agent (a supervisor) takes part in, as the edge last set it.
    pub monitoring: Option<switchboard_api::Monitoring>,
    /// Removed through the API: unknown to sign-in and the registrar, offered nothing, not
    /// listed. Their slot stays (an [`AgentId`] is an index) and comes back if re-added.
    pub removed: bool,
    /// Until when (Unix seconds) the phone's registration lasts, as the registrar granted it.
    pub registered_until: Option<u64>,
    /// The session as last written to the store.
    saved: Option<AgentSession>,
}

/// What of an agent's sign-in is kept across a restart: the SIP credentials, Ready or Not
/// ready, and the phone's registration while it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSession {
    pub tenant: String,
    pub upn: String,
    pub username: String,
    pub password: String,
    pub ready: bool,
    pub reason: Option<String>,
    pub aor: Option<String>,
    pub contact: Option<String>,
    pub registered_until: Option<u64>,
}

impl AgentRt {
    /// An agent as configured, signed out.
    fn new(a: &AgentConfig) -> Self {
        Self {
            upn: a.upn.clone(),
            name: a.name.clone(),
            username: None,
            password: None,
            aor: None,
            contact: None,
            ready: false,
            reason: None,
            ringing: 0,
            on_call: false,
            wrap_up_until: None,
            last_call: None,
            last_queue: None,
            handling: None,
            published: None,
            state_since: None,
            object_id: a.object_id.as_ref().map(|o| o.to_ascii_lowercase()),
            teams: None,
            graph_skills: Default::default(),
            consult: None,
            monitoring: None,
            removed: false,
            registered_until: None,
            saved: None,
        }
    }
}

impl AgentRt {
    /// The session to keep across a restart, while the agent holds credentials.
    fn session(&self, tenant: &str) -> Option<AgentSession> {
        if self.removed {
            return None;
        }
        Some(AgentSession {
            tenant: tenant.to_owned(),
            upn: self.upn.to_ascii_lowercase(),
            username: self.username.clone()?,
            password: self.password.clone()?,
            ready: self.ready,
            reason: self.reason.clone(),
            aor: self.aor.clone(),
            contact: self.contact.clone(),
            registered_until: self.contact.as_ref().and(self.registered_until),
        })
    }

    pub fn state(&self) -> AgentState {
        if self.contact.is_none() {
            AgentState::Offline
        } else if self.on_call {
            AgentState::OnCall
        } else if self.ringing > 0 {
            AgentState::Ringing
        } else if self.wrap_up_until.is_some() {
            AgentState::WrapUp
        } else if self.ready {
            AgentState::Ready
        } else {
            AgentState::NotReady
        }
    }
}

/// A tenant's queues and agents.
pub struct TenantRt {
    pub spec: TenantSpec,
    pub engine: Engine,
    pub queue_ids: HashMap<String, QueueId>,
    /// By [`QueueId`].
    pub queues: Vec<QueueConfig>,
    /// By [`AgentId`].
    pub agents: Vec<AgentRt>,
    by_upn: HashMap<String, AgentId>,
    /// Callers in a menu hold an index here: an attendant removed through the API keeps its
    /// place (in `retired_attendants`) so their menu goes on, and is found by no route.
    pub attendants: Vec<AttendantSpec>,
    /// Indexes in `attendants` of those removed.
    pub retired_attendants: std::collections::HashSet<usize>,
    /// Queues removed through the API: found by no route and listed nowhere; their slot
    /// (figures, handle times) comes back if a queue of that name is added again.
    pub retired_queues: std::collections::HashSet<QueueId>,
    /// By [`QueueId`]: the day's figures.
    pub stats: Vec<QueueStats>,
    /// By [`QueueId`]: the last calls' handle times, for wait estimates.
    pub handle_times: Vec<crate::routing::estimate::HandleTimes>,
    /// The tenant's trunks, in the configuration's order: calls now and health.
    pub trunks: Vec<crate::trunks::TrunkRt>,
    /// Skill names (lower case) → the engine's ids.
    skills: HashMap<String, SkillId>,
    /// UPNs (lower case) of agents added, changed or removed through the API.
    pub from_api: std::collections::HashSet<String>,
    /// Names of queues added or changed through the API.
    pub queues_from_api: std::collections::HashSet<String>,
    /// Numbers added, changed or removed through the API.
    pub numbers_from_api: std::collections::HashSet<String>,
    /// Expert groups (and, as `""`, the toll rules) set through the API.
    pub others_from_api: std::collections::HashSet<String>,
    /// Round-robin queues: the UPN of the agent offered the last call, as last written to
    /// the store.
    round_robin_saved: HashMap<QueueId, String>,
    /// Agents' consultations waiting in queues now: the call's number in the edge → the queue.
    pub consult_waits: std::collections::BTreeMap<u64, QueueId>,
}

/// Why an agent could not be added, changed or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentChangeError {
    #[error("no tenant {0:?} in this router's configuration")]
    NoTenant(String),
    #[error("{0} is not an agent of this tenant")]
    Unknown(String),
    #[error("{0} is on a call or being rung: remove them when the call is over")]
    Busy(String),
    #[error("{0} is an agent of tenant {1:?} already: an agent belongs to one tenant")]
    Elsewhere(String, String),
    /// The change would make a configuration the file would refuse: the key and why.
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is not a number of this tenant")]
    NoNumber(String),
    /// Something to remove that is not there: what.
    #[error("{0}")]
    Missing(String),
    /// Something that cannot be removed while calls use it: what and what to do.
    #[error("{0}")]
    InUse(String),
}

impl From<RemoveAgentError> for AgentChangeError {
    fn from(e: RemoveAgentError) -> Self {
        match e {
            RemoveAgentError::Unknown(u) => AgentChangeError::Unknown(u),
            RemoveAgentError::Busy(u) => AgentChangeError::Busy(u),
        }
    }
}

/// Why an agent cannot be removed now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoveAgentError {
    #[error("{0} is not an agent of this tenant")]
    Unknown(String),
    #[error("{0} is on a call or being rung: remove them when the call is over")]
    Busy(String),
}

/// Where a call goes, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Queue(QueueId),
    /// An attendant, by its index in the tenant's list.
    Attendant(usize),
    /// One agent's phone, outside any queue (a transfer to a person).
    Agent(AgentId),
    /// Nowhere: the number's opening hours are over and it names no `closed` route; the
    /// caller hears that the tenant is closed and the call ends.
    Closed,
    /// An expert, chosen from their group, rung outside the queues.
    Expert(AgentId),
    /// An expert group with nobody free now.
    NoExpert,
    /// An outside number, called on the tenant's outbound trunk.
    Outside(E164),
}

/// An E.164 number (`+` and up to 15 digits) held by value, so a [`Route`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct E164 {
    text: [u8; 16],
    len: u8,
}

impl E164 {
    /// `number` when it is E.164 (`+`, then 2 to 15 digits, the first not 0).
    pub fn new(number: &str) -> Option<Self> {
        if !crate::center::is_e164(number) {
            return None;
        }
        let mut text = [0u8; 16];
        text[..number.len()].copy_from_slice(number.as_bytes());
        Some(Self {
            text,
            len: number.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII from `new` is ever stored.
        std::str::from_utf8(&self.text[..self.len as usize]).unwrap_or_default()
    }
}

impl std::fmt::Debug for E164 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TenantRt {
    fn skill(&mut self, name: &str) -> SkillId {
        let n = self.skills.len() as SkillId;
        *self.skills.entry(name.to_ascii_lowercase()).or_insert(n)
    }

    /// Adds agent `a` (signed out), or sets a known agent's name, skills and object id — a
    /// removed one comes back. The queues use the new skills from their next choice. Returns
    /// whether the agent is new.
    pub fn upsert_agent(&mut self, a: &AgentConfig, now: Instant) -> bool {
        let key = a.upn.to_ascii_lowercase();
        let skills = a.skills.iter().map(|(k, v)| (self.skill(k), *v)).collect();
        let known = self
            .agents
            .iter()
            .position(|r| r.upn.eq_ignore_ascii_case(&a.upn));
        let (id, new) = match known {
            Some(i) => {
                let r = &mut self.agents[i];
                let new = r.removed;
                r.removed = false;
                r.name = a.name.clone();
                r.object_id = a.object_id.as_ref().map(|o| o.to_ascii_lowercase());
                (AgentId(i as u32), new)
            }
            None => {
                self.agents.push(AgentRt::new(a));
                (AgentId(self.agents.len() as u32 - 1), true)
            }
        };
        self.engine
            .set_agent(id, AgentSpec { skills, rank: id.0 }, now);
        self.by_upn.insert(key.clone(), id);
        match self
            .spec
            .agents
            .iter_mut()
            .find(|c| c.upn.eq_ignore_ascii_case(&a.upn))
        {
            Some(c) => *c = a.clone(),
            None => self.spec.agents.push(a.clone()),
        }
        self.from_api.insert(key);
        new
    }

    /// Removes agent `upn`: their credentials stop working and their phone is forgotten, no
    /// call is offered to them, and sign-in no longer knows them. Refused while they are on
    /// a call or rung. Returns the SIP user name that stopped working.
    pub fn remove_agent(&mut self, upn: &str) -> Result<Option<String>, RemoveAgentError> {
        let key = upn.to_ascii_lowercase();
        let id = self.removable(upn)?;
        let old = self.agent_mut(id).and_then(|r| {
            r.removed = true;
            r.password = None;
            r.contact = None;
            r.aor = None;
            r.ready = false;
            r.wrap_up_until = None;
            r.username.take()
        });
        self.engine.remove_agent(id);
        self.by_upn.remove(&key);
        self.spec
            .agents
            .retain(|c| !c.upn.eq_ignore_ascii_case(upn));
        self.from_api.insert(key);
        Ok(old)
    }

    pub fn agent(&self, a: AgentId) -> Option<&AgentRt> {
        self.agents.get(a.0 as usize)
    }

    /// Adds queue `q`, or replaces the queue of that name's settings; callers waiting in it
    /// stay, and its members follow from the new skills. Returns whether it is new.
    pub fn upsert_queue(&mut self, q: QueueConfig) -> bool {
        let mut skill = |name: &str| {
            let n = self.skills.len() as SkillId;
            *self.skills.entry(name.to_ascii_lowercase()).or_insert(n)
        };
        let spec = queue_spec(&q, &mut skill);
        let again = self.retired_queues.iter().copied().find(|id| {
            self.queues
                .get(id.0 as usize)
                .is_some_and(|x| x.name == q.name)
        });
        let (id, new) = match (self.queue_ids.get(&q.name), again) {
            (Some(id), _) => (*id, false),
            (None, Some(id)) => {
                self.retired_queues.remove(&id);
                self.queue_ids.insert(q.name.clone(), id);
                self.spec.queues.push(q.clone());
                (id, true)
            }
            (None, None) => {
                let id = QueueId(self.queues.len() as u32);
                self.queue_ids.insert(q.name.clone(), id);
                self.queues.push(q.clone());
                self.spec.queues.push(q.clone());
                self.stats.push(QueueStats::default());
                self.handle_times
                    .push(crate::routing::estimate::HandleTimes::new(
                        100,
                        std::time::Duration::from_secs(180),
                    ));
                (id, true)
            }
        };
        self.engine.set_queue(id, spec);
        self.queues_from_api.insert(q.name.clone());
        if let Some(c) = self.spec.queues.iter_mut().find(|c| c.name == q.name) {
            *c = q.clone();
        }
        self.queues[id.0 as usize] = q;
        new
    }

    /// Removes queue `name` (`dry`: only says whether it could): not while callers wait in
    /// it. Callers being offered from it stay with it until served.
    fn remove_queue(&mut self, name: &str, dry: bool) -> Result<(), AgentChangeError> {
        let id = *self.queue_ids.get(name).ok_or_else(|| {
            AgentChangeError::Missing(format!("no queue {name:?} in this tenant"))
        })?;
        let waiting = self.engine.waiting(id);
        if waiting > 0 {
            return Err(AgentChangeError::InUse(format!(
                "{waiting} caller(s) are waiting in queue {name:?}: send its numbers and routes elsewhere, then remove it once they are served"
            )));
        }
        if !dry {
            self.queue_ids.remove(name);
            self.spec.queues.retain(|q| q.name != name);
            self.retired_queues.insert(id);
            self.queues_from_api.insert(name.to_owned());
        }
        Ok(())
    }

    /// The agent whose UPN is `upn` (UPNs compare without case), removed or not.
    pub fn agent_by_upn(&self, upn: &str) -> Option<AgentId> {
        self.by_upn.get(&upn.to_ascii_lowercase()).copied()
    }

    /// Agent `upn`, when they may be removed now (not on a call or rung).
    fn removable(&self, upn: &str) -> Result<AgentId, RemoveAgentError> {
        let id = self
            .agent_by_upn(upn)
            .ok_or_else(|| RemoveAgentError::Unknown(upn.to_owned()))?;
        if self.is_busy(id) {
            return Err(RemoveAgentError::Busy(upn.to_owned()));
        }
        Ok(id)
    }

    /// Whether agent `a` is on a call, being rung or consulting.
    fn is_busy(&self, a: AgentId) -> bool {
        self.agent(a)
            .is_some_and(|r| r.on_call || r.ringing > 0 || r.consult.is_some())
            || self.engine.is_busy(a)
    }
    pub fn agent_mut(&mut self, a: AgentId) -> Option<&mut AgentRt> {
        self.agents.get_mut(a.0 as usize)
    }
    pub fn queue(&self, q: QueueId) -> Option<&QueueConfig> {
        self.queues.get(q.0 as usize)
    }
    /// Whether agent `a` can take an expert's call now: a registered phone, no call, not
    /// ringing or in wrap-up, and Available in Teams where the router follows presence (an
    /// expert needs not be Ready for queue calls).
    pub fn expert_free(&self, a: AgentId) -> bool {
        let Some(r) = self.agent(a) else {
            return false;
        };
        let teams_ok = r
            .teams
            .as_deref()
            .is_none_or(|p| p.starts_with("Available/") || p.starts_with("AvailableIdle/"));
        (r.contact.is_some() || self.teams_reach(a).is_some())
            && !r.on_call
            && r.ringing == 0
            && r.wrap_up_until.is_none()
            && !self.engine.is_busy(a)
            && teams_ok
    }

    /// Agent `a`'s level as an expert of group `g`: the configuration's level of the group's
    /// skill, or, where the group counts Graph `skills` and the configuration gives none,
    /// the group's lowest level when the agent's profile lists the skill; `None` when they
    /// are not one of its experts.
    pub fn expert_level(&self, a: AgentId, g: &crate::center::ExpertGroupSpec) -> Option<u8> {
        let skill = g.skill.to_lowercase();
        let level = match self.spec.agents.get(a.0 as usize)?.skills.get(&skill) {
            Some(l) => *l,
            None if g.from_graph && self.agent(a)?.graph_skills.contains(&skill) => g.min_level,
            None => return None,
        };
        (level >= g.min_level).then_some(level)
    }

    /// Where agent `a` is rung in Teams when no phone of theirs is registered: the tenant's
    /// first Direct Routing trunk, and their Teams number.
    pub fn teams_reach(&self, a: AgentId) -> Option<(usize, String)> {
        let number = self.spec.agents.get(a.0 as usize)?.teams_number.clone()?;
        let j = self
            .spec
            .trunks
            .iter()
            .position(|t| t.direct_routing.is_some() && !t.retired)?;
        Some((j, number))
    }

    /// The best expert of group `g` free now: the highest level of its skill, then the one
    /// listed first; `None` when nobody is.
    pub fn expert(&self, g: &crate::center::ExpertGroupSpec) -> Option<AgentId> {
        self.best_expert(g, |_| true)
    }

    /// [`Self::expert`] among those `pick` allows.
    fn best_expert(
        &self,
        g: &crate::center::ExpertGroupSpec,
        pick: impl Fn(AgentId) -> bool,
    ) -> Option<AgentId> {
        (0..self.spec.agents.len())
            .filter_map(|i| {
                let id = AgentId(i as u32);
                let level = self.expert_level(id, g)?;
                (self.expert_free(id) && pick(id)).then_some((level, id))
            })
            .max_by(|x, y| x.0.cmp(&y.0).then(y.1 .0.cmp(&x.1 .0)))
            .map(|(_, id)| id)
    }

    /// [`Self::transfer_target`] for a target rung in Teams (`teams:<target>`): an expert
    /// group gives its best expert free now who has a Teams number.
    pub fn transfer_target_in_teams(&self, user: &str, host: &str) -> Option<Route> {
        if let Some(g) = self
            .spec
            .experts
            .iter()
            .find(|g| g.name.eq_ignore_ascii_case(user))
        {
            let best = self.best_expert(g, |a| self.teams_reach(a).is_some());
            return Some(best.map_or(Route::NoExpert, Route::Expert));
        }
        self.transfer_target(user, host)
    }

    /// What a transfer target's `user@host` names in this tenant: a queue, attendant or
    /// expert group by its name (any host: it stays inside the tenant), or an agent by UPN.
    pub fn transfer_target(&self, user: &str, host: &str) -> Option<Route> {
        if let Some(q) = self.queues.iter().enumerate().position(|(i, q)| {
            q.name.eq_ignore_ascii_case(user) && !self.retired_queues.contains(&QueueId(i as u32))
        }) {
            return Some(Route::Queue(QueueId(q as u32)));
        }
        if let Some(a) = self.attendant_named(user) {
            return Some(Route::Attendant(a));
        }
        if let Some(g) = self
            .spec
            .experts
            .iter()
            .find(|g| g.name.eq_ignore_ascii_case(user))
        {
            return Some(self.expert(g).map_or(Route::NoExpert, Route::Expert));
        }
        if let Some(n) = self.number(user) {
            // One of the tenant's numbers (a Teams user's REFER names a number): where a
            // call to it goes.
            return self.route(&crate::center::TargetSpec {
                queue: n.queue.clone(),
                attendant: n.attendant.clone(),
                ..Default::default()
            });
        }
        self.agent_by_upn(&format!("{user}@{host}"))
            .map(Route::Agent)
    }

    /// The tenant's number `user` names (`+18005550100`, with or without the `+`).
    pub fn number(&self, user: &str) -> Option<&crate::center::NumberSpec> {
        if user.is_empty() {
            return None;
        }
        self.spec
            .numbers
            .iter()
            .find(|n| n.number == user || n.number.strip_prefix('+') == Some(user))
    }

    /// The agent finished call `call` after `talk`: off the call, into wrap-up for the
    /// queue's time; returns the wrap-up seconds.
    pub fn agent_done(
        &mut self,
        agent: AgentId,
        queue: Option<QueueId>,
        talk: std::time::Duration,
        now: Instant,
    ) -> u64 {
        self.engine.call_ended(agent, talk);
        let secs = queue
            .and_then(|q| self.queue(q))
            .map_or(0, |q| q.wrap_up_seconds);
        if let Some(r) = self.agent_mut(agent) {
            r.on_call = false;
            r.wrap_up_until = Some(now + std::time::Duration::from_secs(secs));
            r.handling = queue.map(|q| (q, talk, now));
        }
        secs
    }

    /// The route a configured target names (checked at start, so always found).
    /// Where a call for a number or attendant with these hours goes at `at`: `None` while
    /// open; otherwise what the record says (`closed (office)`) and the route — the holiday
    /// route on a holiday, else the closed route, else [`Route::Closed`].
    pub fn after_hours(
        &self,
        schedule: Option<&str>,
        closed: Option<&TargetSpec>,
        holiday: Option<&TargetSpec>,
        at: jiff::Timestamp,
    ) -> Option<(String, Route)> {
        use crate::hours::Hours;
        let name = schedule?;
        let s = self.spec.schedules.iter().find(|s| s.name == name)?;
        let state = s.state(at);
        let to = match state {
            Hours::Open => return None,
            Hours::Holiday => holiday.or(closed),
            Hours::Closed => closed,
        };
        let route = to.and_then(|t| self.route(t)).unwrap_or(Route::Closed);
        Some((format!("{} ({name})", state.word()), route))
    }

    /// The index of attendant `name` (any case), unless removed.
    fn attendant_named(&self, name: &str) -> Option<usize> {
        self.attendants.iter().enumerate().position(|(i, a)| {
            a.name.eq_ignore_ascii_case(name) && !self.retired_attendants.contains(&i)
        })
    }

    /// Brings the attendants callers enter in line with `spec.attendants` after a change
    /// of attendant `name`: changed in place (callers in its menu hear the new one from
    /// their next step), added (again in its old place when it was removed before), or
    /// retired (callers in its menu finish it as it was).
    fn attendant_changed(&mut self, name: &str) {
        let now = self
            .spec
            .attendants
            .iter()
            .find(|a| a.name == name)
            .cloned();
        let at = self.attendants.iter().position(|a| a.name == name);
        match (at, now) {
            (Some(i), Some(a)) => {
                self.attendants[i] = a;
                self.retired_attendants.remove(&i);
            }
            (None, Some(a)) => self.attendants.push(a),
            (Some(i), None) => {
                self.retired_attendants.insert(i);
            }
            (None, None) => {}
        }
    }

    pub fn route(&self, t: &TargetSpec) -> Option<Route> {
        if let Some(upn) = &t.agent {
            return self.agent_by_upn(upn.get_ref()).map(Route::Agent);
        }
        if let Some(number) = &t.number {
            return E164::new(number.get_ref()).map(Route::Outside);
        }
        if let Some(e) = &t.expert {
            let g = self.spec.experts.iter().find(|g| g.name == *e.get_ref())?;
            return Some(self.expert(g).map_or(Route::NoExpert, Route::Expert));
        }
        match (&t.queue, &t.attendant) {
            (Some(q), _) => self.queue_ids.get(q.get_ref()).map(|q| Route::Queue(*q)),
            (None, Some(a)) => self.attendant_named(a.get_ref()).map(Route::Attendant),
            (None, None) => None,
        }
    }
    /// Caller `call`'s place in queue `q` and the expected wait: `position` calls must end
    /// first, served by the queue's staffed agents (logged in, not Not ready) at its average
    /// handle time. `None` when the caller is not waiting there (an agent rings).
    pub fn place(
        &self,
        q: QueueId,
        call: crate::routing::CallId,
    ) -> Option<(usize, Option<std::time::Duration>)> {
        let position = self.engine.position(call)?;
        let staffed = self.staffed(q);
        let aht = self.handle_times.get(q.0 as usize)?.aht();
        Some((
            position,
            crate::routing::estimate::position_wait(position, staffed, aht),
        ))
    }

    /// Agents staffing queue `q`: logged in and not Not ready.
    fn staffed(&self, q: QueueId) -> u32 {
        self.engine
            .members(q)
            .into_iter()
            .filter_map(|a| self.agent(a))
            .filter(|r| !matches!(r.state(), AgentState::Offline | AgentState::NotReady))
            .count() as u32
    }

    /// Erlang C on the last half hour's arrivals, the queue's handle time and its staffing now.
    fn forecast(
        &self,
        id: QueueId,
        q: &QueueConfig,
        arrivals: &crate::routing::estimate::Arrivals,
        now: Instant,
    ) -> switchboard_api::QueueForecast {
        use crate::routing::estimate as est;
        let rate = arrivals.rate_at(now);
        let aht = self
            .handle_times
            .get(id.0 as usize)
            .map_or(std::time::Duration::from_secs(180), est::HandleTimes::aht);
        let traffic = rate * aht.as_secs_f64();
        let staffed = self.staffed(id);
        let target = std::time::Duration::from_secs(q.service_level_seconds);
        let keeps_up = f64::from(staffed) > traffic;
        let round = |x: f64, places: i32| {
            let f = 10f64.powi(places);
            (x * f).round() / f
        };
        switchboard_api::QueueForecast {
            arrivals_per_hour: round(rate * 3600.0, 1),
            aht_seconds: round(aht.as_secs_f64(), 1),
            traffic_erlangs: round(traffic, 3),
            staffed,
            wait_probability: round(100.0 * est::erlang_c(staffed, traffic), 1),
            expected_asa_seconds: est::average_speed_of_answer(staffed, traffic, aht)
                .map(|d| round(d.as_secs_f64(), 1)),
            expected_service_level: keeps_up
                .then(|| round(100.0 * est::service_level(staffed, traffic, aht, target), 1)),
            service_level_target: q.service_level_target,
            agents_needed: est::agents_needed(
                traffic,
                aht,
                target,
                q.service_level_target / 100.0,
                10_000,
            ),
        }
    }

    /// Every queue's figures now.
    pub fn figures(&self, now: Instant) -> Vec<QueueFigures> {
        self.queues
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let id = QueueId(*i as u32);
                !self.retired_queues.contains(&id) || self.engine.waiting(id) > 0
            })
            .map(|(i, q)| {
                let id = QueueId(i as u32);
                let mut agents = AgentsByState::default();
                for a in self.engine.members(id) {
                    let Some(r) = self.agent(a) else { continue };
                    let n = match r.state() {
                        AgentState::Ready => &mut agents.ready,
                        AgentState::NotReady => &mut agents.not_ready,
                        AgentState::Ringing => &mut agents.ringing,
                        AgentState::OnCall => &mut agents.on_call,
                        AgentState::WrapUp => &mut agents.wrap_up,
                        AgentState::Offline => &mut agents.offline,
                    };
                    *n += 1;
                }
                let st = &self.stats[i];
                let forecast = self.forecast(id, q, &st.arrivals.0, now);
                QueueFigures {
                    tenant: self.spec.id.clone(),
                    queue: q.name.clone(),
                    waiting: st.waiting() as u32,
                    consultations_waiting: self.consult_waits.values().filter(|w| **w == id).count()
                        as u32,
                    longest_wait_seconds: st.longest_wait(now).as_secs(),
                    agents,
                    offered: st.offered,
                    answered: st.answered,
                    answered_in_time: st.answered_in_time,
                    abandoned: st.abandoned,
                    abandoned_short: st.abandoned_short,
                    overflowed: st.overflowed,
                    service_level_seconds: q.service_level_seconds,
                    forecast,
                    service_level: st.service_level(),
                    asa_seconds: st.asa(),
                    aht_seconds: st.aht(),
                    abandonment_rate: st.abandonment_rate(),
                }
            })
            .collect()
    }

    /// Agent `a`'s phone rang out unanswered for queue `q` (none: a direct offer): Not ready
    /// with the queue's `missed_reason` ("missed call" by default), unless the queue says
    /// `not_ready_after_missed = false`. Sets the agent's own record; where the agent goes in
    /// the engine is the caller's, with what this returns.
    pub fn rang_out(&mut self, q: Option<QueueId>, a: AgentId) -> AfterMissed {
        let spec = q.and_then(|q| self.queue(q));
        if !spec.is_none_or(|q| q.not_ready_after_missed) {
            return AfterMissed::Ready;
        }
        let reason = spec
            .and_then(|q| q.missed_reason.clone())
            .unwrap_or_else(|| "missed call".into());
        if let Some(r) = self.agent_mut(a) {
            r.ready = false;
            r.reason = Some(reason);
        }
        AfterMissed::NotReady
    }

    /// Agent `a`'s UPN (empty for an id the tenant does not know).
    pub fn upn_of(&self, a: AgentId) -> String {
        self.agent(a).map(|r| r.upn.clone()).unwrap_or_default()
    }

    /// Agents of queue `q` logged in now (in any state but Offline) besides `me` (the agent
    /// consulting) and those `passed` over (whom their consultation already rang): those a
    /// consultation of the queue may wait for.
    pub fn queue_staffed(&self, q: QueueId, me: AgentId, passed: &[AgentId]) -> u32 {
        self.engine
            .members(q)
            .iter()
            .filter(|a| **a != me && !passed.contains(a))
            .filter(|a| {
                self.agent(**a)
                    .is_some_and(|r| r.state() != AgentState::Offline)
            })
            .count() as u32
    }

    /// Whom and where agent `me` may transfer or consult now (`GET /v1/agents/me/targets`).
    pub fn targets(&self, me: AgentId) -> switchboard_api::TransferTargets {
        use switchboard_api::{
            ColleagueTarget, ExpertGroupTarget, ExpertTarget, QueueTarget, TransferTargets,
        };
        let name_of = |r: &AgentRt| {
            if r.name.is_empty() {
                r.upn.clone()
            } else {
                r.name.clone()
            }
        };
        let queues = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let members = self.engine.members(QueueId(i as u32));
                QueueTarget {
                    name: q.name.clone(),
                    waiting: self.stats.get(i).map_or(0, |s| s.waiting() as u32),
                    ready: members
                        .iter()
                        .filter(|a| {
                            self.agent(**a)
                                .is_some_and(|r| r.state() == AgentState::Ready)
                        })
                        .count() as u32,
                    staffed: self.queue_staffed(QueueId(i as u32), me, &[]),
                    mine: members.contains(&me),
                }
            })
            .collect();
        let colleagues = self
            .agents
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 != me.0)
            .map(|(i, r)| ColleagueTarget {
                upn: r.upn.clone(),
                name: name_of(r),
                state: r.state(),
                teams: r.teams.clone(),
                available: self.expert_free(AgentId(i as u32)),
                transferable: r.contact.is_some() && self.engine.is_available(AgentId(i as u32)),
                in_teams: self.teams_reach(AgentId(i as u32)).is_some(),
            })
            .collect();
        let experts = self
            .spec
            .experts
            .iter()
            .map(|g| {
                let mut available = Vec::new();
                let mut unavailable = 0;
                for i in 0..self.spec.agents.len() {
                    let id = AgentId(i as u32);
                    let Some(level) = self.expert_level(id, g) else {
                        continue;
                    };
                    if id == me {
                        continue;
                    }
                    match self.agent(id).filter(|_| self.expert_free(id)) {
                        Some(r) => available.push(ExpertTarget {
                            upn: r.upn.clone(),
                            name: name_of(r),
                            level,
                            teams: r.teams.clone(),
                            in_teams: self.teams_reach(id).is_some(),
                        }),
                        None => unavailable += 1,
                    }
                }
                // The best first, as the group's name picks: highest level, then listed first.
                available.sort_by_key(|e| std::cmp::Reverse(e.level));
                ExpertGroupTarget {
                    name: g.name.clone(),
                    skill: g.skill.clone(),
                    min_level: g.min_level,
                    available,
                    unavailable,
                }
            })
            .collect();
        TransferTargets {
            tenant: self.spec.id.clone(),
            queues,
            attendants: self
                .spec
                .attendants
                .iter()
                .map(|a| a.name.clone())
                .collect(),
            colleagues,
            experts,
            outside_numbers: self.spec.outbound.is_some(),
        }
    }

    /// Agents whose state changed since it was last announced, marked as announced now.
    pub fn changed_agents(&mut self, now: Instant) -> Vec<AgentStatus> {
        let at = now;
        let mut out = Vec::new();
        for i in 0..self.agents.len() {
            let a = AgentId(i as u32);
            let Some(status) = self.status(a, now) else {
                continue;
            };
            let now = (status.state, status.reason.clone());
            if let Some(r) = self.agent_mut(a) {
                if r.published.as_ref() != Some(&now) {
                    r.published = Some(now);
                    r.state_since = Some(at);
                    out.push(status);
                }
            }
        }
        out
    }

    /// The tenant's agents as the supervisors' board shows them, at `now`.
    pub fn board(&self, now: Instant) -> Vec<switchboard_api::BoardAgent> {
        (0..self.agents.len())
            .filter_map(|i| {
                let a = AgentId(i as u32);
                let status = self.status(a, now)?;
                let r = self.agent(a)?;
                let busy = matches!(status.state, AgentState::OnCall | AgentState::WrapUp);
                Some(switchboard_api::BoardAgent {
                    name: r.name.clone(),
                    // A change the edge has not noticed yet is new: 0 s.
                    state_seconds: match (&r.published, r.state_since) {
                        (Some(p), Some(t)) if *p == (status.state, status.reason.clone()) => {
                            Some(now.saturating_duration_since(t).as_secs())
                        }
                        (Some(_), _) => Some(0),
                        (None, _) => None,
                    },
                    queue: r
                        .last_queue
                        .filter(|_| busy)
                        .and_then(|q| self.queue(q))
                        .map(|q| q.name.clone()),
                    status,
                })
            })
            .collect()
    }

    /// Agent `a`'s state as the API says it, at `now` (for the wrap-up's seconds left).
    fn status(&self, a: AgentId, now: Instant) -> Option<AgentStatus> {
        let r = self.agent(a).filter(|r| !r.removed)?;
        let state = r.state();
        Some(AgentStatus {
            agent: r.upn.clone(),
            tenant: self.spec.id.clone(),
            state: r.state(),
            reason: (r.state() == AgentState::NotReady)
                .then(|| r.reason.clone())
                .flatten(),
            registered: r.contact.is_some(),
            teams: r.teams.clone(),
            dispositions: r
                .last_queue
                .and_then(|q| self.queue(q))
                .map(|q| q.dispositions.clone())
                .unwrap_or_default(),
            consult: r.consult.clone(),
            wrap_up_seconds_left: r
                .wrap_up_until
                .filter(|_| state == AgentState::WrapUp)
                .map(|until| seconds_up(until.saturating_duration_since(now))),
            monitoring: r.monitoring.clone(),
        })
    }
}

/// Whole seconds, rounded up (a countdown that says 0 only once it is over).
fn seconds_up(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What the API asks of the SIP edge.
#[derive(Debug)]
pub enum EdgeCommand {
    /// Transfer the call agent (tenant, agent) is talking on to `target` (a queue,
    /// attendant or expert group by name, or a colleague by UPN); the answer says where it
    /// went (the record's step) or why not.
    Transfer {
        tenant: usize,
        agent: AgentId,
        target: String,
        reply: tokio::sync::oneshot::Sender<Result<String, TransferRefusal>>,
    },
    /// The configuration API added or changed a trunk: find trunks anew.
    TrunksChanged,
    /// The configuration API added or changed an attendant: read greetings not read yet.
    GreetingsChanged,
    /// A step of the consultation of the agent (tenant, agent) on their call.
    Consult {
        tenant: usize,
        agent: AgentId,
        action: ConsultAction,
        reply: tokio::sync::oneshot::Sender<Result<String, ConsultRefusal>>,
    },
    /// Supervisor `supervisor` of tenant `tenant` takes part in agent `agent`'s call as
    /// `mode` (ringing their phone first), or leaves it (`None`).
    Monitor {
        tenant: usize,
        agent: AgentId,
        supervisor: Option<AgentId>,
        mode: Option<switchboard_api::MonitorMode>,
        reply: tokio::sync::oneshot::Sender<Result<String, MonitorRefusal>>,
    },
}

/// Why a supervisor cannot listen in, whisper or barge in (or stop).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonitorRefusal {
    #[error("{0} has no call up to listen in on")]
    NoCall(String),
    #[error("nobody listens in on {0}'s call")]
    NotMonitored(String),
    #[error("{0} already listens in on this call: one supervisor at a time")]
    Taken(String),
    #[error("you cannot listen in on your own call")]
    Yourself,
    #[error("your phone ({0}) cannot take a call now (not registered, on a call, ringing or in wrap-up): register the desktop app's phone and finish your call first")]
    Busy(String),
    #[error("you already listen in on {0}'s call: hang up or stop it first")]
    Elsewhere(String),
}

/// What an agent does with a consultation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsultAction {
    /// Put the caller on hold and ring this colleague (UPN) or the best free expert of this
    /// group.
    Start(String),
    /// Leave the caller with the person consulted.
    Complete,
    /// All three talk together.
    Conference,
    /// End the consultation: back to the caller.
    Cancel,
}

/// Why a consultation step was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsultRefusal {
    #[error("the agent has no call up to consult on")]
    NoCall,
    #[error("the agent is already consulting {0}: complete, conference or cancel it first")]
    Already(String),
    #[error("the agent is not consulting anyone")]
    NoConsult,
    #[error("{0} has not answered yet: wait for them, or cancel")]
    NotAnswered(String),
    #[error("{0} is not a colleague, queue, expert group or outside number (where the tenant places outside calls) of this tenant")]
    NoSuchTarget(String),
    #[error(
        "{0} cannot take a call now (offline, on a call, ringing, in wrap-up, or busy in Teams)"
    )]
    Busy(String),
    #[error("nobody of expert group {0} is free now: try again or another target")]
    NoExpert(String),
    #[error("{0} cannot be rung in Teams: they have no teams_number, or the tenant no Direct Routing trunk")]
    NotInTeams(String),
    #[error("nobody of queue {0} is logged in now besides you: consult someone else, or transfer the caller to the queue")]
    NoQueueAgent(String),
    #[error("everyone of queue {0} logged in was rung for this consultation and none took it: consult someone else, or transfer the caller to the queue")]
    QueueAllRung(String),
    #[error("a conference holds at most {0} people with the caller: someone must leave before another joins")]
    Full(usize),
    /// An outside number the tenant may not call now: the number and why (the toll rules, a
    /// cap, a full trunk).
    #[error("{0} may not be called now: {1}")]
    NotAllowed(String, String),
}

/// Why a transfer was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferRefusal {
    #[error("the agent has no call up to transfer")]
    NoCall,
    #[error("the call is a conference: leave it to the others (consult/complete) rather than transfer it")]
    Conference,
    #[error("{0} is not a queue, attendant, expert group or agent of this tenant: transfers stay inside it")]
    NoSuchTarget(String),
    #[error("nobody of expert group {0} is free now: the caller stays with the agent; try again or another target")]
    NoExpert(String),
    #[error("{0} cannot be rung in Teams: only a person with a teams_number, where the tenant has a Direct Routing trunk")]
    NotInTeams(String),
}

/// Why an agent request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeskError {
    #[error("{0} is not an agent of any tenant this router serves — check the UPN, or add the agent to the tenant's [[tenants.agents]]")]
    NoSuchAgent(String),
    #[error("the router takes no calls: set [sip] listen in its configuration (or --sip-listen)")]
    NoSipEdge,
    #[error("{code:?} is not a disposition of queue {queue}: use one of {allowed}")]
    UnknownDisposition {
        code: String,
        queue: String,
        allowed: String,
    },
}

/// Every tenant's agents and queues.
pub struct Desk {
    pub tenants: Vec<TenantRt>,
    /// SIP user name → (tenant index, agent).
    by_username: HashMap<String, (usize, AgentId)>,
    /// `sip:host:port` of the SIP edge, once it listens.
    pub registrar: Option<String>,
    /// Where the SIP edge reads its prompts from, once it runs.
    pub prompts_dir: Option<std::path::PathBuf>,
    /// The SIP edge's `[sip.tls]`, once it runs: what a Direct Routing trunk set through the
    /// API is checked against.
    pub sip_tls: Option<crate::center::SipTls>,
}

/// The shared desk and the edge's wake-up.
pub struct CallCenter {
    pub desk: Mutex<Desk>,
    pub wake: tokio::sync::Notify,
    /// Writes to call records, in order (the SIP edge's snapshots, the agents' dispositions).
    pub records: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<RecordWrite>>,
    /// Requests for the SIP edge from the API (transfers), once it runs.
    pub commands: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<EdgeCommand>>,
    /// The event stream, for agents' states and queue figures.
    pub events: std::sync::OnceLock<crate::events::EventHub>,
    /// Callbacks kept from before a restart, with their records, for the SIP edge to take
    /// up when it starts.
    pub restored_callbacks: Mutex<Vec<(PendingCallback, switchboard_api::CallRecord)>>,
}

/// A write to the call records.
#[derive(Debug)]
pub enum RecordWrite {
    /// The record as it is now.
    Put(Box<switchboard_api::CallRecord>),
    /// What the agent gave in wrap-up for call `id`: its disposition code and notes (each
    /// only when given; what is not given is left as it is).
    WrapUp {
        id: String,
        disposition: Option<String>,
        notes: Option<String>,
    },
    /// How long the agent's wrap-up after call `id` took, in whole seconds.
    WrapUpTime { id: String, seconds: u64 },
    /// Answers once every write before it is done.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// An agent's session as it is now (kept across restarts).
    Session(Box<AgentSession>),
    /// An agent's session is over (signed off, revoked, removed): (tenant, UPN).
    EndSession(String, String),
    /// Where a round-robin queue stopped: the agent (UPN) it offered its last call to.
    RoundRobin {
        tenant: String,
        queue: String,
        upn: String,
    },
    /// A callback a caller asked for, as it stands (kept across restarts).
    Callback(Box<PendingCallback>),
    /// Call `id`'s callback is over (made, given up, or the call ended otherwise).
    CallbackDone(String),
}

/// A callback a caller asked for and the router has not made yet, as kept in the store so
/// that a restart does not lose it: the router puts it back in its queue, in the place its
/// caller had.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingCallback {
    /// The call's record id.
    pub id: String,
    pub tenant: String,
    /// The trunk the caller came on (and is called back on), by name.
    pub trunk: String,
    pub queue: String,
    /// The number called back.
    pub caller: String,
    /// The number the caller dialled (shown to them when called back).
    pub dialled: String,
    pub priority: u8,
    /// When the caller first joined the queue (Unix milliseconds): their place.
    pub queued_at_ms: i64,
    /// When they asked for the callback (Unix milliseconds): its expiry counts from it.
    pub requested_at_ms: i64,
    /// Calls placed to them so far.
    pub attempts: u32,
}

/// Writes call records in the order they come, until every sender has gone.
pub async fn write_records(
    store: std::sync::Arc<crate::store::Store>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<RecordWrite>,
) {
    while let Some(w) = rx.recv().await {
        let r = match w {
            RecordWrite::Put(rec) => store.put_call(&rec).await,
            RecordWrite::WrapUp {
                id,
                disposition,
                notes,
            } => match store.get_call(&id).await {
                Ok(Some(mut rec)) => {
                    if disposition.is_some() {
                        rec.disposition = disposition;
                    }
                    if notes.is_some() {
                        rec.notes = notes;
                    }
                    store.put_call(&rec).await
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            RecordWrite::WrapUpTime { id, seconds } => match store.get_call(&id).await {
                Ok(Some(mut rec)) => {
                    rec.wrap_up_seconds = Some(seconds);
                    store.put_call(&rec).await
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            RecordWrite::Flush(done) => {
                let _ = done.send(());
                Ok(())
            }
            RecordWrite::Session(s) => store.put_agent_session(&s).await,
            RecordWrite::EndSession(tenant, upn) => store.delete_agent_session(&tenant, &upn).await,
            RecordWrite::RoundRobin { tenant, queue, upn } => {
                store.put_round_robin(&tenant, &queue, &upn).await
            }
            RecordWrite::Callback(p) => store.put_pending_callback(&p).await,
            RecordWrite::CallbackDone(id) => store.delete_pending_callback(&id).await,
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "a call record could not be written");
        }
    }
}

fn queue_spec(q: &QueueConfig, skill: &mut impl FnMut(&str) -> SkillId) -> QueueSpec {
    QueueSpec {
        strategy: q.strategy,
        skills: q.skills.iter().map(|(k, v)| (skill(k), *v)).collect(),
        max_size: q.max_size,
        max_wait: q.max_wait_seconds.map(std::time::Duration::from_secs),
    }
}

impl CallCenter {
    /// The desk of the configured tenants, nobody registered yet.
    pub fn new(tenants: &[TenantSpec], now: Instant) -> Self {
        let tenants = tenants
            .iter()
            .map(|spec| {
                let mut skills: HashMap<String, SkillId> = HashMap::new();
                let mut skill = |name: &str| {
                    let n = skills.len() as SkillId;
                    *skills.entry(name.to_ascii_lowercase()).or_insert(n)
                };
                let mut engine = Engine::new(now);
                let mut queue_ids = HashMap::new();
                for (i, q) in spec.queues.iter().enumerate() {
                    let id = QueueId(i as u32);
                    engine.set_queue(id, queue_spec(q, &mut skill));
                    queue_ids.insert(q.name.clone(), id);
                }
                let mut agents = Vec::new();
                let mut by_upn = HashMap::new();
                for (i, a) in spec.agents.iter().enumerate() {
                    let id = AgentId(i as u32);
                    engine.set_agent(
                        id,
                        AgentSpec {
                            skills: a.skills.iter().map(|(k, v)| (skill(k), *v)).collect(),
                            rank: i as u32,
                        },
                        now,
                    );
                    by_upn.insert(a.upn.to_ascii_lowercase(), id);
                    agents.push(AgentRt::new(a));
                }
                TenantRt {
                    spec: spec.clone(),
                    engine,
                    queue_ids,
                    queues: spec.queues.clone(),
                    agents,
                    by_upn,
                    attendants: spec.attendants.clone(),
                    stats: vec![QueueStats::default(); spec.queues.len()],
                    handle_times: vec![
                        crate::routing::estimate::HandleTimes::new(
                            100,
                            std::time::Duration::from_secs(180)
                        );
                        spec.queues.len()
                    ],
                    trunks: spec
                        .trunks
                        .iter()
                        .map(crate::trunks::TrunkRt::for_spec)
                        .collect(),
                    skills,
                    from_api: Default::default(),
                    queues_from_api: Default::default(),
                    numbers_from_api: Default::default(),
                    others_from_api: Default::default(),
                    round_robin_saved: HashMap::new(),
                    consult_waits: Default::default(),
                    retired_attendants: Default::default(),
                    retired_queues: Default::default(),
                }
            })
            .collect();
        Self {
            desk: Mutex::new(Desk {
                tenants,
                by_username: HashMap::new(),
                registrar: None,
                prompts_dir: None,
                sip_tls: None,
            }),
            wake: tokio::sync::Notify::new(),
            records: std::sync::OnceLock::new(),
            commands: std::sync::OnceLock::new(),
            events: std::sync::OnceLock::new(),
            restored_callbacks: Mutex::new(Vec::new()),
        }
    }

    /// Writes the sessions of agents whose sign-in, state or registration changed since
    /// they were last written (in order with the call records).
    pub fn save_sessions(&self) {
        let Some(records) = self.records.get() else {
            return;
        };
        let changes = self.with(|d| {
            let mut out = Vec::new();
            for t in d.tenants.iter_mut() {
                let tenant = t.spec.id.clone();
                for r in t.agents.iter_mut() {
                    let now = r.session(&tenant);
                    if now == r.saved {
                        continue;
                    }
                    out.push(match &now {
                        Some(s) => RecordWrite::Session(Box::new(s.clone())),
                        None => RecordWrite::EndSession(tenant.clone(), r.upn.clone()),
                    });
                    r.saved = now;
                }
            }
            out
        });
        for w in changes {
            let _ = records.send(w);
        }
    }

    /// Writes where each round-robin queue stopped, when it moved since it was last written,
    /// so that a restart goes on with the next agent rather than the first.
    pub fn save_round_robin(&self) {
        let Some(records) = self.records.get() else {
            return;
        };
        let changes = self.with(|d| {
            let mut out = Vec::new();
            for t in d.tenants.iter_mut() {
                for (name, &q) in &t.queue_ids {
                    if t.retired_queues.contains(&q) {
                        continue;
                    }
                    let Some(upn) = t
                        .engine
                        .round_robin_last(q)
                        .and_then(|a| t.agents.get(a.0 as usize))
                        .map(|r| r.upn.to_ascii_lowercase())
                    else {
                        continue;
                    };
                    if t.round_robin_saved.get(&q) == Some(&upn) {
                        continue;
                    }
                    t.round_robin_saved.insert(q, upn.clone());
                    out.push(RecordWrite::RoundRobin {
                        tenant: t.spec.id.clone(),
                        queue: name.clone(),
                        upn,
                    });
                }
            }
            out
        });
        for w in changes {
            let _ = records.send(w);
        }
    }

    /// Puts back where round-robin queues stopped before a restart: (tenant, queue, UPN).
    /// Queues or agents no longer configured are skipped. Returns how many came back.
    pub fn restore_round_robin(&self, kept: Vec<(String, String, String)>) -> usize {
        let mut desk = self.lock();
        let mut restored = 0;
        for (tenant, queue, upn) in kept {
            let Some(t) = desk.tenants.iter_mut().find(|t| t.spec.id == tenant) else {
                continue;
            };
            let Some(&q) = t.queue_ids.get(&queue) else {
                continue;
            };
            let Some(a) = t.agent_by_upn(&upn) else {
                continue;
            };
            t.engine.set_round_robin_last(q, a);
            t.round_robin_saved.insert(q, upn);
            restored += 1;
        }
        restored
    }

    /// Puts back the sessions a previous run kept: credentials, Ready or Not ready, and the
    /// phone's registration where it has not expired (`now_unix` says). Sessions of agents
    /// no longer configured are dropped. Returns how many came back.
    pub fn restore_sessions(
        &self,
        sessions: Vec<AgentSession>,
        now: Instant,
        now_unix: u64,
    ) -> usize {
        let mut desk = self.lock();
        let mut restored = 0;
        for s in sessions {
            let Some(t) = desk.tenants.iter().position(|t| t.spec.id == s.tenant) else {
                continue;
            };
            let Some(a) = desk.tenants[t].agent_by_upn(&s.upn) else {
                continue;
            };
            let registered = s.registered_until.is_some_and(|u| u > now_unix + 5);
            let tenant = &mut desk.tenants[t];
            if let Some(r) = tenant.agent_mut(a) {
                r.username = Some(s.username.clone());
                r.password = Some(s.password.clone());
                r.ready = s.ready;
                r.reason = s.reason.clone();
                if registered {
                    r.aor = s.aor.clone();
                    r.contact = s.contact.clone();
                    r.registered_until = s.registered_until;
                }
                r.saved = r.session(&s.tenant);
            }
            tenant
                .engine
                .set_online(a, registered && s.contact.is_some(), now);
            tenant.engine.set_ready(a, s.ready, now);
            desk.by_username.insert(s.username.clone(), (t, a));
            restored += 1;
        }
        restored
    }

    /// Announces agents whose state changed, each to its tenant's organisation (and notes
    /// when they changed, for the board, with no event stream too).
    pub fn publish_agent_changes(&self) {
        self.save_sessions();
        self.save_round_robin();
        let now = Instant::now();
        let changed: Vec<(Option<String>, AgentStatus)> = self.with(|d| {
            d.tenants
                .iter_mut()
                .flat_map(|t| {
                    let org = t.spec.entra_tenant_id.clone();
                    t.changed_agents(now)
                        .into_iter()
                        .map(move |s| (org.clone(), s))
                })
                .collect()
        });
        let Some(hub) = self.events.get() else {
            return;
        };
        for (org, status) in changed {
            hub.publish_to(
                switchboard_api::Event::AgentState { status },
                crate::events::Audience::Organisation(org),
            );
        }
    }

    /// Announces every tenant's queue figures to its organisation.
    pub fn publish_figures(&self, now: Instant) {
        let Some(hub) = self.events.get() else {
            return;
        };
        let all: Vec<(Option<String>, Vec<QueueFigures>)> = self.with(|d| {
            d.tenants
                .iter()
                .filter(|t| !t.queues.is_empty())
                .map(|t| (t.spec.entra_tenant_id.clone(), t.figures(now)))
                .collect()
        });
        for (org, queues) in all {
            hub.publish_to(
                switchboard_api::Event::QueueFigures { queues },
                crate::events::Audience::Organisation(org),
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Desk> {
        // A panic while holding the lock leaves consistent data (each step is whole).
        self.desk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the desk.
    pub fn with<R>(&self, f: impl FnOnce(&mut Desk) -> R) -> R {
        f(&mut self.lock())
    }

    /// Writes a finished wrap-up's time (from [`Desk::finish_wrap_up`]) to its call's record.
    pub fn wrap_up_done(&self, done: Option<(String, u64)>) {
        if let (Some((id, seconds)), Some(w)) = (done, self.records.get()) {
            let _ = w.send(RecordWrite::WrapUpTime { id, seconds });
        }
    }

    /// New SIP credentials for agent `upn` (of an Entra tenant `tid`, when the caller was
    /// authenticated): a random user name and password; the previous pair stops working and
    /// a phone registered with it is dropped.
    pub fn issue_credentials(
        &self,
        upn: &str,
        tid: Option<&str>,
        object_id: Option<&str>,
    ) -> Result<SipCredentials, DeskError> {
        let mut desk = self.lock();
        let registrar = desk.registrar.clone().ok_or(DeskError::NoSipEdge)?;
        let (t, a) = desk
            .find(upn, tid)
            .ok_or_else(|| DeskError::NoSuchAgent(upn.to_owned()))?;
        let mut rng = rand::rng();
        let token = |rng: &mut rand::rngs::ThreadRng, n: usize| -> String {
            const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";
            (0..n)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect()
        };
        let username = format!("agent-{}", token(&mut rng, 12));
        let password = token(&mut rng, 24);
        let now = Instant::now();
        let tenant = &mut desk.tenants[t];
        let tenant_id = tenant.spec.id.clone();
        let domain = tenant.spec.domain.clone();
        let old = {
            let r = tenant
                .agent_mut(a)
                .ok_or(DeskError::NoSuchAgent(upn.into()))?;
            r.password = Some(password.clone());
            if let Some(o) = object_id {
                r.object_id = Some(o.to_ascii_lowercase());
            }
            r.contact = None;
            r.aor = None;
            r.username.replace(username.clone())
        };
        tenant.engine.set_online(a, false, now);
        let agent = tenant.agent(a).map(|r| r.upn.clone()).unwrap_or_default();
        if let Some(old) = old {
            desk.by_username.remove(&old);
        }
        desk.by_username.insert(username.clone(), (t, a));
        tracing::info!(agent = %agent, tenant = %tenant_id, username = %username, "issued SIP credentials");
        self.wake.notify_one();
        Ok(SipCredentials {
            agent,
            tenant: tenant_id,
            username,
            password,
            domain,
            registrar,
        })
    }

    /// Teams presence of user `object_id` changed: agents with that id are skipped by the
    /// queues while it is DoNotDisturb, Presenting or InAMeeting, or while they are in a
    /// Teams call (InACall, InAConferenceCall: an agent on any call is offered no other).
    /// Returns whether it was an agent's.
    pub fn presence(&self, object_id: &str, availability: &str, activity: &str) -> bool {
        let busy = availability == "DoNotDisturb"
            || matches!(
                activity,
                "Presenting" | "InAMeeting" | "DoNotDisturb" | "InACall" | "InAConferenceCall"
            );
        let id = object_id.to_ascii_lowercase();
        let mut found = false;
        {
            let mut desk = self.lock();
            for t in desk.tenants.iter_mut() {
                for i in 0..t.agents.len() {
                    let a = AgentId(i as u32);
                    if t.agents[i].object_id.as_deref() == Some(id.as_str()) {
                        t.agents[i].teams = Some(format!("{availability}/{activity}"));
                        t.engine.set_presence_allows(a, !busy);
                        found = true;
                    }
                }
            }
        }
        if found {
            tracing::debug!(%object_id, availability, activity, skipped = busy, "an agent's Teams presence");
            self.wake.notify_one();
        }
        found
    }

    /// What agent `object_id`'s Microsoft 365 profile lists as their skills (Graph
    /// `skills`), read now; false when no agent has that id.
    pub fn graph_skills(&self, object_id: &str, skills: &[String]) -> bool {
        let id = object_id.to_ascii_lowercase();
        let skills: std::collections::BTreeSet<String> = skills
            .iter()
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        let mut found = false;
        self.with(|d| {
            for t in d.tenants.iter_mut() {
                for r in t.agents.iter_mut() {
                    if r.object_id.as_deref() == Some(id.as_str()) {
                        r.graph_skills = skills.clone();
                        found = true;
                    }
                }
            }
        });
        found
    }

    /// The object ids of agents of tenants with an expert group that counts Graph `skills`.
    pub fn graph_skill_ids(&self) -> Vec<String> {
        self.with(|d| {
            d.tenants
                .iter()
                .filter(|t| t.spec.experts.iter().any(|g| g.from_graph))
                .flat_map(|t| {
                    t.agents
                        .iter()
                        .filter(|a| !a.removed)
                        .filter_map(|a| a.object_id.clone())
                })
                .collect()
        })
    }

    /// The object ids of every agent whose presence the queues follow.
    pub fn object_ids(&self) -> Vec<String> {
        self.with(|d| {
            d.tenants
                .iter()
                .flat_map(|t| t.agents.iter().filter_map(|a| a.object_id.clone()))
                .collect()
        })
    }

    /// Applies what the API (or, at start, the store) set for agent `upn` of tenant
    /// `tenant`: `Some` adds or changes them, `None` removes them. Returns whether the agent
    /// is new.
    pub fn set_agent(
        &self,
        tenant: &str,
        upn: &str,
        settings: Option<&switchboard_api::AgentSettings>,
    ) -> Result<bool, AgentChangeError> {
        let now = Instant::now();
        let mut desk = self.lock();
        let t = desk.tenant_for_agent(tenant, upn)?;
        let result = match settings {
            Some(s) => {
                let a = AgentConfig {
                    upn: upn.to_owned(),
                    name: s.name.clone(),
                    skills: s.skills.clone(),
                    object_id: s.object_id.clone(),
                    teams_number: s.teams_number.clone(),
                };
                Ok(desk.tenants[t].upsert_agent(&a, now))
            }
            None => match desk.tenants[t].remove_agent(upn) {
                Ok(old) => {
                    if let Some(old) = old {
                        desk.by_username.remove(&old);
                    }
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            },
        };
        drop(desk);
        if result.is_ok() {
            self.wake.notify_one();
        }
        result
    }

    /// Whether [`Self::set_agent`] would take this change now (`upsert`: add or change;
    /// else remove), without making it.
    pub fn check_agent_change(
        &self,
        tenant: &str,
        upn: &str,
        upsert: bool,
    ) -> Result<(), AgentChangeError> {
        self.with(|d| {
            let t = d.tenant_for_agent(tenant, upn)?;
            if !upsert {
                d.tenants[t].removable(upn)?;
            }
            Ok(())
        })
    }

    /// Sets queue `q` of tenant `tenant` (added when new), after checking the tenant with it
    /// as the configuration file is checked. Returns whether it is new.
    pub fn set_queue(&self, tenant: &str, q: QueueConfig) -> Result<bool, AgentChangeError> {
        let mut desk = self.lock();
        let t = desk.queue_fits(tenant, &q)?;
        let new = desk.tenants[t].upsert_queue(q);
        drop(desk);
        self.wake.notify_one();
        Ok(new)
    }

    /// Maps number `number` of tenant `tenant` by `spec` (`None`: removes it), after checking
    /// the tenant with it as the file is checked. New calls to the number follow at once.
    /// Returns whether the number is new.
    pub fn set_number(
        &self,
        tenant: &str,
        number: &str,
        spec: Option<crate::center::NumberSpec>,
    ) -> Result<bool, AgentChangeError> {
        self.with(|d| {
            let t = d.number_fits(tenant, number, spec.as_ref())?;
            let rt = &mut d.tenants[t];
            let at = rt.spec.numbers.iter().position(|n| n.number == number);
            rt.numbers_from_api.insert(number.to_owned());
            Ok(match (at, spec) {
                (Some(i), Some(s)) => {
                    rt.spec.numbers[i] = s;
                    false
                }
                (None, Some(s)) => {
                    rt.spec.numbers.push(s);
                    true
                }
                (Some(i), None) => {
                    rt.spec.numbers.remove(i);
                    false
                }
                (None, None) => false,
            })
        })
    }

    /// Changes tenant `tenant`'s configuration by `change` (its expert groups, its toll
    /// rules: what calls read when they need it), after checking the tenants with it as the
    /// file is checked; `key` names what changed (for `source`). `dry`: check only. Returns
    /// what `change` returned.
    pub fn change_tenant<R>(
        &self,
        tenant: &str,
        key: &str,
        dry: bool,
        change: impl Fn(&mut TenantSpec) -> Result<R, AgentChangeError>,
    ) -> Result<R, AgentChangeError> {
        self.with(|d| {
            let t = d.fits(tenant, |spec| change(spec).map(|_| ()))?;
            if dry {
                let mut copy = d.tenants[t].spec.clone();
                return change(&mut copy);
            }
            let rt = &mut d.tenants[t];
            rt.others_from_api.insert(key.to_owned());
            change(&mut rt.spec)
        })
    }

    /// After a change of attendant `name` of tenant `tenant` (through
    /// [`Self::change_tenant`]): callers entering it from now on hear the new one; the SIP
    /// edge reads its greeting when it has not yet.
    pub fn attendant_changed(&self, tenant: &str, name: &str) {
        self.with(|d| {
            if let Some(t) = d.tenants.iter_mut().find(|t| t.spec.id == tenant) {
                t.attendant_changed(name);
            }
        });
        if let Some(c) = self.commands.get() {
            let _ = c.send(EdgeCommand::GreetingsChanged);
        }
    }

    /// After a change of tenant `tenant`'s trunks: a new one gets its figures (no calls,
    /// health unknown), a changed one its cap and probe target; the SIP edge is told.
    pub fn trunks_changed(&self, tenant: &str) {
        self.with(|d| {
            let Some(t) = d.tenants.iter_mut().find(|t| t.spec.id == tenant) else {
                return;
            };
            for (j, spec) in t.spec.trunks.iter().enumerate() {
                match t.trunks.get_mut(j) {
                    Some(rt) => {
                        rt.max_calls = spec.max_calls;
                        rt.probe = spec.probe.clone();
                        rt.set_proxies(spec);
                    }
                    None => t.trunks.push(crate::trunks::TrunkRt::for_spec(spec)),
                }
            }
        });
        if let Some(c) = self.commands.get() {
            let _ = c.send(EdgeCommand::TrunksChanged);
        }
    }

    /// Whether [`Self::set_number`] would take the change now, without making it.
    pub fn check_number(
        &self,
        tenant: &str,
        number: &str,
        spec: Option<&crate::center::NumberSpec>,
    ) -> Result<(), AgentChangeError> {
        self.with(|d| d.number_fits(tenant, number, spec).map(|_| ()))
    }

    /// The numbers of tenant `tenant` as mapped now, each with whether the API set it.
    pub fn number_configs(&self, tenant: &str) -> Option<Vec<(crate::center::NumberSpec, bool)>> {
        self.with(|d| {
            let t = d.tenants.iter().find(|t| t.spec.id == tenant)?;
            Some(
                t.spec
                    .numbers
                    .iter()
                    .map(|n| (n.clone(), t.numbers_from_api.contains(&n.number)))
                    .collect(),
            )
        })
    }

    /// Removes queue `name` of tenant `tenant` (`dry`: only checks that it could), after
    /// checking the tenant without it as the file is checked (no number, attendant or other
    /// queue may name it) and that no caller waits in it.
    pub fn remove_queue(
        &self,
        tenant: &str,
        name: &str,
        dry: bool,
    ) -> Result<(), AgentChangeError> {
        self.with(|d| {
            let t = d.fits(tenant, |spec| {
                let before = spec.queues.len();
                spec.queues.retain(|q| q.name != name);
                if spec.queues.len() == before {
                    return Err(AgentChangeError::Missing(format!(
                        "no queue {name:?} in this tenant"
                    )));
                }
                Ok(())
            })?;
            d.tenants[t].remove_queue(name, dry)
        })
    }

    /// Whether [`Self::set_queue`] would take `q` now, without setting it.
    pub fn check_queue(&self, tenant: &str, q: &QueueConfig) -> Result<(), AgentChangeError> {
        self.with(|d| d.queue_fits(tenant, q).map(|_| ()))
    }

    /// The queues of tenant `tenant` as configured now (`None`: no such tenant).
    pub fn queue_configs(&self, tenant: &str) -> Option<Vec<(QueueConfig, bool)>> {
        self.with(|d| {
            let t = d.tenants.iter().find(|t| t.spec.id == tenant)?;
            Some(
                t.queues
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !t.retired_queues.contains(&QueueId(*i as u32)))
                    .map(|(_, q)| (q.clone(), t.queues_from_api.contains(&q.name)))
                    .collect(),
            )
        })
    }

    /// The agents of tenant `tenant` as configured now (`None`: no such tenant).
    pub fn agent_configs(&self, tenant: &str) -> Option<Vec<switchboard_api::AgentConfigView>> {
        self.with(|d| {
            let t = d.tenants.iter().find(|t| t.spec.id == tenant)?;
            Some(
                t.spec
                    .agents
                    .iter()
                    .enumerate()
                    .map(|(i, a)| switchboard_api::AgentConfigView {
                        tenant: t.spec.id.clone(),
                        upn: a.upn.clone(),
                        name: a.name.clone(),
                        skills: a.skills.clone(),
                        object_id: a.object_id.clone(),
                        teams_number: a.teams_number.clone(),
                        graph_skills: t
                            .agents
                            .get(i)
                            .map(|r| r.graph_skills.iter().cloned().collect())
                            .unwrap_or_default(),
                        source: if t.from_api.contains(&a.upn.to_ascii_lowercase()) {
                            "api".into()
                        } else {
                            "file".into()
                        },
                    })
                    .collect(),
            )
        })
    }

    /// Revokes the agent's SIP credentials and forgets their phone: they are Offline until
    /// they ask for new ones (signing off).
    pub fn revoke_credentials(&self, upn: &str, tid: Option<&str>) -> Result<(), DeskError> {
        let mut desk = self.lock();
        let (t, a) = desk
            .find(upn, tid)
            .ok_or_else(|| DeskError::NoSuchAgent(upn.to_owned()))?;
        let now = Instant::now();
        let tenant = &mut desk.tenants[t];
        let old = tenant.agent_mut(a).and_then(|r| {
            r.password = None;
            r.contact = None;
            r.aor = None;
            r.ready = false;
            r.username.take()
        });
        tenant.engine.set_online(a, false, now);
        tenant.engine.set_ready(a, false, now);
        if let Some(old) = old {
            desk.by_username.remove(&old);
        }
        drop(desk);
        tracing::info!(agent = %upn, "SIP credentials revoked; the agent is offline");
        self.wake.notify_one();
        Ok(())
    }

    /// Ready or Not ready, as the agent asks.
    pub fn set_state(
        &self,
        upn: &str,
        tid: Option<&str>,
        state: RequestedState,
        reason: Option<String>,
    ) -> Result<AgentStatus, DeskError> {
        self.set_state_where(upn, |d| d.find(upn, tid), state, reason)
    }

    /// Sets agent `upn`'s state for a supervisor who may read `tenants` (ids; none: all).
    pub fn set_state_in(
        &self,
        upn: &str,
        tenants: Option<&[String]>,
        state: RequestedState,
        reason: Option<String>,
    ) -> Result<AgentStatus, DeskError> {
        self.set_state_where(upn, |d| d.find_in(upn, tenants), state, reason)
    }

    fn set_state_where(
        &self,
        upn: &str,
        find: impl FnOnce(&Desk) -> Option<(usize, AgentId)>,
        state: RequestedState,
        reason: Option<String>,
    ) -> Result<AgentStatus, DeskError> {
        let ready = state == RequestedState::Ready;
        let status = {
            let mut desk = self.lock();
            let (t, a) = find(&desk).ok_or_else(|| DeskError::NoSuchAgent(upn.to_owned()))?;
            let tenant = &mut desk.tenants[t];
            tenant.engine.set_ready(a, ready, Instant::now());
            if let Some(r) = tenant.agent_mut(a) {
                r.ready = ready;
                r.reason = if ready { None } else { reason };
            }
            tenant.status(a, Instant::now())
        };
        self.wake.notify_one();
        status.ok_or_else(|| DeskError::NoSuchAgent(upn.to_owned()))
    }

    /// Wrap-up is over (the agent is done before the queue's wrap-up time), with the
    /// disposition code and notes (checked by the caller) for the agent's last call. After
    /// the router ended the wrap-up at its time, they still go to the record.
    pub fn end_wrap_up(
        &self,
        upn: &str,
        tid: Option<&str>,
        disposition: Option<String>,
        notes: Option<String>,
    ) -> Result<AgentStatus, DeskError> {
        let status = {
            let mut desk = self.lock();
            let (t, a) = desk
                .find(upn, tid)
                .ok_or_else(|| DeskError::NoSuchAgent(upn.to_owned()))?;
            let tenant = &desk.tenants[t];
            let last = tenant.agent(a).and_then(|r| r.last_call.clone());
            // The queue's own codes, when it has any; said as the queue writes them.
            let queue = tenant
                .agent(a)
                .and_then(|r| r.last_queue)
                .and_then(|q| tenant.queue(q))
                .filter(|q| !q.dispositions.is_empty());
            let disposition = match (disposition, queue) {
                (Some(code), Some(q)) => match q
                    .dispositions
                    .iter()
                    .find(|d| d.eq_ignore_ascii_case(&code))
                {
                    Some(d) => Some(d.clone()),
                    None => {
                        return Err(DeskError::UnknownDisposition {
                            code,
                            queue: q.name.clone(),
                            allowed: q.dispositions.join(", "),
                        })
                    }
                },
                (code, _) => code,
            };
            if let (Some(id), Some(w)) = (last, self.records.get()) {
                if disposition.is_some() || notes.is_some() {
                    let _ = w.send(RecordWrite::WrapUp {
                        id,
                        disposition,
                        notes,
                    });
                }
            }
            let now = Instant::now();
            let done = desk.finish_wrap_up(t, a, now);
            self.wrap_up_done(done);
            desk.tenants[t].status(a, now)
        };
        self.wake.notify_one();
        status.ok_or_else(|| DeskError::NoSuchAgent(upn.to_owned()))
    }

    /// The agent's state.
    pub fn status(&self, upn: &str, tid: Option<&str>) -> Result<AgentStatus, DeskError> {
        let desk = self.lock();
        let (t, a) = desk
            .find(upn, tid)
            .ok_or_else(|| DeskError::NoSuchAgent(upn.to_owned()))?;
        desk.tenants[t]
            .status(a, Instant::now())
            .ok_or_else(|| DeskError::NoSuchAgent(upn.to_owned()))
    }
}

impl CallCenter {
    /// Whom and where the agent may transfer or consult now.
    pub fn targets(
        &self,
        upn: &str,
        tid: Option<&str>,
    ) -> Result<switchboard_api::TransferTargets, DeskError> {
        let desk = self.lock();
        let (t, a) = desk
            .find(upn, tid)
            .ok_or_else(|| DeskError::NoSuchAgent(upn.to_owned()))?;
        Ok(desk.tenants[t].targets(a))
    }

    /// The agent's tenant id, for their own records.
    pub fn tenant_of(&self, upn: &str, tid: Option<&str>) -> Result<String, DeskError> {
        let desk = self.lock();
        let (t, _) = desk
            .find(upn, tid)
            .ok_or_else(|| DeskError::NoSuchAgent(upn.to_owned()))?;
        Ok(desk.tenants[t].spec.id.clone())
    }
}

impl Desk {
    /// The agent `upn` (case-insensitive), in a tenant of Entra tenant `tid` when given.
    /// The index of tenant `tenant`, when queue `q` fits it: the tenants with it pass the
    /// checks the configuration file passes.
    fn queue_fits(&self, tenant: &str, q: &QueueConfig) -> Result<usize, AgentChangeError> {
        self.fits(tenant, |spec| {
            match spec.queues.iter_mut().find(|c| c.name == q.name) {
                Some(c) => *c = q.clone(),
                None => spec.queues.push(q.clone()),
            }
            Ok(())
        })
    }

    /// The index of tenant `tenant`, when `change` to its configuration leaves every tenant
    /// passing the checks the configuration file passes.
    fn fits(
        &self,
        tenant: &str,
        change: impl FnOnce(&mut TenantSpec) -> Result<(), AgentChangeError>,
    ) -> Result<usize, AgentChangeError> {
        let t = self
            .tenants
            .iter()
            .position(|t| t.spec.id == tenant)
            .ok_or_else(|| AgentChangeError::NoTenant(tenant.to_owned()))?;
        let mut candidate: Vec<TenantSpec> = self.tenants.iter().map(|t| t.spec.clone()).collect();
        change(&mut candidate[t])?;
        crate::center::check(&candidate)
            .map_err(|e| AgentChangeError::Invalid(format!("{}: {}", e.key, e.message)))?;
        Ok(t)
    }

    /// Tenant `tenant` with number `number` mapped by `spec` (`None`: without it).
    fn number_fits(
        &self,
        tenant: &str,
        number: &str,
        spec: Option<&crate::center::NumberSpec>,
    ) -> Result<usize, AgentChangeError> {
        self.fits(tenant, |t| {
            let at = t.numbers.iter().position(|n| n.number == number);
            match (at, spec) {
                (Some(i), Some(s)) => t.numbers[i] = s.clone(),
                (None, Some(s)) => t.numbers.push(s.clone()),
                (Some(i), None) => {
                    t.numbers.remove(i);
                }
                (None, None) => return Err(AgentChangeError::NoNumber(number.to_owned())),
            }
            Ok(())
        })
    }

    /// The index of tenant `tenant`, where agent `upn` may be set: not an agent of another.
    fn tenant_for_agent(&self, tenant: &str, upn: &str) -> Result<usize, AgentChangeError> {
        let t = self
            .tenants
            .iter()
            .position(|t| t.spec.id == tenant)
            .ok_or_else(|| AgentChangeError::NoTenant(tenant.to_owned()))?;
        let key = upn.to_ascii_lowercase();
        match self
            .tenants
            .iter()
            .enumerate()
            .find(|(i, o)| *i != t && o.by_upn.contains_key(&key))
        {
            Some((_, o)) => Err(AgentChangeError::Elsewhere(
                upn.to_owned(),
                o.spec.id.clone(),
            )),
            None => Ok(t),
        }
    }

    /// Agent `upn` (not removed) of one of `tenants` (their ids; `None`: any tenant).
    pub fn find_in(&self, upn: &str, tenants: Option<&[String]>) -> Option<(usize, AgentId)> {
        let key = upn.to_ascii_lowercase();
        self.tenants.iter().enumerate().find_map(|(i, t)| {
            let readable = tenants.is_none_or(|ids| ids.contains(&t.spec.id));
            let a = t.by_upn.get(&key).copied();
            a.filter(|a| readable && t.agent(*a).is_some_and(|r| !r.removed))
                .map(|a| (i, a))
        })
    }

    pub fn find(&self, upn: &str, tid: Option<&str>) -> Option<(usize, AgentId)> {
        let key = upn.to_ascii_lowercase();
        self.tenants.iter().enumerate().find_map(|(i, t)| {
            let fits = tid.is_none_or(|tid| {
                t.spec
                    .entra_tenant_id
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(tid))
            });
            fits.then(|| t.by_upn.get(&key).map(|a| (i, *a))).flatten()
        })
    }

    /// The password of SIP user `username`, while it is the agent's current one.
    pub fn password_of(&self, username: &str) -> Option<String> {
        let (t, a) = self.by_username.get(username)?;
        self.tenants.get(*t)?.agent(*a)?.password.clone()
    }

    /// The agent SIP user `username` belongs to.
    pub fn agent_of(&self, username: &str) -> Option<(usize, AgentId)> {
        self.by_username.get(username).copied()
    }

    /// The phone of `username` registered (`contact`) or went away (`None`).
    pub fn registered(&mut self, username: &str, aor: &str, contact: Option<String>, now: Instant) {
        let Some((t, a)) = self.agent_of(username) else {
            return;
        };
        let tenant = &mut self.tenants[t];
        let online = contact.is_some();
        if let Some(r) = tenant.agent_mut(a) {
            if r.contact.is_some() != online {
                tracing::info!(agent = %r.upn, registered = online, "agent's phone registration changed");
            }
            r.aor = online.then(|| aor.to_owned());
            r.contact = contact;
        }
        tenant.engine.set_online(a, online, now);
    }

    /// The phone of SIP user `username` is registered until `until` (Unix seconds).
    pub fn registration_lasts(&mut self, username: &str, until: u64) {
        if let Some((t, a)) = self.agent_of(username) {
            if let Some(r) = self.tenants[t].agent_mut(a) {
                r.registered_until = Some(until);
            }
        }
    }

    /// Ends the agent's wrap-up now. After a queue call, returns the call's record id and
    /// how long its wrap-up took, in whole seconds, for its record.
    pub fn finish_wrap_up(&mut self, t: usize, a: AgentId, now: Instant) -> Option<(String, u64)> {
        let tenant = self.tenants.get_mut(t)?;
        let r = tenant.agent_mut(a)?;
        r.wrap_up_until.take()?;
        let handled = r.handling.take();
        let last = r.last_call.clone();
        tenant.engine.wrap_up_done(a, now);
        let (q, talk, ended) = handled?;
        let wrap_up = now.saturating_duration_since(ended);
        let took = talk + wrap_up;
        if let Some(st) = tenant.stats.get_mut(q.0 as usize) {
            st.handled(took);
        }
        if let Some(h) = tenant.handle_times.get_mut(q.0 as usize) {
            h.record(took);
        }
        last.map(|id| (id, wrap_up.as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The call center of `toml`, its SIP edge listening, with `upns`' phones registered.
    fn center_with_phones(toml: &str, upns: &[&str]) -> CallCenter {
        let cfg = crate::config::Config::from_toml(toml, std::path::Path::new("t.toml")).unwrap();
        let cc = CallCenter::new(&cfg.tenants, Instant::now());
        cc.with(|d| d.registrar = Some("sip:127.0.0.1:5060".into()));
        register_phones(&cc, upns);
        cc
    }

    /// Credentials for each of `upns`, and their phones registered.
    fn register_phones(cc: &CallCenter, upns: &[&str]) {
        for upn in upns {
            let c = cc.issue_credentials(upn, None, None).unwrap();
            cc.with(|d| {
                d.registered(
                    &c.username,
                    "sip:x@contoso.example",
                    Some("sip:x@127.0.0.1:5070".into()),
                    Instant::now(),
                )
            });
        }
    }

    /// The status counts the wrap-up down (seconds rounded up, none outside wrap-up), and
    /// the agent's disposition and notes go to the call's record, also after the router
    /// ended the wrap-up at its time; notes alone leave a disposition as it was.
    #[test]
    fn wrap_up_is_counted_down_and_its_notes_go_to_the_record() {
        use std::time::Duration;
        let toml = r#"
[[tenants]]
id = "contoso"
domain = "contoso.example"
queues = [{ name = "general", wrap_up_seconds = 30 }]
agents = [{ upn = "adele@contoso.example" }]
"#;
        let cc = center_with_phones(toml, &["adele@contoso.example"]);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        cc.records.set(tx).unwrap();
        let t0 = Instant::now();
        let (t, a) = cc.with(|d| d.find("adele@contoso.example", None)).unwrap();
        let left = |at: Instant| cc.with(|d| d.tenants[t].status(a, at)).unwrap();
        assert_eq!(left(t0).wrap_up_seconds_left, None, "not in wrap-up");
        let secs = cc.with(|d| {
            let r = d.tenants[t].agent_mut(a).unwrap();
            r.last_call = Some("call-1".into());
            r.last_queue = Some(QueueId(0));
            d.tenants[t].agent_done(a, Some(QueueId(0)), Duration::from_secs(60), t0)
        });
        assert_eq!(secs, 30);
        let st = left(t0 + Duration::from_millis(10_500));
        assert_eq!(st.state, AgentState::WrapUp);
        assert_eq!(st.wrap_up_seconds_left, Some(20));
        assert_eq!(
            left(t0 + Duration::from_secs(30)).wrap_up_seconds_left,
            Some(0)
        );
        assert_eq!(
            left(t0 + Duration::from_secs(99)).wrap_up_seconds_left,
            Some(0)
        );
        // The router ends it at its time; the agent's words still reach the record.
        let done = cc.with(|d| d.finish_wrap_up(t, a, t0 + Duration::from_secs(30)));
        assert_eq!(
            done,
            Some(("call-1".to_owned(), 30)),
            "its time, for the record"
        );
        cc.wrap_up_done(done);
        match rx.try_recv() {
            Ok(RecordWrite::WrapUpTime { id, seconds }) => {
                assert_eq!((id.as_str(), seconds), ("call-1", 30))
            }
            other => panic!("the wrap-up time went to the record: {other:?}"),
        }
        assert_eq!(
            cc.with(|d| d.finish_wrap_up(t, a, t0 + Duration::from_secs(40))),
            None,
            "ended once"
        );
        let st = left(t0 + Duration::from_secs(31));
        assert_eq!(
            (st.state, st.wrap_up_seconds_left),
            (AgentState::NotReady, None)
        );
        let notes = "Refund promised.\n\tCall back Monday".to_owned();
        let st = cc
            .end_wrap_up("adele@contoso.example", None, None, Some(notes.clone()))
            .unwrap();
        assert_eq!(st.wrap_up_seconds_left, None);
        match rx.try_recv() {
            Ok(RecordWrite::WrapUp {
                id,
                disposition: None,
                notes: Some(n),
            }) => assert_eq!((id.as_str(), n), ("call-1", notes)),
            other => panic!("the notes went to the record: {other:?}"),
        }
        // Nothing given: nothing written.
        cc.end_wrap_up("adele@contoso.example", None, None, None)
            .unwrap();
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn the_best_free_expert_is_chosen_by_skill_level_and_teams_presence() {
        let toml = r#"
[[tenants]]
id = "contoso"
domain = "contoso.example"
experts = [{ name = "escalations", skill = "Escalations", min_level = 3 }]
agents = [
  { upn = "lynne@contoso.example", skills = { escalations = 3 }, object_id = "0A1B2C3D-0000-4000-8000-000000000001" },
  { upn = "megan@contoso.example", skills = { escalations = 5 }, object_id = "0A1B2C3D-0000-4000-8000-000000000002" },
  { upn = "alex@contoso.example", skills = { escalations = 2 } },
]
"#;
        let cc = center_with_phones(toml, &[]);
        let expert = || {
            cc.with(|d| {
                let t = &d.tenants[0];
                t.expert(&t.spec.experts[0])
                    .and_then(|a| t.agent(a))
                    .map(|r| r.upn.clone())
            })
        };
        // Nobody registered: nobody free.
        assert_eq!(expert(), None);
        register_phones(
            &cc,
            &[
                "lynne@contoso.example",
                "megan@contoso.example",
                "alex@contoso.example",
            ],
        );
        // Not Ready for queue calls, yet free as experts: the higher level first.
        assert_eq!(expert().as_deref(), Some("megan@contoso.example"));
        // Megan in a Teams meeting: Lynne; both busy in Teams: nobody (Alex's level is 2).
        cc.presence("0a1b2c3d-0000-4000-8000-000000000002", "Busy", "InAMeeting");
        assert_eq!(expert().as_deref(), Some("lynne@contoso.example"));
        cc.presence("0a1b2c3d-0000-4000-8000-000000000001", "Away", "Away");
        assert_eq!(expert(), None);
        cc.presence(
            "0a1b2c3d-0000-4000-8000-000000000002",
            "AvailableIdle",
            "Available",
        );
        assert_eq!(expert().as_deref(), Some("megan@contoso.example"));
        // On a call: not free.
        cc.with(|d| d.tenants[0].agents[1].on_call = true);
        assert_eq!(expert(), None);
    }

    /// A group with `from_graph` counts the skills people's Microsoft 365 profiles list, at
    /// the group's lowest level; a level in the configuration wins (Alex's 2 keeps him out);
    /// a group without it, and the skills of an id nobody has, change nothing.
    #[test]
    fn expert_groups_from_graph_count_microsoft_365_skills() {
        let toml = r#"
[presence]
enabled = true
read_skills = true
authority = "https://login.microsoftonline.com/contoso.example/v2.0"
client_id = "11111111-2222-3333-4444-555555555555"

[[tenants]]
id = "contoso"
domain = "contoso.example"
experts = [
  { name = "escalations", skill = "Escalations", min_level = 3, from_graph = true },
  { name = "legal", skill = "legal" },
]
agents = [
  { upn = "megan@contoso.example", object_id = "0A1B2C3D-0000-4000-8000-000000000002" },
  { upn = "alex@contoso.example", skills = { escalations = 2 }, object_id = "0A1B2C3D-0000-4000-8000-000000000003" },
]
"#;
        let cc = center_with_phones(toml, &["megan@contoso.example", "alex@contoso.example"]);
        let expert = |g: usize| {
            cc.with(|d| {
                let t = &d.tenants[0];
                t.expert(&t.spec.experts[g])
                    .and_then(|a| t.agent(a))
                    .map(|r| r.upn.clone())
            })
        };
        let mut ids = cc.graph_skill_ids();
        ids.sort();
        assert_eq!(
            ids,
            [
                "0a1b2c3d-0000-4000-8000-000000000002",
                "0a1b2c3d-0000-4000-8000-000000000003"
            ]
        );
        assert_eq!(expert(0), None, "no skills read yet");
        let skills = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(cc.graph_skills(
            "0A1B2C3D-0000-4000-8000-000000000002",
            &skills(&["Escalations ", "Legal"])
        ));
        assert!(cc.graph_skills(
            "0a1b2c3d-0000-4000-8000-000000000003",
            &skills(&["escalations"])
        ));
        assert!(!cc.graph_skills(
            "0a1b2c3d-0000-4000-8000-000000000009",
            &skills(&["escalations"])
        ));
        assert_eq!(expert(0).as_deref(), Some("megan@contoso.example"));
        assert_eq!(expert(1), None, "legal does not count Graph skills");
        let level = cc.with(|d| {
            let t = &d.tenants[0];
            (
                t.expert_level(AgentId(0), &t.spec.experts[0]),
                t.expert_level(AgentId(1), &t.spec.experts[0]),
            )
        });
        assert_eq!(level, (Some(3), None));
        let view = cc.agent_configs("contoso").unwrap();
        assert_eq!(view[0].graph_skills, ["escalations", "legal"]);
        let targets = cc.targets("alex@contoso.example", None).unwrap().experts;
        assert_eq!(targets[0].available.len(), 1, "{targets:?}");
        assert_eq!(targets[0].available[0].level, 3);
        // The profile no longer lists it: no longer an expert.
        cc.graph_skills("0a1b2c3d-0000-4000-8000-000000000002", &[]);
        assert_eq!(expert(0), None);
    }

    #[test]
    fn the_targets_offer_queues_colleagues_and_only_the_experts_free_now() {
        let toml = r#"
[[tenants]]
id = "contoso"
domain = "contoso.example"
queues = [{ name = "billing" }, { name = "orders", skills = { french = 1 } }]
experts = [{ name = "escalations", skill = "Escalations", min_level = 3 }]
agents = [
  { upn = "adele@contoso.example", name = "Adele Vance", skills = { escalations = 5 } },
  { upn = "megan@contoso.example", name = "Megan Bowen", skills = { escalations = 4 }, object_id = "0A1B2C3D-0000-4000-8000-000000000002" },
  { upn = "lynne@contoso.example", skills = { escalations = 5 } },
  { upn = "alex@contoso.example", skills = { escalations = 2 } },
]
"#;
        let cc = center_with_phones(
            toml,
            &[
                "adele@contoso.example",
                "megan@contoso.example",
                "lynne@contoso.example",
            ],
        );
        cc.set_state("megan@contoso.example", None, RequestedState::Ready, None)
            .unwrap();
        let t = cc.targets("adele@contoso.example", None).unwrap();
        assert_eq!(t.tenant, "contoso");
        assert!(!t.outside_numbers);
        let q: Vec<_> = t
            .queues
            .iter()
            .map(|q| (q.name.as_str(), q.waiting, q.ready, q.mine))
            .collect();
        assert_eq!(q, [("billing", 0, 1, true), ("orders", 0, 0, false)]);
        // Adele is left out; Alex has no phone.
        // Lynne, Not ready, takes a consultation but no blind transfer.
        let c: Vec<_> = t
            .colleagues
            .iter()
            .map(|c| {
                (
                    c.upn.as_str(),
                    c.name.as_str(),
                    c.state,
                    c.available,
                    c.transferable,
                )
            })
            .collect();
        assert_eq!(
            c,
            [
                (
                    "megan@contoso.example",
                    "Megan Bowen",
                    AgentState::Ready,
                    true,
                    true
                ),
                (
                    "lynne@contoso.example",
                    "lynne@contoso.example",
                    AgentState::NotReady,
                    true,
                    false
                ),
                (
                    "alex@contoso.example",
                    "alex@contoso.example",
                    AgentState::Offline,
                    false,
                    false
                ),
            ]
        );
        let g = &t.experts[0];
        assert_eq!((g.name.as_str(), g.min_level), ("escalations", 3));
        let free: Vec<_> = g
            .available
            .iter()
            .map(|e| (e.upn.as_str(), e.level))
            .collect();
        assert_eq!(
            free,
            [("lynne@contoso.example", 5), ("megan@contoso.example", 4)]
        );
        assert_eq!(g.unavailable, 0, "Alex's level is below the group's");
        // Megan in a meeting: not offered, and not available as a colleague either.
        cc.presence("0a1b2c3d-0000-4000-8000-000000000002", "Busy", "InAMeeting");
        let t = cc.targets("adele@contoso.example", None).unwrap();
        let free: Vec<_> = t.experts[0]
            .available
            .iter()
            .map(|e| e.upn.as_str())
            .collect();
        assert_eq!(free, ["lynne@contoso.example"]);
        assert_eq!(t.experts[0].unavailable, 1);
        assert_eq!(t.colleagues[0].teams.as_deref(), Some("Busy/InAMeeting"));
        assert!(!t.colleagues[0].available);
        assert!(!t.colleagues[0].transferable);
        assert!(matches!(
            cc.targets("nobody@contoso.example", None),
            Err(DeskError::NoSuchAgent(_))
        ));
    }

    #[test]
    fn an_agent_in_do_not_disturb_a_presentation_or_a_meeting_is_offered_nothing() {
        let toml = r#"
[[tenants]]
id = "contoso"
domain = "contoso.example"
queues = [{ name = "general" }]
agents = [{ upn = "adele@contoso.example", object_id = "0A1B2C3D-0000-4000-8000-000000000001" }]
"#;
        let cfg = crate::config::Config::from_toml(toml, std::path::Path::new("t.toml")).unwrap();
        let cc = CallCenter::new(&cfg.tenants, Instant::now());
        cc.with(|d| d.registrar = Some("sip:127.0.0.1:5060".into()));
        let creds = cc
            .issue_credentials("adele@contoso.example", None, None)
            .unwrap();
        let now = Instant::now();
        cc.with(|d| {
            d.registered(
                &creds.username,
                "sip:x@contoso.example",
                Some("sip:x@127.0.0.1:5070".into()),
                now,
            )
        });
        cc.set_state("adele@contoso.example", None, RequestedState::Ready, None)
            .unwrap();
        let available = || cc.with(|d| d.tenants[0].engine.is_available(AgentId(0)));
        assert!(available());
        let id = "0a1b2c3d-0000-4000-8000-000000000001";
        for (av, ac, allows) in [
            ("DoNotDisturb", "Presenting", false),
            ("Available", "Available", true),
            ("Busy", "InAMeeting", false),
            ("Busy", "InACall", false),
            ("Away", "Away", true),
        ] {
            assert!(cc.presence(id, av, ac), "the agent's id is known");
            assert_eq!(available(), allows, "{av}/{ac}");
        }
        let st = cc.status("adele@contoso.example", None).unwrap();
        assert_eq!(st.teams.as_deref(), Some("Away/Away"));
        assert!(!cc.presence(
            "0a1b2c3d-0000-4000-8000-000000000009",
            "DoNotDisturb",
            "Presenting"
        ));
    }

    /// Where a round-robin queue stopped is written when it moves (and only then), and a
    /// router started again from what was written offers the next call to the next agent.
    #[test]
    fn round_robin_goes_on_after_a_restart_from_where_it_stopped() {
        use crate::routing::{CallId, Caller};
        let toml = r#"
[[tenants]]
id = "contoso"
domain = "contoso.example"
queues = [{ name = "general", strategy = "round_robin" }, { name = "other" }]
agents = [{ upn = "adele@contoso.example" }, { upn = "Lynne@contoso.example" }, { upn = "alex@contoso.example" }]
"#;
        let upns = [
            "adele@contoso.example",
            "lynne@contoso.example",
            "alex@contoso.example",
        ];
        let start = |kept: Vec<(String, String, String)>| {
            let cc = center_with_phones(toml, &upns);
            for upn in upns {
                cc.set_state(upn, None, RequestedState::Ready, None)
                    .unwrap();
            }
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            cc.records.set(tx).unwrap();
            cc.restore_round_robin(kept);
            (cc, rx)
        };
        let offer = |cc: &CallCenter, call: u64| {
            cc.with(|d| {
                let e = &mut d.tenants[0].engine;
                let now = Instant::now();
                let caller = Caller {
                    call: CallId(call),
                    priority: 3,
                    since: now,
                };
                e.enqueue(QueueId(0), caller, now).unwrap();
                let offers = e.dispatch();
                assert_eq!(offers.len(), 1, "{offers:?}");
                offers[0].agents.clone()
            })
        };
        let (cc, mut rx) = start(Vec::new());
        cc.save_round_robin();
        assert!(rx.try_recv().is_err(), "no call offered yet: nothing kept");
        assert_eq!(offer(&cc, 1), vec![AgentId(0)]);
        cc.save_round_robin();
        let kept = match rx.try_recv() {
            Ok(RecordWrite::RoundRobin { tenant, queue, upn }) => (tenant, queue, upn),
            other => panic!("where the round stopped is written: {other:?}"),
        };
        assert_eq!(
            kept,
            (
                "contoso".into(),
                "general".into(),
                "adele@contoso.example".into()
            )
        );
        cc.save_round_robin();
        assert!(rx.try_recv().is_err(), "unchanged: not written again");
        // Adele's call ends; the router stops. The next starts from what was kept.
        let (cc, mut rx) = start(vec![
            kept,
            (
                "contoso".into(),
                "gone".into(),
                "adele@contoso.example".into(),
            ),
            (
                "contoso".into(),
                "general".into(),
                "nobody@contoso.example".into(),
            ),
            (
                "fabrikam".into(),
                "general".into(),
                "adele@contoso.example".into(),
            ),
        ]);
        cc.save_round_robin();
        assert!(
            rx.try_recv().is_err(),
            "what was restored is not written back"
        );
        assert_eq!(offer(&cc, 2), vec![AgentId(1)], "Lynne is next, not Adele");
        cc.save_round_robin();
        assert!(matches!(
            rx.try_recv(),
            Ok(RecordWrite::RoundRobin { upn, .. }) if upn == "lynne@contoso.example"
        ));
    }

    /// Agents changed through the API are the queues' at once: a new agent with the skill
    /// becomes a member, a lowered skill takes one out, and a removed agent is unknown to
    /// sign-in and the registrar and stays out of every list.
    #[test]
    fn agents_added_changed_and_removed_are_the_queues_at_once() {
        let toml = r#"
[[tenants]]
id = "contoso"
domain = "contoso.example"
queues = [{ name = "billing", skills = { billing = 3 } }]
agents = [{ upn = "adele@contoso.example", skills = { billing = 5 } }]
"#;
        let cfg = crate::config::Config::from_toml(toml, std::path::Path::new("t.toml")).unwrap();
        let cc = CallCenter::new(&cfg.tenants, Instant::now());
        cc.with(|d| d.registrar = Some("sip:127.0.0.1:5060".into()));
        let members = || cc.with(|d| d.tenants[0].engine.members(QueueId(0)));
        assert_eq!(members(), vec![AgentId(0)]);
        let settings = |level: u8| switchboard_api::AgentSettings {
            name: "Lynne Robbins".into(),
            skills: [("Billing".to_owned(), level)].into_iter().collect(),
            object_id: None,
            teams_number: None,
        };
        assert_eq!(
            cc.set_agent("contoso", "Lynne@contoso.example", Some(&settings(4))),
            Ok(true)
        );
        assert_eq!(members(), vec![AgentId(0), AgentId(1)]);
        assert_eq!(
            cc.set_agent("contoso", "lynne@contoso.example", Some(&settings(2))),
            Ok(false),
            "a change, not a new agent (UPNs without case)"
        );
        assert_eq!(members(), vec![AgentId(0)]);
        // Adele registers; removing her drops her credentials and her from every list.
        let creds = cc
            .issue_credentials("adele@contoso.example", None, None)
            .unwrap();
        assert!(cc.with(|d| d.password_of(&creds.username)).is_some());
        assert_eq!(
            cc.set_agent("contoso", "adele@contoso.example", None),
            Ok(false)
        );
        assert!(cc.with(|d| d.password_of(&creds.username)).is_none());
        assert!(cc
            .issue_credentials("adele@contoso.example", None, None)
            .is_err());
        assert!(members().is_empty(), "out of the queue");
        let listed = cc.agent_configs("contoso").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].upn.as_str(), listed[0].source.as_str()),
            ("lynne@contoso.example", "api")
        );
        assert_eq!(
            cc.set_agent("contoso", "adele@contoso.example", None),
            Err(AgentChangeError::Unknown("adele@contoso.example".into()))
        );
        assert_eq!(
            cc.set_agent("nope", "x@y.example", None),
            Err(AgentChangeError::NoTenant("nope".into()))
        );
        // Back again, in her old place.
        let back = switchboard_api::AgentSettings {
            name: "Adele Vance".into(),
            skills: [("billing".to_owned(), 5)].into_iter().collect(),
            object_id: None,
            teams_number: None,
        };
        assert_eq!(
            cc.set_agent("contoso", "adele@contoso.example", Some(&back)),
            Ok(true)
        );
        assert_eq!(members(), vec![AgentId(0)]);
    }

    /// The forecast reads the last half hour's arrivals, the queue's handle time and the
    /// staffing now: 360 callers in 30 minutes at 240 s are 48 Erlangs; with 2 Ready agents
    /// everyone waits and 54 would meet 80 % in 20 s (the textbook case).
    #[test]
    fn the_forecast_is_erlang_c_on_recent_arrivals_and_staffing_now() {
        let toml = r#"
[[tenants]]
id = "contoso"
domain = "contoso.example"
queues = [{ name = "general", service_level_target = 80.0 }]
agents = [{ upn = "adele@contoso.example" }, { upn = "alex@contoso.example" }, { upn = "lynne@contoso.example" }]
"#;
        let cfg = crate::config::Config::from_toml(toml, std::path::Path::new("t.toml")).unwrap();
        let cc = CallCenter::new(&cfg.tenants, Instant::now());
        cc.with(|d| d.registrar = Some("sip:127.0.0.1:5060".into()));
        let now = Instant::now();
        // Read 4,000 s on (an Instant cannot go back before the machine started).
        let later = now + std::time::Duration::from_secs(4000);
        let fc = || cc.with(|d| d.tenants[0].figures(later)[0].forecast.clone());
        // Nothing yet: no traffic, nobody needed, the default handle time.
        let f = fc();
        assert_eq!(
            (f.arrivals_per_hour, f.traffic_erlangs, f.staffed),
            (0.0, 0.0, 0)
        );
        assert_eq!((f.aht_seconds, f.agents_needed), (180.0, Some(0)));
        let both = ["adele@contoso.example", "alex@contoso.example"];
        register_phones(&cc, &both);
        for upn in both {
            cc.set_state(upn, None, RequestedState::Ready, None)
                .unwrap();
        }
        cc.with(|d| {
            let t = &mut d.tenants[0];
            // An arrival too old to count, then 360 in the half hour before `later`.
            t.stats[0].entered(1000, now);
            for i in 0..360u64 {
                // Spread over the last half hour; older ones are out of the window.
                let at = now + std::time::Duration::from_secs(2200 + 5 * i);
                t.stats[0].entered(i, at);
            }
            for _ in 0..10 {
                t.handle_times[0].record(std::time::Duration::from_secs(240));
            }
        });
        let f = fc();
        assert_eq!(f.arrivals_per_hour, 720.0);
        assert_eq!(
            (f.aht_seconds, f.traffic_erlangs, f.staffed),
            (240.0, 48.0, 2)
        );
        assert_eq!(f.wait_probability, 100.0, "two agents cannot keep up");
        assert_eq!(
            (f.expected_asa_seconds, f.expected_service_level),
            (None, None)
        );
        assert_eq!(f.agents_needed, Some(54));
        // A queue that keeps up: 1 call in the window at 240 s, two agents.
        cc.with(|d| {
            d.tenants[0].stats[0] = crate::figures::QueueStats::default();
            d.tenants[0].stats[0].entered(1, later);
        });
        let f = fc();
        assert_eq!(f.arrivals_per_hour, 2.0);
        assert!(
            f.wait_probability > 0.0 && f.wait_probability < 5.0,
            "{f:?}"
        );
        assert!(f.expected_service_level.is_some_and(|s| s > 95.0), "{f:?}");
        assert!(f.expected_asa_seconds.is_some_and(|s| s < 5.0), "{f:?}");
        assert_eq!(f.agents_needed, Some(1));
    }
}
