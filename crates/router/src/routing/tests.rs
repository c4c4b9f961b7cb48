use super::*;

const BILLING: SkillId = 1;
const ORDERS: SkillId = 2;

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

fn queue(strategy: Strategy) -> QueueSpec {
    QueueSpec {
        strategy,
        skills: Vec::new(),
        max_size: None,
        max_wait: None,
    }
}

/// An engine with queue 0 of `strategy` and `n` agents (rank = id), all ready, agent i idle
/// since second i (agent 0 the longest).
fn engine(strategy: Strategy, n: u32) -> (Engine, Instant) {
    let t0 = Instant::now();
    let mut e = Engine::new(t0);
    e.set_queue(QueueId(0), queue(strategy));
    for i in 0..n {
        let a = AgentId(i);
        e.set_agent(
            a,
            AgentSpec {
                skills: Vec::new(),
                rank: i,
            },
            t0,
        );
        e.set_online(a, true, t0);
        e.set_ready(a, true, secs(t0, u64::from(i)));
    }
    (e, t0)
}

fn caller(call: u64, priority: u8, since: Instant) -> Caller {
    Caller {
        call: CallId(call),
        priority,
        since,
    }
}

/// Offers call `call` and returns whom it rings.
fn offer_one(e: &mut Engine, call: u64, at: Instant) -> Vec<AgentId> {
    e.enqueue(QueueId(0), caller(call, 3, at), at).unwrap();
    let offers = e.dispatch();
    assert_eq!(offers.len(), 1, "{offers:?}");
    offers[0].agents.clone()
}

/// Answers and ends the call at once, wrap-up done at `at`.
fn finish(e: &mut Engine, call: u64, a: AgentId, talk: u64, at: Instant) {
    assert!(e.answered(CallId(call), a));
    e.call_ended(a, Duration::from_secs(talk));
    e.wrap_up_done(a, at);
}

#[test]
fn longest_idle_takes_the_agent_idle_longest_and_then_the_next() {
    let (mut e, t0) = engine(Strategy::LongestIdle, 3);
    assert_eq!(offer_one(&mut e, 1, secs(t0, 10)), vec![AgentId(0)]);
    assert_eq!(offer_one(&mut e, 2, secs(t0, 10)), vec![AgentId(1)]);
    finish(&mut e, 1, AgentId(0), 30, secs(t0, 50));
    // Agent 2 (ready since 2 s) has waited longer than agent 0 (idle again since 50 s).
    assert_eq!(offer_one(&mut e, 3, secs(t0, 60)), vec![AgentId(2)]);
    assert_eq!(offer_one(&mut e, 4, secs(t0, 60)), vec![AgentId(0)]);
}

#[test]
fn round_robin_remembers_where_it_stopped_and_wraps() {
    let (mut e, t0) = engine(Strategy::RoundRobin, 3);
    let mut got = Vec::new();
    for call in 1..=5 {
        let a = offer_one(&mut e, call, t0)[0];
        got.push(a.0);
        finish(&mut e, call, a, 10, t0);
    }
    assert_eq!(got, vec![0, 1, 2, 0, 1]);
    // An agent who is busy is passed over, and the round goes on after the one offered.
    e.set_busy_elsewhere(AgentId(2), Some(CallId(99)), t0);
    let a = offer_one(&mut e, 6, t0)[0];
    assert_eq!(a, AgentId(0));
}

#[test]
fn round_robin_goes_on_from_a_kept_place_and_keeps_it_when_the_queue_changes() {
    let (mut e, t0) = engine(Strategy::RoundRobin, 3);
    assert_eq!(e.round_robin_last(QueueId(0)), None);
    // A restart: the place kept from before says agent 0 had the last call.
    e.set_round_robin_last(QueueId(0), AgentId(0));
    assert_eq!(e.round_robin_last(QueueId(0)), Some(AgentId(0)));
    let a = offer_one(&mut e, 1, t0)[0];
    assert_eq!(a, AgentId(1));
    assert_eq!(e.round_robin_last(QueueId(0)), Some(AgentId(1)));
    finish(&mut e, 1, a, 10, t0);
    // Changing the queue (its size, say) does not start the round again.
    e.set_queue(
        QueueId(0),
        QueueSpec {
            max_size: Some(5),
            ..queue(Strategy::RoundRobin)
        },
    );
    assert_eq!(offer_one(&mut e, 2, t0), vec![AgentId(2)]);
    // An agent the engine does not know leaves the place as it was.
    e.set_round_robin_last(QueueId(0), AgentId(42));
    assert_eq!(e.round_robin_last(QueueId(0)), Some(AgentId(2)));
}

#[test]
fn a_consultation_of_a_queue_takes_the_agent_its_strategy_picks_and_never_one_before_a_caller() {
    // Longest idle: agent 0; busy with the consultation, then agent 1.
    let (mut e, t0) = engine(Strategy::LongestIdle, 3);
    assert_eq!(e.next_for_consult(QueueId(0), &[]), Some(AgentId(0)));
    e.set_busy_elsewhere(AgentId(0), Some(CallId(90)), secs(t0, 5));
    assert_eq!(e.next_for_consult(QueueId(0), &[]), Some(AgentId(1)));
    // Ring all: the first it would ring.
    let (e, _) = engine(Strategy::RingAll, 3);
    assert_eq!(e.next_for_consult(QueueId(0), &[]), Some(AgentId(0)));
    // Round robin: a look does not move it on (a consultation refused after it costs the
    // queue nothing); once the agent is rung it moves on as for a call: the next call goes to
    // the one after.
    let (mut e, t0) = engine(Strategy::RoundRobin, 3);
    assert_eq!(e.next_for_consult(QueueId(0), &[]), Some(AgentId(0)));
    assert_eq!(e.next_for_consult(QueueId(0), &[]), Some(AgentId(0)));
    assert_eq!(e.round_robin_last(QueueId(0)), None);
    e.consulted(QueueId(0), AgentId(0));
    assert_eq!(e.round_robin_last(QueueId(0)), Some(AgentId(0)));
    assert_eq!(offer_one(&mut e, 1, t0), vec![AgentId(1)]);
    // Nobody available (one ringing, the others not ready): none, and a caller who waits
    // comes before any consultation when an agent is free again.
    e.set_ready(AgentId(0), false, t0);
    e.set_ready(AgentId(2), false, t0);
    assert_eq!(e.next_for_consult(QueueId(0), &[]), None);
    e.enqueue(QueueId(0), caller(2, 3, t0), t0).unwrap();
    assert!(e.dispatch().is_empty());
    e.set_ready(AgentId(2), true, secs(t0, 9));
    assert_eq!(
        e.next_for_consult(QueueId(0), &[]),
        None,
        "the caller waits first"
    );
    assert_eq!(e.dispatch()[0].agents, vec![AgentId(2)]);
    assert_eq!(e.next_for_consult(QueueId(9), &[]), None, "no such queue");
}

#[test]
fn a_consultation_of_a_queue_passes_over_those_it_already_rang() {
    // Linear: agent 0 declined, agent 1 is next; with both passed over, agent 2; nobody else.
    let (e, _) = engine(Strategy::Linear, 3);
    assert_eq!(e.next_for_consult(QueueId(0), &[]), Some(AgentId(0)));
    assert_eq!(
        e.next_for_consult(QueueId(0), &[AgentId(0)]),
        Some(AgentId(1))
    );
    assert_eq!(
        e.next_for_consult(QueueId(0), &[AgentId(1), AgentId(0)]),
        Some(AgentId(2))
    );
    let all = [AgentId(0), AgentId(1), AgentId(2)];
    assert_eq!(e.next_for_consult(QueueId(0), &all), None);
    // Round robin: after the one offered last, wrapping round past those passed over.
    let (mut e, _) = engine(Strategy::RoundRobin, 3);
    e.consulted(QueueId(0), AgentId(1));
    assert_eq!(e.next_for_consult(QueueId(0), &[]), Some(AgentId(2)));
    assert_eq!(
        e.next_for_consult(QueueId(0), &[AgentId(2)]),
        Some(AgentId(0))
    );
    assert_eq!(
        e.next_for_consult(QueueId(0), &[AgentId(2), AgentId(0)]),
        Some(AgentId(1))
    );
    // Random: never one passed over.
    let (e, _) = engine(Strategy::Random, 3);
    for _ in 0..50 {
        assert_eq!(
            e.next_for_consult(QueueId(0), &[AgentId(0), AgentId(2)]),
            Some(AgentId(1))
        );
    }
    assert_eq!(e.next_for_consult(QueueId(0), &all), None);
}

#[test]
fn ring_all_rings_everyone_and_the_first_answer_frees_the_rest() {
    let (mut e, t0) = engine(Strategy::RingAll, 3);
    let ringing = offer_one(&mut e, 1, t0);
    assert_eq!(ringing, vec![AgentId(0), AgentId(1), AgentId(2)]);
    for a in &ringing {
        assert!(
            !e.is_available(*a),
            "ringing agents are offered nothing else"
        );
    }
    assert!(e.answered(CallId(1), AgentId(1)));
    assert!(
        !e.answered(CallId(1), AgentId(2)),
        "a second answer does not take it"
    );
    assert!(e.is_available(AgentId(0)) && e.is_available(AgentId(2)));
    assert!(!e.is_available(AgentId(1)));
}

#[test]
fn fewest_calls_least_talk_and_best_skill_order() {
    // Fewest calls: agent 0 answered two, agent 1 one, agent 2 none.
    let (mut e, t0) = engine(Strategy::FewestCalls, 3);
    e.set_ready(AgentId(2), false, t0);
    for call in [1, 2, 3] {
        let a = offer_one(&mut e, call, t0)[0];
        finish(&mut e, call, a, 10, t0);
    }
    e.set_ready(AgentId(2), true, t0);
    assert_eq!(offer_one(&mut e, 4, t0), vec![AgentId(2)]);

    // Least talk time: 0 talked 100 s, 1 talked 5 s.
    let (mut e, t0) = engine(Strategy::LeastTalkTime, 2);
    let a = offer_one(&mut e, 1, t0)[0];
    finish(&mut e, 1, a, 100, t0);
    let b = offer_one(&mut e, 2, t0)[0];
    finish(&mut e, 2, b, 5, t0);
    assert_eq!((a, b), (AgentId(0), AgentId(1)));
    assert_eq!(offer_one(&mut e, 3, t0), vec![AgentId(1)]);

    // Best skill: the queue asks billing ≥ 2; 1 has billing 5, 0 has billing 3, 2 has none.
    let t0 = Instant::now();
    let mut e = Engine::new(t0);
    e.set_queue(
        QueueId(0),
        QueueSpec {
            skills: vec![(BILLING, 2)],
            ..queue(Strategy::BestSkill)
        },
    );
    for (i, skills) in [vec![(BILLING, 3)], vec![(BILLING, 5)], vec![(ORDERS, 5)]]
        .into_iter()
        .enumerate()
    {
        let a = AgentId(i as u32);
        e.set_agent(
            a,
            AgentSpec {
                skills,
                rank: i as u32,
            },
            t0,
        );
        e.set_online(a, true, t0);
        e.set_ready(a, true, t0);
    }
    assert_eq!(e.members(QueueId(0)), vec![AgentId(0), AgentId(1)]);
    assert_eq!(offer_one(&mut e, 1, t0), vec![AgentId(1)]);
    assert_eq!(offer_one(&mut e, 2, t0), vec![AgentId(0)]);
    e.enqueue(QueueId(0), caller(3, 3, t0), t0).unwrap();
    assert!(
        e.dispatch().is_empty(),
        "the agent without the skill is never offered"
    );
}

#[test]
fn linear_is_top_down_and_ties_go_to_the_lower_rank() {
    let (mut e, t0) = engine(Strategy::Linear, 3);
    assert_eq!(offer_one(&mut e, 1, t0), vec![AgentId(0)]);
    finish(&mut e, 1, AgentId(0), 1, t0);
    assert_eq!(offer_one(&mut e, 2, t0), vec![AgentId(0)]);
    // Longest idle with equal idle times: the rank decides.
    let (mut e, t0) = engine(Strategy::LongestIdle, 3);
    for i in 0..3 {
        e.set_ready(AgentId(i), false, t0);
        e.set_ready(AgentId(i), true, t0);
    }
    assert_eq!(offer_one(&mut e, 1, t0), vec![AgentId(0)]);
}

#[test]
fn random_reaches_every_available_agent() {
    let (mut e, t0) = engine(Strategy::Random, 4);
    e.set_ready(AgentId(3), false, t0);
    let mut seen = BTreeSet::new();
    for call in 0..200 {
        let a = offer_one(&mut e, call, t0)[0];
        seen.insert(a);
        finish(&mut e, call, a, 1, t0);
    }
    assert_eq!(seen, [AgentId(0), AgentId(1), AgentId(2)].into());
}

#[test]
fn priority_first_then_wait_and_a_bounced_caller_keeps_their_place() {
    let (mut e, t0) = engine(Strategy::LongestIdle, 1);
    e.set_ready(AgentId(0), false, t0);
    e.enqueue(QueueId(0), caller(1, 3, secs(t0, 1)), secs(t0, 1))
        .unwrap();
    e.enqueue(QueueId(0), caller(2, 3, secs(t0, 2)), secs(t0, 2))
        .unwrap();
    e.enqueue(QueueId(0), caller(3, 5, secs(t0, 3)), secs(t0, 3))
        .unwrap();
    assert_eq!(e.position(CallId(3)), Some(1), "priority 5 goes first");
    assert_eq!(e.position(CallId(1)), Some(2));
    // Caller 1 goes to the attendant and comes back later: same place.
    let back = e.remove(CallId(1)).unwrap();
    e.enqueue(QueueId(0), caller(4, 3, secs(t0, 4)), secs(t0, 4))
        .unwrap();
    e.enqueue(QueueId(0), back, secs(t0, 60)).unwrap();
    assert_eq!(e.position(CallId(1)), Some(2));
    e.set_ready(AgentId(0), true, t0);
    let order: Vec<u64> = (0..4)
        .map(|_| {
            let o = e.dispatch();
            let call = o[0].call;
            assert!(e.answered(call, AgentId(0)));
            e.call_ended(AgentId(0), Duration::ZERO);
            e.wrap_up_done(AgentId(0), t0);
            call.0
        })
        .collect();
    assert_eq!(order, vec![3, 1, 2, 4]);
}

#[test]
fn across_queues_the_best_caller_gets_the_shared_agent() {
    let t0 = Instant::now();
    let mut e = Engine::new(t0);
    e.set_queue(QueueId(0), queue(Strategy::LongestIdle));
    e.set_queue(QueueId(1), queue(Strategy::LongestIdle));
    e.set_agent(
        AgentId(0),
        AgentSpec {
            skills: vec![],
            rank: 0,
        },
        t0,
    );
    e.set_online(AgentId(0), true, t0);
    e.enqueue(QueueId(0), caller(1, 3, secs(t0, 5)), secs(t0, 5))
        .unwrap();
    e.enqueue(QueueId(1), caller(2, 3, secs(t0, 1)), secs(t0, 1))
        .unwrap();
    e.set_ready(AgentId(0), true, t0);
    let offers = e.dispatch();
    assert_eq!(offers.len(), 1);
    assert_eq!((offers[0].call, offers[0].queue), (CallId(2), QueueId(1)));
}

#[test]
fn an_agent_on_any_call_is_never_offered_another() {
    let (mut e, t0) = engine(Strategy::LongestIdle, 1);
    // A call the router did not place.
    e.set_busy_elsewhere(AgentId(0), Some(CallId(77)), t0);
    e.enqueue(QueueId(0), caller(1, 3, t0), t0).unwrap();
    assert!(e.dispatch().is_empty());
    e.set_busy_elsewhere(AgentId(0), None, t0);
    assert_eq!(e.dispatch().len(), 1, "free again: offered");
    // Ringing, talking and wrap-up all keep them out.
    e.enqueue(QueueId(0), caller(2, 3, t0), t0).unwrap();
    assert!(e.dispatch().is_empty(), "ringing");
    assert!(e.answered(CallId(1), AgentId(0)));
    assert!(e.dispatch().is_empty(), "talking");
    e.call_ended(AgentId(0), Duration::from_secs(5));
    assert!(e.dispatch().is_empty(), "wrap-up");
    e.wrap_up_done(AgentId(0), t0);
    assert_eq!(e.dispatch()[0].call, CallId(2));
}

#[test]
fn presence_that_forbids_calls_is_skipped() {
    let (mut e, t0) = engine(Strategy::Linear, 2);
    e.set_presence_allows(AgentId(0), false);
    assert_eq!(offer_one(&mut e, 1, t0), vec![AgentId(1)]);
    e.set_presence_allows(AgentId(0), true);
    assert_eq!(offer_one(&mut e, 2, t0), vec![AgentId(0)]);
}

#[test]
fn no_answer_sets_the_agent_not_ready_and_the_caller_keeps_the_head() {
    let (mut e, t0) = engine(Strategy::LongestIdle, 2);
    e.enqueue(QueueId(0), caller(1, 3, t0), t0).unwrap();
    let first = e.dispatch();
    assert_eq!(first[0].agents, vec![AgentId(0)]);
    // Another caller arrives while it rings.
    e.enqueue(QueueId(0), caller(2, 3, secs(t0, 5)), secs(t0, 5))
        .unwrap();
    let second = e.dispatch();
    assert_eq!(
        (second[0].call, second[0].agents.clone()),
        (CallId(2), vec![AgentId(1)])
    );
    e.offer_ended(
        CallId(1),
        AgentId(0),
        OfferEnd::NoAnswer(AfterMissed::NotReady),
        secs(t0, 20),
    );
    assert!(!e.is_available(AgentId(0)), "not ready after a missed call");
    assert_eq!(e.position(CallId(1)), Some(1), "back at the head");
    // Agent 1 refuses call 2 (busy): they stay ready but are passed over for the refusal's
    // pause (no call for them now, nor a wake-up before it ends); then call 1 (the head)
    // goes to them.
    e.offer_ended(CallId(2), AgentId(1), OfferEnd::Refused, secs(t0, 21));
    assert!(!e.is_available(AgentId(1)), "held back");
    assert!(
        e.dispatch().is_empty(),
        "nobody to offer to while held back"
    );
    assert_eq!(e.poll_timeout(), Some(secs(t0, 21) + REFUSED_PAUSE));
    assert!(!e.release_held_back(secs(t0, 25)), "not yet");
    assert!(e.release_held_back(secs(t0, 26)));
    assert!(e.is_available(AgentId(1)));
    let next = e.dispatch();
    assert_eq!(
        (next[0].call, next[0].agents.clone()),
        (CallId(1), vec![AgentId(1)])
    );
    // Ready after a miss, when the queue says so.
    let (mut e, t0) = engine(Strategy::LongestIdle, 1);
    offer_one(&mut e, 1, t0);
    e.offer_ended(
        CallId(1),
        AgentId(0),
        OfferEnd::NoAnswer(AfterMissed::Ready),
        t0,
    );
    assert!(e.is_available(AgentId(0)));
}

#[test]
fn ring_all_goes_on_until_the_last_ringing_agent_gives_up() {
    let (mut e, t0) = engine(Strategy::RingAll, 2);
    offer_one(&mut e, 1, t0);
    let missed = OfferEnd::NoAnswer(AfterMissed::NotReady);
    e.offer_ended(CallId(1), AgentId(0), missed, t0);
    assert_eq!(e.position(CallId(1)), None, "still ringing agent 1");
    e.offer_ended(CallId(1), AgentId(1), missed, t0);
    assert_eq!(e.position(CallId(1)), Some(1));
}

#[test]
fn full_queues_empty_queues_and_the_maximum_wait() {
    let (mut e, t0) = engine(Strategy::LongestIdle, 1);
    e.set_queue(
        QueueId(0),
        QueueSpec {
            max_size: Some(1),
            max_wait: Some(Duration::from_secs(60)),
            ..queue(Strategy::LongestIdle)
        },
    );
    e.set_ready(AgentId(0), false, t0);
    e.enqueue(QueueId(0), caller(1, 3, t0), t0).unwrap();
    assert_eq!(
        e.enqueue(QueueId(0), caller(2, 3, t0), t0),
        Err(Refused::Full)
    );
    assert_eq!(
        e.enqueue(QueueId(0), caller(1, 3, t0), t0),
        Err(Refused::AlreadyQueued)
    );
    assert_eq!(e.poll_timeout(), Some(secs(t0, 60)));
    assert!(e.handle_timeout(secs(t0, 59)).is_empty());
    let out = e.handle_timeout(secs(t0, 60));
    assert_eq!(out, vec![(QueueId(0), caller(1, 3, t0))]);
    assert_eq!(e.waiting(QueueId(0)), 0);
    assert_eq!(e.poll_timeout(), None);
    // Nobody logged in: refused at once.
    e.set_online(AgentId(0), false, t0);
    assert_eq!(
        e.enqueue(QueueId(0), caller(3, 3, t0), t0),
        Err(Refused::NoAgents)
    );
    assert_eq!(
        e.enqueue(QueueId(9), caller(3, 3, t0), t0),
        Err(Refused::NoSuchQueue)
    );
}

#[test]
fn a_ringing_caller_is_not_timed_out_and_one_who_hangs_up_frees_the_agents() {
    let (mut e, t0) = engine(Strategy::RingAll, 2);
    e.set_queue(
        QueueId(0),
        QueueSpec {
            max_wait: Some(Duration::from_secs(10)),
            ..queue(Strategy::RingAll)
        },
    );
    offer_one(&mut e, 1, t0);
    assert!(e.handle_timeout(secs(t0, 30)).is_empty(), "ringing");
    let gone = e.remove(CallId(1)).unwrap();
    assert_eq!(gone.call, CallId(1));
    assert!(e.is_available(AgentId(0)) && e.is_available(AgentId(1)));
    assert!(
        !e.answered(CallId(1), AgentId(0)),
        "an abandoned call is nobody's"
    );
}

#[test]
fn agents_join_and_leave_queues_with_their_skills() {
    let t0 = Instant::now();
    let mut e = Engine::new(t0);
    e.set_queue(
        QueueId(0),
        QueueSpec {
            skills: vec![(BILLING, 3)],
            ..queue(Strategy::LongestIdle)
        },
    );
    let spec = |level| AgentSpec {
        skills: vec![(BILLING, level)],
        rank: 0,
    };
    e.set_agent(AgentId(0), spec(2), t0);
    assert!(e.members(QueueId(0)).is_empty(), "level 2 < 3");
    e.set_agent(AgentId(0), spec(4), t0);
    assert_eq!(e.members(QueueId(0)), vec![AgentId(0)]);
    e.set_online(AgentId(0), true, t0);
    e.set_ready(AgentId(0), true, t0);
    e.set_agent(AgentId(0), spec(1), t0);
    assert!(e.members(QueueId(0)).is_empty());
    assert!(
        e.is_available(AgentId(0)),
        "state kept across a skill change"
    );
    e.enqueue(QueueId(0), caller(1, 3, t0), t0)
        .expect_err("no member logged in");
}

/// The configuration API changes a queue and removes agents while callers wait: the waiting
/// callers stay in their order, the members follow the new skills, and a removed agent is
/// out of every queue and offered nothing until added again.
#[test]
fn a_changed_queue_keeps_its_callers_and_a_removed_agent_is_offered_nothing() {
    let (mut e, t0) = engine(Strategy::Linear, 0);
    for (i, level) in [(0, 5), (1, 2)] {
        let a = AgentId(i);
        e.set_agent(
            a,
            AgentSpec {
                skills: vec![(BILLING, level)],
                rank: i,
            },
            t0,
        );
        e.set_online(a, true, t0);
    }
    e.enqueue(QueueId(0), caller(1, 3, t0), t0).unwrap();
    e.enqueue(QueueId(0), caller(2, 3, secs(t0, 1)), secs(t0, 1))
        .unwrap();
    e.set_queue(
        QueueId(0),
        QueueSpec {
            skills: vec![(BILLING, 3)],
            ..queue(Strategy::Linear)
        },
    );
    assert_eq!(e.waiting(QueueId(0)), 2);
    assert_eq!(e.position(CallId(1)), Some(1));
    assert_eq!(e.members(QueueId(0)), vec![AgentId(0)]);
    e.remove_agent(AgentId(0));
    assert!(e.members(QueueId(0)).is_empty());
    e.set_ready(AgentId(0), true, secs(t0, 2));
    assert!(e.dispatch().is_empty(), "nobody to offer to");
    e.set_agent(
        AgentId(0),
        AgentSpec {
            skills: vec![(BILLING, 5)],
            rank: 0,
        },
        secs(t0, 3),
    );
    e.set_online(AgentId(0), true, secs(t0, 3));
    e.set_ready(AgentId(0), true, secs(t0, 3));
    let offers = e.dispatch();
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(offers[0].call, CallId(1), "the first caller first");
}
