//! Times the int8 VNNI matrix-vector product on the shapes of a 135M-parameter model's decode
//! step (SmolLM2-135M: hidden 576, 30 layers, 9 heads / 3 kv heads, MLP 1536, vocab 49152),
//! against candle's Q8_0 `QMatMul` on the same shapes.
//!
//! Thread count: candle's worker pool size, from `RAYON_NUM_THREADS` (or `CANDLE_NUM_THREADS`):
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo run --release -p persona-kernels --example gemv_i8
//! RAYON_NUM_THREADS=2 cargo run --release -p persona-kernels --example gemv_i8
//! ```
//!
//! Flags: `--no-candle` skips the candle comparison; `--only-step` runs only the decode step,
//! `--only-dram` only the DRAM-streaming measurement; `--shape rows,cols,n_vec[,copies]` times
//! one shape (cycling through `copies` matrices, to stream them from L3/DRAM).
//!
//! The machine is shared: numbers move by ±20% from run to run (other jobs, shared L3); compare
//! runs made back to back on an idle machine.
use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use persona_kernels::gemv_i8::{gemv_many, I8Matrix};

const HIDDEN: usize = 576;
const KV: usize = 192;
const MLP: usize = 1536;
const VOCAB: usize = 49152;
const LAYERS: usize = 30;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}

/// Median seconds per call of `f`, over at least `min_reps` calls and about `min_secs`.
fn time<F: FnMut()>(mut f: F, min_reps: usize, min_secs: f64) -> f64 {
    for _ in 0..2 {
        f();
    }
    let mut ts = Vec::new();
    let start = Instant::now();
    while ts.len() < min_reps || start.elapsed().as_secs_f64() < min_secs {
        let t = Instant::now();
        f();
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

struct Layer {
    q: I8Matrix,
    k: I8Matrix,
    v: I8Matrix,
    o: I8Matrix,
    gate: I8Matrix,
    up: I8Matrix,
    down: I8Matrix,
}

fn quant(rows: usize, cols: usize, seed: u64) -> (I8Matrix, Vec<f32>) {
    let w = values(rows * cols, seed);
    (I8Matrix::quantize(&w, rows, cols).unwrap(), w)
}

fn candle_mat(w: &[f32], rows: usize, cols: usize) -> QMatMul {
    let t = Tensor::from_slice(w, (rows, cols), &Device::Cpu).unwrap();
    QMatMul::from_qtensor(QTensor::quantize(&t, GgmlDType::Q8_0).unwrap()).unwrap()
}

fn main() {
    let flag = |f: &str| std::env::args().any(|a| a == f);
    let with_candle = !flag("--no-candle");
    let threads = persona_kernels::parallel::threads();
    println!(
        "threads: {threads}, AVX-512 VNNI: {}{}",
        persona_kernels::cpu::has_avx512_vnni(),
        if with_candle { "" } else { " (candle skipped)" }
    );

    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--shape") {
        one_shape(
            args.get(i + 1)
                .expect("--shape needs rows,cols,n_vec[,copies]"),
        );
        return;
    }
    if flag("--only-dram") {
        dram();
        return;
    }
    if !flag("--only-step") {
        single_matrices(with_candle);
    }
    decode_step(with_candle);
    if !flag("--only-step") {
        dram();
    }
}

/// `rows,cols,n_vec[,copies]`: times one shape; with copies > 1, cycles through that many
/// different matrices so that they stream from L3 or DRAM instead of staying in L2.
fn one_shape(spec: &str) {
    let v: Vec<usize> = spec
        .split(',')
        .map(|t| t.parse().expect("--shape: not a number"))
        .collect();
    assert!(v.len() >= 3, "--shape needs rows,cols,n_vec[,copies]");
    let (rows, cols, n_vec, copies) = (v[0], v[1], v[2], v.get(3).copied().unwrap_or(1).max(1));
    let ms: Vec<I8Matrix> = (0..copies).map(|i| quant(rows, cols, i as u64).0).collect();
    let x = values(n_vec * cols, 1);
    let mut y = vec![0f32; n_vec * rows];
    let mut i = 0;
    for _ in 0..3 {
        let s = time(
            || {
                ms[i % copies].gemv(&x, n_vec, &mut y);
                i += 1;
            },
            20,
            0.5,
        );
        println!(
            "i8 gemv {rows}×{cols}, n_vec {n_vec}, {copies} copies: {:8.1} µs, {:6.1} GB/s",
            s * 1e6,
            ms[0].bytes() as f64 / s / 1e9
        );
    }
}

fn single_matrices(with_candle: bool) {
    for &(rows, cols) in &[(MLP, HIDDEN), (HIDDEN, MLP), (VOCAB, HIDDEN)] {
        let (m, w) = quant(rows, cols, rows as u64);
        for n_vec in [1, 4] {
            let x = values(n_vec * cols, 1);
            let mut y = vec![0f32; n_vec * rows];
            let s = time(|| m.gemv(&x, n_vec, &mut y), 20, 0.5);
            println!(
                "i8 gemv {rows}×{cols}, n_vec {n_vec}: {:8.1} µs, {:6.1} GB/s",
                s * 1e6,
                m.bytes() as f64 / s / 1e9
            );
        }
        if with_candle {
            let c = candle_mat(&w, rows, cols);
            let x = Tensor::from_vec(values(cols, 1), (1, cols), &Device::Cpu).unwrap();
            let s = time(|| drop(c.forward(&x).unwrap()), 20, 0.5);
            // Q8_0: 32 int8 + one f16 scale per block of 32.
            let bytes = rows * cols / 32 * 34;
            println!(
                "candle Q8_0 {rows}×{cols}, 1 vec:  {:8.1} µs, {:6.1} GB/s",
                s * 1e6,
                bytes as f64 / s / 1e9
            );
        }
    }
}

/// Every matrix of a decode step of the 135M model, once.
fn decode_step(with_candle: bool) {
    println!("quantizing a 135M model ({LAYERS} layers + LM head)...");
    let mut layers = Vec::new();
    let mut candle_layers = Vec::new();
    for l in 0..LAYERS {
        let seed = 1000 * l as u64;
        let shapes = [
            (HIDDEN, HIDDEN),
            (KV, HIDDEN),
            (KV, HIDDEN),
            (HIDDEN, HIDDEN),
            (MLP, HIDDEN),
            (MLP, HIDDEN),
            (HIDDEN, MLP),
        ];
        let mut ms = Vec::new();
        let mut cs = Vec::new();
        for (i, &(r, c)) in shapes.iter().enumerate() {
            let (m, w) = quant(r, c, seed + i as u64);
            if with_candle {
                cs.push(candle_mat(&w, r, c));
            }
            ms.push(m);
        }
        candle_layers.push(cs);
        let mut it = ms.into_iter();
        let mut next = || it.next().unwrap();
        layers.push(Layer {
            q: next(),
            k: next(),
            v: next(),
            o: next(),
            gate: next(),
            up: next(),
            down: next(),
        });
    }
    let (head, head_w) = quant(VOCAB, HIDDEN, 7);
    let candle_head = with_candle.then(|| candle_mat(&head_w, VOCAB, HIDDEN));
    drop(head_w);
    let step_bytes: usize = layers
        .iter()
        .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down])
        .map(|m| m.bytes())
        .sum::<usize>()
        + head.bytes();
    let step_weights =
        LAYERS * (2 * HIDDEN * HIDDEN + 2 * KV * HIDDEN + 3 * MLP * HIDDEN) + VOCAB * HIDDEN;

    for n_vec in [1, 2, 4] {
        let h = values(n_vec * HIDDEN, 3);
        let hm = values(n_vec * MLP, 4);
        let mut q = vec![0f32; n_vec * HIDDEN];
        let mut k = vec![0f32; n_vec * KV];
        let mut v = vec![0f32; n_vec * KV];
        let mut o = vec![0f32; n_vec * HIDDEN];
        let mut g = vec![0f32; n_vec * MLP];
        let mut u = vec![0f32; n_vec * MLP];
        let mut d = vec![0f32; n_vec * HIDDEN];
        let mut logits = vec![0f32; n_vec * VOCAB];
        let s = time(
            || {
                for l in &layers {
                    gemv_many(
                        &[&l.q, &l.k, &l.v],
                        &h,
                        n_vec,
                        &mut [&mut q, &mut k, &mut v],
                    );
                    l.o.gemv(&h, n_vec, &mut o);
                    gemv_many(&[&l.gate, &l.up], &h, n_vec, &mut [&mut g, &mut u]);
                    l.down.gemv(&hm, n_vec, &mut d);
                }
                head.gemv(&h, n_vec, &mut logits);
            },
            10,
            2.0,
        );
        println!(
            "i8 decode step (q/k/v and gate/up grouped), n_vec {n_vec}: {:6.2} ms, {:5.1} GB/s, {:6.1} steps/s ({:6.1} tokens/s)",
            s * 1e3,
            step_bytes as f64 / s / 1e9,
            1.0 / s,
            n_vec as f64 / s
        );
        if n_vec == 1 {
            let s = time(
                || {
                    for l in &layers {
                        l.q.gemv(&h, 1, &mut q);
                        l.k.gemv(&h, 1, &mut k);
                        l.v.gemv(&h, 1, &mut v);
                        l.o.gemv(&h, 1, &mut o);
                        l.gate.gemv(&h, 1, &mut g);
                        l.up.gemv(&h, 1, &mut u);
                        l.down.gemv(&hm, 1, &mut d);
                    }
                    head.gemv(&h, 1, &mut logits);
                },
                10,
                2.0,
            );
            println!(
                "i8 decode step (one gemv per matrix),       n_vec 1: {:6.2} ms, {:5.1} GB/s, {:6.1} tokens/s",
                s * 1e3,
                step_bytes as f64 / s / 1e9,
                1.0 / s
            );
        }
    }
    println!(
        "  ({} weights, {:.1} MB of int8 quants + scales per step)",
        step_weights,
        step_bytes as f64 / 1e6
    );

    if let Some(ch) = &candle_head {
        let h = Tensor::from_vec(values(HIDDEN, 3), (1, HIDDEN), &Device::Cpu).unwrap();
        let hm = Tensor::from_vec(values(MLP, 4), (1, MLP), &Device::Cpu).unwrap();
        let s = time(
            || {
                for cs in &candle_layers {
                    for (i, c) in cs.iter().enumerate() {
                        drop(c.forward(if i == 6 { &hm } else { &h }).unwrap());
                    }
                }
                drop(ch.forward(&h).unwrap());
            },
            5,
            2.0,
        );
        let bytes = step_weights / 32 * 34;
        println!(
            "candle Q8_0 decode step, 1 vec: {:6.2} ms, {:5.1} GB/s, {:6.1} tokens/s",
            s * 1e3,
            bytes as f64 / s / 1e9,
            1.0 / s
        );
    }
}

fn dram() {
    // The whole step's weights (~143 MB) can stay in a large L3; this measures the LM head
    // streamed from DRAM by cycling through copies that together exceed any L3.
    let copies: Vec<I8Matrix> = (0..24).map(|i| quant(VOCAB, HIDDEN, 50 + i).0).collect();
    let x = values(HIDDEN, 1);
    let mut y = vec![0f32; VOCAB];
    let mut i = 0;
    let s = time(
        || {
            copies[i % copies.len()].gemv(&x, 1, &mut y);
            i += 1;
        },
        48,
        1.0,
    );
    println!(
        "i8 gemv {VOCAB}×{HIDDEN} from DRAM ({} MB of copies cycled): {:8.1} µs, {:6.1} GB/s",
        copies.len() * copies[0].bytes() / 1_000_000,
        s * 1e6,
        copies[0].bytes() as f64 / s / 1e9
    );
}
