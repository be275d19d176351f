//! Streaming captures: masked sums and counts on the device, single positions and per-token
//! projections copied out as each chunk passes. Nothing stores whole activations unless asked.

use candle_core::{DType, Device, Tensor};

use crate::chunk::{ChunkContext, Layout};
use crate::error::{EngineError, Result};
use crate::hooks::{CaptureSpec, HookSite, SequenceCaptures, SiteCapture};

pub(crate) struct CaptureState {
    spec: CaptureSpec,
    /// `[site][span]` running sums `[B, d]`.
    sums: Vec<Vec<Option<Tensor>>>,
    /// `[span][row]` token counts.
    counts: Vec<Vec<usize>>,
    /// `[row][site]` host-side parts.
    rows: Vec<Vec<SiteCapture>>,
    /// Unit directions `[d, k]` for projections.
    unit_dirs: Option<Tensor>,
    /// For the chunk in flight: the `[B, 1, T]` mask of each mean span.
    chunk_masks: Vec<Option<Tensor>>,
    /// For the chunk in flight: the column of the last prompt token per row, if inside it.
    chunk_last_prompt: Vec<Option<usize>>,
}

impl CaptureState {
    pub(crate) fn new(spec: &CaptureSpec, batch: usize, d: usize, device: &Device) -> Result<Self> {
        let unit_dirs = match &spec.projections {
            Some(v) => {
                let v = v.to_dtype(DType::F32)?.to_device(device)?;
                let (_, vd) = v.dims2().map_err(|_| {
                    EngineError::InvalidRequest(format!(
                        "projection vectors must be a [k, d] matrix, got shape {:?}",
                        v.dims()
                    ))
                })?;
                if vd != d {
                    return Err(EngineError::VectorDimension {
                        what: "a projection vector".into(),
                        found: vd,
                        expected: d,
                    });
                }
                let norms = v.sqr()?.sum_keepdim(1)?.sqrt()?;
                let min = norms.min_all()?.to_scalar::<f32>()?;
                if min == 0.0 {
                    return Err(EngineError::InvalidRequest(
                        "a projection vector is all zeros; it has no direction".into(),
                    ));
                }
                Some(v.broadcast_div(&norms)?.t()?.contiguous()?)
            }
            None => None,
        };
        let n_sites = spec.sites.len();
        let n_spans = spec.means.len();
        Ok(CaptureState {
            spec: spec.clone(),
            sums: vec![vec![None; n_spans]; n_sites],
            counts: vec![vec![0; batch]; n_spans],
            rows: vec![vec![SiteCapture::default(); n_sites]; batch],
            unit_dirs,
            chunk_masks: Vec::new(),
            chunk_last_prompt: Vec::new(),
        })
    }

    pub(crate) fn begin_chunk(&mut self, layout: &Layout) {
        self.chunk_masks.clear();
        self.chunk_last_prompt = (0..layout.b())
            .map(|r| {
                let p = layout.prompt_len[r];
                (0..layout.t).find(|&c| p > 0 && layout.position(r, c) == Some(p - 1))
            })
            .collect();
    }

    /// Records the state `h` `[B, T, d]` at `site` if it is one of the captured sites.
    pub(crate) fn record(
        &mut self,
        site: HookSite,
        h: &Tensor,
        layout: &Layout,
        ctx: &mut ChunkContext,
    ) -> Result<()> {
        let Some(si) = self.spec.sites.iter().position(|&s| s == site) else {
            return Ok(());
        };
        if self.chunk_masks.is_empty() && !self.spec.means.is_empty() {
            for (k, span) in self.spec.means.clone().into_iter().enumerate() {
                let m = ctx.mask(span, None)?;
                if let Some(m) = &m {
                    let per_row = m.sum(1)?.flatten_all()?.to_vec1::<f32>()?;
                    for (r, n) in per_row.into_iter().enumerate() {
                        self.counts[k][r] += n as usize;
                    }
                }
                self.chunk_masks
                    .push(m.map(|m| m.transpose(1, 2)).transpose()?);
            }
        }
        let (b, t, _) = h.dims3()?;
        for k in 0..self.spec.means.len() {
            if let Some(m) = &self.chunk_masks[k] {
                let sum = m.matmul(h)?.squeeze(1)?; // [B, d]
                let slot = &mut self.sums[si][k];
                *slot = Some(match slot.take() {
                    Some(acc) => (acc + sum)?,
                    None => sum,
                });
            }
        }
        if self.spec.last_prompt {
            for r in 0..b {
                if let Some(c) = self.chunk_last_prompt[r] {
                    self.rows[r][si].last_prompt = Some(h.get(r)?.get(c)?.to_vec1::<f32>()?);
                }
            }
        }
        let per_token = |x: &Tensor| -> Result<Vec<Vec<Vec<f32>>>> { Ok(x.to_vec3::<f32>()?) };
        if let Some(u) = &self.unit_dirs {
            let proj = per_token(&h.broadcast_matmul(u)?)?; // [B, T, k]
            self.push_tokens(si, layout, t, proj, |c| &mut c.projections);
        }
        if self.spec.full {
            let full = per_token(h)?;
            self.push_tokens(si, layout, t, full, |c| &mut c.full);
        }
        Ok(())
    }

    fn push_tokens(
        &mut self,
        si: usize,
        layout: &Layout,
        t: usize,
        values: Vec<Vec<Vec<f32>>>,
        field: impl Fn(&mut SiteCapture) -> &mut Vec<Vec<f32>>,
    ) {
        for (r, row) in values.into_iter().enumerate() {
            for (c, v) in row.into_iter().enumerate().take(t) {
                if layout.position(r, c).is_some() {
                    field(&mut self.rows[r][si]).push(v);
                }
            }
        }
    }

    pub(crate) fn end_chunk(&mut self) -> Result<()> {
        self.chunk_masks.clear();
        Ok(())
    }

    /// Turns the running sums into means and returns one record per sequence.
    pub(crate) fn finish(mut self) -> Result<Vec<SequenceCaptures>> {
        let n_spans = self.spec.means.len();
        for (si, spans) in self.sums.iter().enumerate() {
            for (k, sum) in spans.iter().enumerate() {
                let host = match sum {
                    Some(s) => Some(s.to_vec2::<f32>()?),
                    None => None,
                };
                for (r, row) in self.rows.iter_mut().enumerate() {
                    let cap = &mut row[si];
                    if cap.means.len() < n_spans {
                        cap.means.resize(n_spans, None);
                        cap.counts.resize(n_spans, 0);
                    }
                    let n = self.counts[k][r];
                    cap.counts[k] = n;
                    cap.means[k] = match (&host, n) {
                        (Some(h), n) if n > 0 => Some(h[r].iter().map(|x| x / n as f32).collect()),
                        _ => None,
                    };
                }
            }
        }
        let sites = self.spec.sites.clone();
        Ok(self
            .rows
            .into_iter()
            .map(|row| SequenceCaptures {
                sites: sites.iter().copied().zip(row).collect(),
            })
            .collect())
    }
}
