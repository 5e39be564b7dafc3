//! Profiling aid: the pinned workload of `lab bench book` through the bulk rebuild, no Python.
//! `cargo run --release --example bench_bulk -- [rows] [runs]` (pin it: `taskset -c 1`).
use rust_book::bulk::{rebuild, Input, Options};
use rust_book::workload::generate;

fn bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let runs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20);
    let w = generate(rows, 1, 1000, 10_000);
    let (p, a, t, l) = (bytes(&w.prices), bytes(&w.amounts), bytes(&w.timestamps), bytes(&w.local_timestamps));
    let inp = Input {
        sides: &w.sides,
        prices: &p,
        amounts: &a,
        flags: &w.flags,
        timestamps: &t,
        local_timestamps: &l,
        price_width: 8,
        amount_width: 8,
        gaps: &[],
    };
    let opts = Options { depth: 1000, snapshot_depth: 0, interval_ns: 0 };
    let mut times = Vec::new();
    for _ in 0..runs {
        let t0 = std::time::Instant::now();
        let out = rebuild(&inp, &opts).unwrap();
        times.push(t0.elapsed().as_secs_f64());
        assert_eq!((out.best_bid, out.best_ask), (w.best_bid, w.best_ask));
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = w.flags.len() as f64;
    println!(
        "rows {} bulk M deltas/s: best {:.1} median {:.1} worst {:.1}",
        w.flags.len(),
        n / times[0] / 1e6,
        n / times[runs / 2] / 1e6,
        n / times[runs - 1] / 1e6
    );
}
