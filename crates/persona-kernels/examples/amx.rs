//! Times the AMX bf16 matrix product on the shapes of a 135M-parameter model's prompt pass.
use persona_kernels::amx::AmxMatrix;
use std::time::Instant;

fn main() {
    assert!(persona_kernels::cpu::has_amx_bf16(), "this CPU has no AMX");
    for &(m, n, k) in &[
        (2048, 1536, 576),
        (2048, 576, 1536),
        (2048, 576, 576),
        (512, 1536, 576),
        (32, 1536, 576),
    ] {
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let a = AmxMatrix::pack(&w, n, k);
        let mut y = vec![0f32; m * n];
        a.matmul(&x, m, &mut y);
        let reps = 20;
        let t = Instant::now();
        for _ in 0..reps {
            a.matmul(&x, m, &mut y);
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "{m}×{n}×{k}: {:.3} ms, {:.0} GFLOP/s",
            s * 1e3,
            2.0 * (m * n * k) as f64 / s / 1e9
        );
    }
}
