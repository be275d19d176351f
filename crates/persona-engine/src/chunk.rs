//! One chunk of a batched forward pass: where each row sits in its own sequence, and the
//! position masks that the interventions and the captures at its hook sites share. Below all
//! three (model, interventions, captures), so that each of them imports it and none the others.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::hooks::Span;

/// Where every row of a chunk sits in its own sequence.
///
/// Column `c` of row `r` holds position `col0[r] + c`; a negative position is left padding and a
/// position at or past `seq_len[r]` is right padding. Neither is ever captured or intervened on.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub t: usize,
    pub col0: Vec<i64>,
    pub prompt_len: Vec<usize>,
    pub seq_len: Vec<usize>,
    /// Key columns already in the KV cache before this chunk.
    pub past: usize,
}

impl Layout {
    pub fn b(&self) -> usize {
        self.col0.len()
    }

    pub fn position(&self, row: usize, col: usize) -> Option<usize> {
        let p = self.col0[row] + col as i64;
        (p >= 0 && (p as usize) < self.seq_len[row]).then_some(p as usize)
    }

    pub fn has_left_padding(&self) -> bool {
        // Left padding is anything before position 0 in the cache or the chunk.
        self.col0.iter().any(|&c| c - (self.past as i64) < 0)
    }
}

/// A mask's identity: its span and the batch rows it is limited to.
type MaskKey = (Span, Option<Vec<usize>>);

/// Per-chunk state: the layout and a cache of `[B, T, 1]` 0/1 masks by (span, rows).
pub(crate) struct ChunkContext {
    pub layout: Layout,
    device: Device,
    masks: Vec<(MaskKey, Option<Tensor>)>,
}

impl ChunkContext {
    /// The context of a chunk laid out as `layout`, with no mask made yet.
    pub(crate) fn new(layout: &Layout, device: &Device) -> Self {
        ChunkContext {
            layout: layout.clone(),
            device: device.clone(),
            masks: Vec::new(),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_padding_is_never_selected() {
        let l = Layout {
            t: 3,
            col0: vec![-2, 0],
            prompt_len: vec![1, 3],
            seq_len: vec![1, 3],
            past: 0,
        };
        let mut ctx = ChunkContext::new(&l, &Device::Cpu);
        let m = ctx.mask(Span::All, None).unwrap().unwrap();
        let m: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(m, vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    }
}
