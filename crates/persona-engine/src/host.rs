//! Zero-copy access to a CPU tensor's data, the way persona-kernels' hand-written kernels take
//! their inputs. Its own module so that the weights and the model, which both call kernels,
//! share it without importing each other.

use candle_core::{Storage, Tensor};

use crate::error::{EngineError, Result};

/// Runs `f` on the f32 data of a contiguous CPU tensor without copying it.
pub(crate) fn with_host_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
        EngineError::InvalidRequest("internal: a kernel input is not contiguous".into())
    })?;
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(&cpu.as_slice::<f32>()?[start..end])),
        _ => Err(EngineError::InvalidRequest(
            "internal: a CPU kernel was given a tensor on another device".into(),
        )),
    }
}
