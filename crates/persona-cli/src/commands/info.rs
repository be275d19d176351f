use serde_json::json;

use crate::input::load_engine;
use crate::output::emit;
use crate::Global;

pub fn run(g: &Global) -> anyhow::Result<()> {
    let engine = load_engine(g)?;
    let info = engine.info();
    let c = &info.config;
    let value = json!({
        "path": info.path,
        "format": info.format,
        "config": c,
        "weight_mode": info.weight_mode,
        "weight_bytes": info.weight_bytes,
        "hook_points": ["resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post"],
        "layers": format!("0..{}", c.n_layers),
        "chat_template": info.chat_template,
        "metadata": info.metadata,
    });
    emit(g.format, &value, || {
        println!("model       {}", c.name);
        println!("file        {} ({:?})", info.path.display(), info.format);
        println!("family      {}", c.family.name());
        println!(
            "blocks      {} (layers 0..{}, hook points blocks.L.{{resid_pre, attn_out, resid_mid, mlp_out, resid_post}})",
            c.n_layers, c.n_layers
        );
        println!("d_model     {}", c.d_model);
        println!(
            "heads       {} query / {} key-value, head_dim {}",
            c.n_heads, c.n_kv_heads, c.head_dim
        );
        println!("d_ff        {}", c.d_ff);
        println!("vocab       {}", c.vocab_size);
        println!("context     {}", c.context_length);
        println!("rope        θ = {}, {:?} pairs", c.rope_theta, c.rope_style);
        println!(
            "weights     {:?}, {:.0} MB in memory",
            info.weight_mode,
            info.weight_bytes as f64 / 1e6
        );
        match &info.chat_template {
            Some(t) => println!(
                "template    {} characters (ChatML-style: {})",
                t.len(),
                t.contains("<|im_start|>")
            ),
            None => println!("template    none"),
        }
    })
}
