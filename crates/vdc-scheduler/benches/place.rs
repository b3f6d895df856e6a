//! How many instances `place` places per second on a large pool: one call
//! placing 1,000,000 instances on 10,000 nodes (the scale of Nomad's "C1M"
//! challenge), and one placing 100,000 on 1,000.
//!
//! Run with `cargo bench -p vdc-scheduler`. The target is at least 100,000
//! placements per second on one core. For reference: Nomad's published C1M
//! figure is 3,750 containers placed per second; kube-scheduler's CI floor
//! is 270 pods per second. Those are whole systems (API, state store,
//! several scheduler workers), this is the placement function alone, so
//! the ratios say the function will not be the bottleneck, not that vdc
//! schedules a cluster that much faster.
//!
//! The pool and the demands come from a fixed-seed generator, so every run
//! places the same instances on the same nodes:
//!
//! - nodes of 32 to 128 cores and 128 to 512 GiB; one in five already
//!   partly allocated (up to half), one in a hundred draining;
//! - labels: a quarter of the nodes have `disk = "ssd"`, every node a `zone`
//!   of three, one in twenty `gpu = "yes"`;
//! - components of 1 to 100 replicas (about 20,000 of them for a million
//!   instances), each of 0.1 to 2 cores and 256 MiB to 4 GiB; one in five
//!   asks for `disk = "ssd"`, one in twenty for a zone, one in fifty for
//!   `gpu = "yes"`, one in a thousand for a label no node has; one in ten
//!   already has a few replicas running;
//! - demands handed over in random order, so the sort is part of the time.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use vdc_model::{InstanceId, NodeId};
use vdc_scheduler::{place, Demand, NodeView};
use vdc_spec::{Bytes, MilliCpu, Resources};

const NOMAD_C1M_PER_S: f64 = 3_750.0;
const KUBE_SCHEDULER_FLOOR_PER_S: f64 = 270.0;
const TARGET_PER_S: f64 = 100_000.0;

/// xorshift64*: cheap and reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn pool(rng: &mut Rng, count: usize) -> Vec<NodeView> {
    (0..count)
        .map(|i| {
            let cpu = rng.pick(&[32u64, 48, 64, 96, 128]) * 1000;
            let memory = rng.pick(&[128u64, 192, 256, 384, 512]) * GIB;
            let allocated = if rng.below(5) == 0 {
                Resources {
                    cpu: MilliCpu(cpu * rng.below(50) / 100),
                    memory: Bytes(memory * rng.below(50) / 100),
                }
            } else {
                Resources::default()
            };
            let zone = ["a", "b", "c"][i % 3];
            let mut pairs = vec![("zone", zone)];
            if rng.below(4) == 0 {
                pairs.push(("disk", "ssd"));
            }
            if rng.below(20) == 0 {
                pairs.push(("gpu", "yes"));
            }
            NodeView {
                id: NodeId(format!("node-{i:05}")),
                capacity: Resources {
                    cpu: MilliCpu(cpu),
                    memory: Bytes(memory),
                },
                allocated,
                schedulable: rng.below(100) != 0,
                labels: labels(&pairs),
            }
        })
        .collect()
}

/// About `total` demands from components of 1 to 100 replicas, in random
/// order, and a few replicas already running for one component in ten.
fn demands(
    rng: &mut Rng,
    total: usize,
    nodes: &[NodeView],
) -> (Vec<Demand>, Vec<(InstanceId, NodeId)>, usize) {
    let mut out = Vec::with_capacity(total);
    let mut existing = Vec::new();
    let mut components = 0;
    while out.len() < total {
        let app = format!("app-{:05}", components / 4);
        let component = format!("c{}", components % 4);
        components += 1;
        let replicas = (1 + rng.below(100) as usize).min(total - out.len());
        let resources = Resources {
            cpu: MilliCpu(rng.pick(&[100, 250, 250, 500, 500, 1000, 2000])),
            memory: Bytes(rng.pick(&[256, 512, 1024, 2048, 4096]) * MIB),
        };
        let wanted = match rng.below(1000) {
            0 => labels(&[("arch", "arm64")]),
            1..=200 => labels(&[("disk", "ssd")]),
            201..=250 => labels(&[("zone", rng.pick(&["a", "b", "c"]))]),
            251..=270 => labels(&[("gpu", "yes")]),
            _ => BTreeMap::new(),
        };
        let running = if rng.below(10) == 0 {
            1 + rng.below(5) as u32
        } else {
            0
        };
        for index in 0..running {
            let id = InstanceId::new(
                app.parse().expect("name"),
                component.parse().expect("name"),
                index,
            );
            let on = &nodes[rng.below(nodes.len() as u64) as usize];
            existing.push((id, on.id.clone()));
        }
        for index in running..running + replicas as u32 {
            out.push(Demand {
                instance: InstanceId::new(
                    app.parse().expect("name"),
                    component.parse().expect("name"),
                    index,
                ),
                resources,
                labels: wanted.clone(),
            });
        }
    }
    for i in (1..out.len()).rev() {
        out.swap(i, rng.below(i as u64 + 1) as usize);
    }
    (out, existing, components)
}

fn run(name: &str, nodes: usize, total: usize) {
    let mut rng = Rng(0x5eed_0000 ^ total as u64);
    let began = Instant::now();
    let pool = pool(&mut rng, nodes);
    let (demands, existing, components) = demands(&mut rng, total, &pool);
    let built = began.elapsed();

    let began = Instant::now();
    let outcome = black_box(place(
        black_box(&pool),
        black_box(&existing),
        black_box(&demands),
    ));
    let took = began.elapsed();

    let placed = outcome.placements.len();
    let per_s = placed as f64 / took.as_secs_f64();
    let decided_per_s = demands.len() as f64 / took.as_secs_f64();
    let (cpu, mem) = demands.iter().fold((0u64, 0u64), |(c, m), d| {
        (c + d.resources.cpu.0, m + d.resources.memory.0)
    });
    let (cap_cpu, cap_mem) =
        pool.iter()
            .filter(|n| n.schedulable)
            .fold((0u64, 0u64), |(c, m), n| {
                (
                    c + n.capacity.cpu.0 - n.allocated.cpu.0,
                    m + n.capacity.memory.0 - n.allocated.memory.0,
                )
            });
    println!(
        "{name}: {} demands from {components} components on {nodes} nodes ({} already running)",
        demands.len(),
        existing.len()
    );
    println!(
        "  asked {:.0}% of the free CPU and {:.0}% of the free memory (inputs built in {})",
        100.0 * cpu as f64 / cap_cpu as f64,
        100.0 * mem as f64 / cap_mem as f64,
        secs(built)
    );
    println!(
        "  place: {} for {placed} placed and {} unplaced",
        secs(took),
        outcome.unplaced.len()
    );
    println!(
        "  {per_s:.0} placements/s ({decided_per_s:.0} demands decided/s): {:.1}x the {TARGET_PER_S:.0}/s target, \
         {:.0}x Nomad C1M ({NOMAD_C1M_PER_S:.0}/s), {:.0}x kube-scheduler's CI floor ({KUBE_SCHEDULER_FLOOR_PER_S:.0}/s)",
        per_s / TARGET_PER_S,
        per_s / NOMAD_C1M_PER_S,
        per_s / KUBE_SCHEDULER_FLOOR_PER_S,
    );
    for kind in ["no node has label", "largest free"] {
        if let Some(u) = outcome.unplaced.iter().find(|u| u.reason.contains(kind)) {
            println!("  e.g. unplaced: {}", u.reason);
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn main() {
    // `cargo test --benches` runs this too, with `--bench` absent: keep it
    // to the small case there.
    let full = std::env::args().any(|a| a == "--bench");
    run("100k on 1k nodes", 1_000, 100_000);
    if full {
        run("C1M: 1M on 10k nodes", 10_000, 1_000_000);
    }
}
