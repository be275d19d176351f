//! Capping along the Assistant axis: the cap itself ([`AxisCap`], kept below the answer
//! pipelines that apply it) and its evaluation ([`eval`]: jailbreaks, drift and capability with
//! and without the cap).

pub mod eval;

pub use crate::axis_cap::{axis_thresholds, default_window, parse_window, AxisCap};
