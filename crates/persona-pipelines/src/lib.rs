//! persona's pipelines over the engine. Each one turns plain inputs (conversations, specs)
//! into result files through `Engine::forward_batch` / `Engine::generate`.

pub mod extract;
pub mod rollouts;
