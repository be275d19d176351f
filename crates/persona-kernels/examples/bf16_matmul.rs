//! Times the bf16 matrix product of every kernel this CPU has, beside candle's f32 matmul, on
//! the shapes of a prompt pass (135M and 0.5B models): `cargo run --release --example
//! bf16_matmul -p persona-kernels`.
use candle_core::{Device, Tensor};
use persona_kernels::bf16_matmul::{Bf16Kernel, Bf16Matrix};
use std::time::Instant;

fn gflops(m: usize, n: usize, k: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    2.0 * (m * n * k) as f64 / s / 1e9
}

fn main() -> candle_core::Result<()> {
    let kernels = Bf16Kernel::available();
    println!("threads: {}", persona_kernels::parallel::threads());
    for &(m, n, k) in &[
        (2048, 1536, 576),
        (2048, 576, 1536),
        (1200, 4864, 896),
        (1200, 896, 4864),
        (1200, 896, 896),
        (32, 1536, 576),
        (128, 1536, 576),
        (32, 4864, 896),
    ] {
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let reps = 5;
        let mut line = format!("{m}×{n}×{k}:");
        let (xt, wt) = (
            Tensor::from_slice(&x, (m, k), &Device::Cpu)?,
            Tensor::from_slice(&w, (n, k), &Device::Cpu)?,
        );
        let f32_rate = gflops(m, n, k, reps, || {
            xt.matmul(&wt.t().unwrap()).unwrap();
        });
        line += &format!(" f32 matmul {f32_rate:.0} GFLOP/s");
        let a = Bf16Matrix::pack(&w, n, k);
        let mut y = vec![0f32; m * n];
        for &kernel in &kernels {
            let rate = gflops(m, n, k, reps, || a.matmul(kernel, &x, m, &mut y));
            line += &format!(", {kernel:?} {rate:.0} GFLOP/s ({:.2}×)", rate / f32_rate);
        }
        println!("{line}");
    }
    Ok(())
}
