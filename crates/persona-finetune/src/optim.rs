//! AdamW on the LoRA factors, with its state as data: the step count and both moments are
//! saved with every checkpoint, so a resumed run takes exactly the steps the uninterrupted run
//! would have taken (a fresh optimizer would restart the bias correction and forget the
//! moments).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};

use crate::FinetuneError;
use persona_core::fs::write_atomic;

/// AdamW as in Loshchilov & Hutter (and candle-nn, PyTorch): decoupled weight decay, bias
/// corrected moments.
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Steps taken so far.
    pub step: u64,
    /// First and second moments, one pair per variable, in the order of the variables.
    moments: Vec<(Vec<f32>, Vec<f32>)>,
}

impl AdamW {
    /// Zero moments for `vars`, PyTorch's default betas and ε.
    pub fn new(vars: &[Var], lr: f64, weight_decay: f64) -> AdamW {
        AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            moments: vars
                .iter()
                .map(|v| (vec![0.0; v.elem_count()], vec![0.0; v.elem_count()]))
                .collect(),
        }
    }

    /// One update of every variable from its gradient (`grads[i]` for `vars[i]`).
    pub fn update(&mut self, vars: &[Var], grads: &[Tensor]) -> Result<(), FinetuneError> {
        if vars.len() != self.moments.len() || grads.len() != vars.len() {
            return Err(FinetuneError::Input(format!(
                "AdamW holds {} variables but was given {} variables and {} gradients",
                self.moments.len(),
                vars.len(),
                grads.len()
            )));
        }
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let correct1 = 1.0 - b1.powi(self.step as i32);
        let correct2 = 1.0 - b2.powi(self.step as i32);
        let decay = 1.0 - self.lr * self.weight_decay;
        for ((var, grad), (m, v)) in vars.iter().zip(grads).zip(&mut self.moments) {
            let g = grad.flatten_all()?.to_vec1::<f32>()?;
            let mut theta = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            for i in 0..theta.len() {
                let gi = g[i] as f64;
                let mi = b1 * m[i] as f64 + (1.0 - b1) * gi;
                let vi = b2 * v[i] as f64 + (1.0 - b2) * gi * gi;
                m[i] = mi as f32;
                v[i] = vi as f32;
                let step = (mi / correct1) / ((vi / correct2).sqrt() + self.eps);
                theta[i] = (theta[i] as f64 * decay - self.lr * step) as f32;
            }
            var.set(&Tensor::from_vec(theta, var.shape(), var.device())?)?;
        }
        Ok(())
    }

    /// Writes the moments to `path` (safetensors: `NAME.m`, `NAME.v` for each variable's
    /// name in `names`, in the order of the variables). The step count goes with the caller's
    /// checkpoint state.
    pub fn save(&self, path: &Path, names: &[String]) -> Result<(), FinetuneError> {
        let mut tensors = Vec::with_capacity(2 * names.len());
        for (name, (m, v)) in names.iter().zip(&self.moments) {
            let cpu = &Device::Cpu;
            tensors.push((format!("{name}.m"), Tensor::from_slice(m, m.len(), cpu)?));
            tensors.push((format!("{name}.v"), Tensor::from_slice(v, v.len(), cpu)?));
        }
        let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n, t)), None)
            .map_err(|e| FinetuneError::Input(format!("cannot encode the optimizer state: {e}")))?;
        write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Reads moments written by [`Self::save`] for the same variables, and sets the step count.
    pub fn load(&mut self, path: &Path, names: &[String], step: u64) -> Result<(), FinetuneError> {
        let unreadable = |why: String| {
            FinetuneError::Input(format!(
                "cannot resume from {}: {why}; delete the checkpoint folder to start over",
                path.display()
            ))
        };
        let mut saved: HashMap<String, Tensor> = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| unreadable(e.to_string()))?;
        for (name, (m, v)) in names.iter().zip(&mut self.moments) {
            for (suffix, dst) in [("m", m), ("v", v)] {
                let key = format!("{name}.{suffix}");
                let t = saved
                    .remove(&key)
                    .ok_or_else(|| unreadable(format!("it has no `{key}`")))?;
                let values = t.flatten_all()?.to_vec1::<f32>()?;
                if values.len() != dst.len() {
                    return Err(unreadable(format!(
                        "`{key}` has {} values, the adapter needs {}",
                        values.len(),
                        dst.len()
                    )));
                }
                *dst = values;
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps by hand: the bias-corrected first step moves each weight by lr·sign(g).
    #[test]
    fn first_step_moves_by_the_learning_rate() {
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut opt = AdamW::new(std::slice::from_ref(&var), 0.1, 0.0);
        let g = Tensor::new(&[0.5f32, -3.0], &Device::Cpu).unwrap();
        opt.update(std::slice::from_ref(&var), std::slice::from_ref(&g))
            .unwrap();
        let after = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (after[0] - 0.9).abs() < 1e-6 && (after[1] + 1.9).abs() < 1e-6,
            "{after:?}"
        );
    }

    #[test]
    fn saved_moments_restore_the_same_next_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        let cpu = &Device::Cpu;
        let start = Tensor::new(&[0.3f32, 0.7, -1.1], cpu).unwrap();
        let grads = [
            Tensor::new(&[0.2f32, -0.1, 0.4], cpu).unwrap(),
            Tensor::new(&[-0.3f32, 0.5, 0.1], cpu).unwrap(),
        ];
        let names = vec!["w".to_string()];
        // Uninterrupted: two steps.
        let a = Var::from_tensor(&start).unwrap();
        let mut opt = AdamW::new(std::slice::from_ref(&a), 0.01, 0.1);
        for g in &grads {
            opt.update(std::slice::from_ref(&a), std::slice::from_ref(g))
                .unwrap();
        }
        // Interrupted after one step, resumed from the saved state.
        let b = Var::from_tensor(&start).unwrap();
        let mut first = AdamW::new(std::slice::from_ref(&b), 0.01, 0.1);
        first
            .update(std::slice::from_ref(&b), std::slice::from_ref(&grads[0]))
            .unwrap();
        first.save(&path, &names).unwrap();
        let mut resumed = AdamW::new(std::slice::from_ref(&b), 0.01, 0.1);
        resumed.load(&path, &names, first.step).unwrap();
        resumed
            .update(std::slice::from_ref(&b), std::slice::from_ref(&grads[1]))
            .unwrap();
        assert_eq!(
            a.as_tensor().to_vec1::<f32>().unwrap(),
            b.as_tensor().to_vec1::<f32>().unwrap()
        );
        let wrong = vec!["other".to_string()];
        let err = resumed.load(&path, &wrong, 1).unwrap_err().to_string();
        assert!(err.contains("no `other.m`"), "{err}");
    }
}
