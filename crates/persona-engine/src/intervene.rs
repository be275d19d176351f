//! Interventions prepared for a forward call, and the per-chunk position masks they share with
//! the captures.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};
use crate::hooks::{HookPoint, HookSite, Intervention, InterventionKind, Span};
use crate::model::Layout;

enum Prepared {
    /// `delta` = α·v, `[d]`.
    Add { delta: Tensor },
    /// `u` unit `[d, 1]`.
    CapFloor { u: Tensor, tau: f32 },
    CapCeiling { u: Tensor, tau: f32 },
    Ablate { u: Tensor },
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
    HookPoint::ALL.iter().position(|&q| q == p).expect("every point is listed")
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
            "the direction for {what} has norm {norm}; a cap or ablation needs a non-zero vector"
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
                InterventionKind::Add { vector, alpha } => Prepared::Add {
                    delta: (check_vector(vector, d, &what)?.to_device(device)? * *alpha as f64)?,
                },
                InterventionKind::CapFloor { direction, tau } => Prepared::CapFloor {
                    u: unit_column(direction, d, &what, device)?,
                    tau: *tau,
                },
                InterventionKind::CapCeiling { direction, tau } => Prepared::CapCeiling {
                    u: unit_column(direction, d, &what, device)?,
                    tau: *tau,
                },
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

    pub(crate) fn chunk_context(&self, layout: &Layout, device: &Device) -> Result<ChunkContext> {
        Ok(ChunkContext {
            layout: layout.clone(),
            device: device.clone(),
            masks: Vec::new(),
        })
    }

    /// Applies the interventions at `site` to `h` `[B, T, d]`, in the order they were given.
    pub(crate) fn apply(&self, site: HookSite, h: Tensor, ctx: &mut ChunkContext) -> Result<Tensor> {
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

/// Per-chunk state: the layout and a cache of `[B, T, 1]` 0/1 masks by (span, rows).
pub(crate) struct ChunkContext {
    pub layout: Layout,
    device: Device,
    masks: Vec<((Span, Option<Vec<usize>>), Option<Tensor>)>,
}

impl ChunkContext {
    /// The 0/1 mask of positions in `span` (and rows in `rows`), or `None` if it selects nothing.
    pub(crate) fn mask(&mut self, span: Span, rows: Option<&[usize]>) -> Result<Option<Tensor>> {
        let key = (span, rows.map(|r| r.to_vec()));
        if let Some((_, m)) = self.masks.iter().find(|(k, _)| *k == key) {
            return Ok(m.clone());
        }
        let l = &self.layout;
        let (b, t) = (l.b(), l.t);
        let mut data = vec![0f32; b * t];
        let mut any = false;
        for r in 0..b {
            if rows.is_some_and(|rs| !rs.contains(&r)) {
                continue;
            }
            for c in 0..t {
                if let Some(p) = l.position(r, c) {
                    if span.contains(p, l.prompt_len[r]) {
                        data[r * t + c] = 1.0;
                        any = true;
                    }
                }
            }
        }
        let m = if any {
            Some(Tensor::from_vec(data, (b, t, 1), &self.device)?)
        } else {
            None
        };
        self.masks.push((key, m.clone()));
        Ok(m)
    }
}
