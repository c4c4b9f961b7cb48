//! How a routing decision's cost grows with the number of agents (#14: "like log n, not n").
//! One decision is a full cycle for one caller: join the queue, choose the agent, answer, end,
//! wrap-up done — the agent's indexes are updated twice on the way. Criterion measures 100 to
//! 100,000 agents for three strategies; then a plain loop prints the time per decision and the
//! growth from 100 to 100,000 agents beside log n's (2.5×) and n's (1000×).
//!
//! `cargo bench -p switchboard-router --bench routing`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion};
use switchboard_router::routing::{
    AgentId, AgentSpec, CallId, Caller, Engine, QueueId, QueueSpec, Strategy,
};

const SIZES: [u32; 4] = [100, 1_000, 10_000, 100_000];

fn engine(strategy: Strategy, n: u32) -> (Engine, Instant) {
    let t0 = Instant::now();
    let mut e = Engine::new(t0);
    e.set_queue(
        QueueId(0),
        QueueSpec {
            strategy,
            skills: vec![(1, 1)],
            max_size: None,
            max_wait: None,
        },
    );
    for i in 0..n {
        let a = AgentId(i);
        let level = (i % 5 + 1) as u8;
        e.set_agent(
            a,
            AgentSpec {
                skills: vec![(1, level)],
                rank: i,
            },
            t0,
        );
        e.set_online(a, true, t0);
        e.set_ready(a, true, t0 + Duration::from_nanos(u64::from(i)));
    }
    (e, t0)
}

/// One caller from arrival to the agent's wrap-up.
fn cycle(e: &mut Engine, call: u64, now: Instant) {
    let c = Caller {
        call: CallId(call),
        priority: 3,
        since: now,
    };
    e.enqueue(QueueId(0), c, now).expect("a queue with agents");
    let offers = e.dispatch();
    let agent = offers[0].agents[0];
    e.answered(CallId(call), agent);
    e.call_ended(agent, Duration::from_secs(60));
    e.wrap_up_done(agent, now);
    black_box(agent);
}

fn decisions(c: &mut Criterion) {
    for strategy in [
        Strategy::LongestIdle,
        Strategy::BestSkill,
        Strategy::RoundRobin,
    ] {
        let mut group = c.benchmark_group(format!("routing/{strategy:?}"));
        for n in SIZES {
            let (mut e, t0) = engine(strategy, n);
            let mut call = 0u64;
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(|| {
                    call += 1;
                    cycle(&mut e, call, t0 + Duration::from_micros(call));
                })
            });
        }
        group.finish();
    }
}

/// The figure the issue asks for: time per decision at each size and the growth ratio.
fn growth() {
    println!("\nrouting decision (enqueue + choose + answer + end + wrap-up), longest idle:");
    let mut first = None;
    for n in SIZES {
        let (mut e, t0) = engine(Strategy::LongestIdle, n);
        let rounds = 50_000u64;
        for call in 0..1_000 {
            cycle(&mut e, call, t0);
        }
        let start = Instant::now();
        for call in 1_000..1_000 + rounds {
            cycle(&mut e, call, t0 + Duration::from_micros(call));
        }
        let per = start.elapsed().as_secs_f64() * 1e9 / rounds as f64;
        let base = *first.get_or_insert(per);
        println!(
            "  {n:>7} agents: {per:>7.0} ns per decision ({:.2}x the 100-agent time)",
            per / base
        );
    }
    println!("  log n would grow 2.50x from 100 to 100,000 agents; n would grow 1000x");
}

criterion_group!(benches, decisions);

fn main() {
    benches();
    growth();
    Criterion::default().configure_from_args().final_summary();
}
