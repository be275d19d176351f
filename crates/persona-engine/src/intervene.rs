//! Interventions prepared for a forward call.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::chunk::ChunkContext;
use crate::error::{EngineError, Result};
use crate::hooks::{
    check_finite_scalar, HookPoint, HookSite, Intervention, InterventionKind, Span,
};

enum Prepared {
    /// `delta` = α·v, `[d]`.
    Add {
        delta: Tensor,
    },
    /// `u` unit `[d, 1]`.
    CapFloor {
        u: Tensor,
        tau: f32,
    },
    CapCeiling {
        u: Tensor,
        tau: f32,
    },
    Ablate {
        u: Tensor,
    },
}

struct PreparedIntervention {
    op: Prepared,
    span: Span,
    sequences: Option<Vec<usize>>,
}

/// Everything the forward pass must do at each hook site, indexed for a cheap per-site check.
pub(crate) struct HookPlan {
    n_points: usize,
    /// `[layer * 5 + point]`: whether any intervention or capture sits there.
    touched: Vec<bool>,
    interventions: HashMap<HookSite, Vec<PreparedIntervention>>,
    last_layer: Option<usize>,
}

fn point_index(p: HookPoint) -> usize {
    HookPoint::ALL
        .iter()
        .position(|&q| q == p)
        .expect("every point is listed")
}

fn check_site(site: HookSite, n_layers: usize) -> Result<()> {
    if site.layer >= n_layers {
        return Err(EngineError::UnknownLayer {
            layer: site.layer,
            n_layers,
        });
    }
    Ok(())
}

fn check_vector(v: &Tensor, d: usize, what: &str) -> Result<Tensor> {
    let n = v.elem_count();
    if n != d {
        return Err(EngineError::VectorDimension {
            what: what.to_string(),
            found: n,
            expected: d,
        });
    }
    Ok(v.flatten_all()?.to_dtype(DType::F32)?)
}

fn unit_column(v: &Tensor, d: usize, what: &str, device: &Device) -> Result<Tensor> {
    let v = check_vector(v, d, what)?.to_device(device)?;
    let norm = v.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    if norm == 0.0 || !norm.is_finite() {
        return Err(EngineError::InvalidRequest(format!(
            "the direction for {what} has norm {norm}; a cap or ablation needs a finite, non-zero vector"
        )));
    }
    Ok((v / norm as f64)?.reshape((d, 1))?)
}

impl HookPlan {
    pub(crate) fn new(
        interventions: &[Intervention],
        capture_sites: &[HookSite],
        n_layers: usize,
        d: usize,
        device: &Device,
    ) -> Result<Self> {
        let n_points = HookPoint::ALL.len();
        let mut touched = vec![false; n_layers * n_points];
        let mut map: HashMap<HookSite, Vec<PreparedIntervention>> = HashMap::new();
        let mut last_layer: Option<usize> = None;
        let mut mark = |site: HookSite, touched: &mut Vec<bool>| -> Result<()> {
            check_site(site, n_layers)?;
            touched[site.layer * n_points + point_index(site.point)] = true;
            last_layer = Some(last_layer.map_or(site.layer, |l| l.max(site.layer)));
            Ok(())
        };
        for &site in capture_sites {
            mark(site, &mut touched)?;
        }
        for iv in interventions {
            mark(iv.site, &mut touched)?;
            let what = format!("the intervention at {}", iv.site);
            let op = match &iv.kind {
                InterventionKind::Add { vector, alpha } => {
                    check_finite_scalar(&format!("the α of {what}"), *alpha)?;
                    let delta =
                        (check_vector(vector, d, &what)?.to_device(device)? * *alpha as f64)?;
                    let values = delta.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
                    if values.iter().any(|x| !x.is_finite()) {
                        return Err(EngineError::InvalidRequest(format!(
                            "α·v for {what} is not finite: the vector holds NaN or infinite values, or α = {alpha} is too large"
                        )));
                    }
                    Prepared::Add { delta }
                }
                InterventionKind::CapFloor { direction, tau } => {
                    check_finite_scalar(&format!("the cap threshold τ of {what}"), *tau)?;
                    Prepared::CapFloor {
                        u: unit_column(direction, d, &what, device)?,
                        tau: *tau,
                    }
                }
                InterventionKind::CapCeiling { direction, tau } => {
                    check_finite_scalar(&format!("the cap threshold τ of {what}"), *tau)?;
                    Prepared::CapCeiling {
                        u: unit_column(direction, d, &what, device)?,
                        tau: *tau,
                    }
                }
                InterventionKind::Ablate { direction } => Prepared::Ablate {
                    u: unit_column(direction, d, &what, device)?,
                },
            };
            map.entry(iv.site).or_default().push(PreparedIntervention {
                op,
                span: iv.span,
                sequences: iv.sequences.clone(),
            });
        }
        Ok(HookPlan {
            n_points,
            touched,
            interventions: map,
            last_layer,
        })
    }

    pub(crate) fn touches(&self, site: HookSite) -> bool {
        self.touched[site.layer * self.n_points + point_index(site.point)]
    }

    /// The deepest layer anything is hooked at: a pass that needs no logits can stop there.
    pub(crate) fn last_needed_layer(&self) -> Option<usize> {
        self.last_layer
    }

    /// Applies the interventions at `site` to `h` `[B, T, d]`, in the order they were given.
    pub(crate) fn apply(
        &self,
        site: HookSite,
        h: Tensor,
        ctx: &mut ChunkContext,
    ) -> Result<Tensor> {
        let Some(list) = self.interventions.get(&site) else {
            return Ok(h);
        };
        let mut h = h;
        for iv in list {
            let Some(mask) = ctx.mask(iv.span, iv.sequences.as_deref())? else {
                continue;
            };
            h = match &iv.op {
                Prepared::Add { delta } => (&h + mask.broadcast_mul(delta)?)?,
                Prepared::CapFloor { u, tau } => {
                    let proj = h.broadcast_matmul(u)?; // [B, T, 1]
                    let push = ((proj.neg()? + *tau as f64)?.relu()? * &mask)?;
                    (&h + push.broadcast_mul(&u.t()?)?)?
                }
                Prepared::CapCeiling { u, tau } => {
                    let proj = h.broadcast_matmul(u)?;
                    let pull = ((proj - *tau as f64)?.relu()? * &mask)?;
                    (&h - pull.broadcast_mul(&u.t()?)?)?
                }
                Prepared::Ablate { u } => {
                    let proj = (h.broadcast_matmul(u)? * &mask)?;
                    (&h - proj.broadcast_mul(&u.t()?)?)?
                }
            };
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Layout;
    use crate::hooks::InterventionKind;

    fn layout(b: usize, t: usize, prompt_len: usize) -> Layout {
        Layout {
            t,
            col0: vec![0; b],
            prompt_len: vec![prompt_len; b],
            seq_len: vec![t; b],
            past: 0,
        }
    }

    fn site() -> HookSite {
        HookSite::resid_post(0)
    }

    fn run(iv: Intervention, h: &[f32], b: usize, t: usize, d: usize, p: usize) -> Vec<f32> {
        let dev = Device::Cpu;
        let plan = HookPlan::new(&[iv], &[], 1, d, &dev).unwrap();
        let l = layout(b, t, p);
        let mut ctx = ChunkContext::new(&l, &dev);
        let h = Tensor::from_slice(h, (b, t, d), &dev).unwrap();
        plan.apply(site(), h, &mut ctx)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    fn iv(kind: InterventionKind, span: Span) -> Intervention {
        Intervention {
            site: site(),
            kind,
            span,
            sequences: None,
        }
    }

    /// Interventions built directly (not through the checked constructors) still cannot
    /// carry a non-finite α or τ, or overflow.
    #[test]
    fn non_finite_numbers_are_refused_when_the_plan_is_made() {
        let v = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let nan_v = Tensor::new(&[1.0f32, f32::NAN], &Device::Cpu).unwrap();
        let cases = [
            (
                InterventionKind::Add {
                    vector: v.clone(),
                    alpha: f32::NAN,
                },
                "the α of",
            ),
            (
                InterventionKind::Add {
                    vector: v.clone(),
                    alpha: f32::INFINITY,
                },
                "inf: give a finite number",
            ),
            (
                InterventionKind::Add {
                    vector: v.clone(),
                    alpha: 3e38,
                },
                "too large",
            ),
            (
                InterventionKind::Add {
                    vector: nan_v.clone(),
                    alpha: 1.0,
                },
                "NaN or infinite",
            ),
            (
                InterventionKind::CapFloor {
                    direction: v.clone(),
                    tau: f32::NAN,
                },
                "cap threshold τ",
            ),
            (
                InterventionKind::CapCeiling {
                    direction: v.clone(),
                    tau: f32::NEG_INFINITY,
                },
                "cap threshold τ",
            ),
            (
                InterventionKind::Ablate { direction: nan_v },
                "finite, non-zero",
            ),
        ];
        for (kind, needle) in cases {
            let e = HookPlan::new(&[iv(kind, Span::All)], &[], 1, 2, &Device::Cpu)
                .err()
                .unwrap_or_else(|| panic!("{needle}: accepted"))
                .to_string();
            assert!(
                e.contains(needle) && e.contains("blocks.0.resid_post"),
                "{e}"
            );
        }
    }

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap()
    }

    #[test]
    fn add_shifts_only_the_selected_positions() {
        // 1 sequence, 3 positions, d = 2, prompt of 2 tokens: only position 2 is generated.
        let h = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let kind = InterventionKind::Add {
            vector: t(&[1.0, -1.0]),
            alpha: 2.0,
        };
        let out = run(iv(kind, Span::Generated), &h, 1, 3, 2, 2);
        assert_eq!(out, vec![1.0, 2.0, 3.0, 4.0, 7.0, 4.0]);
    }

    #[test]
    fn cap_floor_raises_projections_below_tau_only() {
        // u = (0.6, 0.8) (v = (3, 4)); projections: 0.6*1+0.8*1 = 1.4, and 0.6*10 = 6.
        let h = [1.0, 1.0, 10.0, 0.0];
        let kind = InterventionKind::CapFloor {
            direction: t(&[3.0, 4.0]),
            tau: 5.0,
        };
        let out = run(iv(kind, Span::All), &h, 1, 2, 2, 1);
        // First position: pushed by (5 − 1.4)·u = 3.6·(0.6, 0.8).
        assert!((out[0] - (1.0 + 3.6 * 0.6)).abs() < 1e-5);
        assert!((out[1] - (1.0 + 3.6 * 0.8)).abs() < 1e-5);
        let proj = out[0] * 0.6 + out[1] * 0.8;
        assert!((proj - 5.0).abs() < 1e-5);
        // Second position already above the floor: untouched.
        assert_eq!(&out[2..], &[10.0, 0.0]);
    }

    #[test]
    fn cap_ceiling_lowers_projections_above_tau_only() {
        let h = [1.0, 1.0, 10.0, 0.0];
        let kind = InterventionKind::CapCeiling {
            direction: t(&[3.0, 4.0]),
            tau: 5.0,
        };
        let out = run(iv(kind, Span::All), &h, 1, 2, 2, 1);
        assert_eq!(&out[..2], &[1.0, 1.0]);
        let proj = out[2] * 0.6 + out[3] * 0.8;
        assert!((proj - 5.0).abs() < 1e-5, "{proj}");
    }

    #[test]
    fn ablate_removes_the_direction() {
        let h = [2.0, 5.0, -1.0, 3.0];
        let kind = InterventionKind::Ablate {
            direction: t(&[0.0, 2.0]),
        };
        let out = run(iv(kind, Span::All), &h, 1, 2, 2, 1);
        assert_eq!(out, vec![2.0, 0.0, -1.0, 0.0]);
    }

    #[test]
    fn per_sequence_interventions_touch_only_their_rows() {
        let h = [0.0; 8]; // b = 2, t = 2, d = 2
        let mut i = iv(
            InterventionKind::Add {
                vector: t(&[1.0, 1.0]),
                alpha: 1.0,
            },
            Span::LastPrompt,
        );
        i.sequences = Some(vec![1]);
        let out = run(i, &h, 2, 2, 2, 1);
        assert_eq!(out, vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn bad_vectors_are_refused_with_a_reason() {
        let dev = Device::Cpu;
        let wrong = iv(
            InterventionKind::Add {
                vector: t(&[1.0, 2.0, 3.0]),
                alpha: 1.0,
            },
            Span::All,
        );
        let e = HookPlan::new(&[wrong], &[], 1, 2, &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("3 dimensions") && e.contains("2"), "{e}");
        let zero = iv(
            InterventionKind::Ablate {
                direction: t(&[0.0, 0.0]),
            },
            Span::All,
        );
        let e = HookPlan::new(&[zero], &[], 1, 2, &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("non-zero"), "{e}");
        let far = Intervention {
            site: HookSite::resid_post(9),
            ..iv(
                InterventionKind::Add {
                    vector: t(&[1.0, 2.0]),
                    alpha: 1.0,
                },
                Span::All,
            )
        };
        let e = HookPlan::new(&[far], &[], 1, 2, &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("layer 9"), "{e}");
    }
}
