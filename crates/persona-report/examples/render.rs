//! Renders one of each plot and a report into a folder (default
//! `/tmp/persona-report-examples`), for looking at the output by eye:
//! `cargo run --release -p persona-report --example render [DIR]`.

use persona_core::fs::write_atomic;
use persona_report::html::Report;
use persona_report::svg::{BarChart, Chart, Histogram, Point, Series, SeriesKind};
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "/tmp/persona-report-examples".into()),
    );
    std::fs::create_dir_all(&dir)?;

    // A steering sweep: trait score and coherence against the coefficient, with error bars.
    let coefs = [-2.0, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5];
    let trait_pts = coefs
        .iter()
        .map(|&c: &f64| {
            let y = 100.0 / (1.0 + (-(c - 0.8) * 2.2f64).exp());
            Point::new(c, y).with_err((y - 6.0).max(0.0), (y + 6.0).min(100.0))
        })
        .collect();
    let coherence = coefs
        .iter()
        .map(|&c| (c, 95.0 - 4.0 * (c + 2.0).powi(2) / 2.0));
    let sweep = Chart::new(
        "Steering sweep: evil at layer 20 (SmolLM2-135M)",
        "steering coefficient α",
        "judge score (0–100)",
    )
    .with_series(Series::new(
        "evil score",
        SeriesKind::LineMarkers,
        trait_pts,
    ))
    .with_series(Series::line_markers("coherence", coherence))
    .with_y_range(0.0, 100.0)
    .with_hline(80.0, "coherence 80");

    // A labelled scatter with a fitted line: roles on PC1 × PC2.
    let roles = [
        "assistant",
        "pirate",
        "poet",
        "lawyer",
        "villain",
        "teacher",
        "demon",
        "nurse",
        "comedian",
        "oracle",
        "robot",
        "hermit",
    ];
    let scatter_pts = roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let x = i as f64 * 0.8 - 4.0;
            Point::new(x, 0.6 * x + ((i * 5) % 7) as f64 * 0.5 - 1.5).with_label(*r)
        })
        .collect();
    let scatter = Chart::new("Roles on PC1 × PC2", "PC1", "PC2")
        .with_series(Series::new("roles", SeriesKind::Markers, scatter_pts))
        .with_fit_line(true);

    // Projections proj(h, v) = h·v/‖v‖ of many responses.
    let values: Vec<f64> = (0..2000)
        .map(|i| {
            let u = ((i * 7919) % 1000) as f64 / 1000.0;
            let w = ((i * 104_729) % 997) as f64 / 997.0;
            (u + w - 1.0) * 6.0 + if i % 3 == 0 { 4.0 } else { 0.0 }
        })
        .collect();
    let hist = Histogram::new(
        "Projection of responses onto the evil vector (layer 20)",
        "proj(h, v) = h·v/‖v‖",
        values,
        30,
    );

    // 220 roles sorted by projection on the Assistant axis.
    let mut bars: Vec<(String, f64)> = (0..220)
        .map(|i| {
            (
                format!("role_{i:03} {}", roles[i % roles.len()]),
                ((i * 37) % 220) as f64 / 20.0 - 4.0,
            )
        })
        .collect();
    bars.sort_by(|a, b| b.1.total_cmp(&a.1));
    let hbars = BarChart::new(
        "Roles by projection on the Assistant axis",
        "projection h·v/‖v‖",
        bars.clone(),
        true,
    );
    let vbars = BarChart::new(
        "Mean difference norm by layer",
        "‖mean diff‖",
        (0..12)
            .map(|l| (format!("layer {l}"), (l as f64 * 0.7).sin() * 3.0 + 1.0))
            .collect(),
        false,
    );

    let files = [
        ("sweep.svg", sweep.to_svg()),
        ("scatter.svg", scatter.to_svg()),
        ("histogram.svg", hist.to_svg()),
        ("bars_horizontal.svg", hbars.to_svg()),
        ("bars_vertical.svg", vbars.to_svg()),
    ];
    for (name, svg) in &files {
        write_atomic(dir.join(name), svg.as_bytes())?;
    }

    let mut report = Report::new("persona steer evil — sweep report");
    report
        .paragraph("A steering sweep over the coefficient α at layer 20 (blocks.20.resid_post).")
        .code("persona steer evil --layer 20 --coef -2,-1,0,0.5,1,1.5,2,2.5 --seed 42")
        .key_values(&[
            ("model", "smollm2-135m (sha256 1f2e…)"),
            ("seed", "42"),
            ("hook point", "blocks.20.resid_post"),
        ])
        .heading(2, "Scores")
        .figure(
            &sweep.to_svg(),
            "Mean evil score and coherence per coefficient; bars: ±1 s.e.",
        )
        .table(
            &["α", "evil score", "coherence", "example answer"],
            coefs
                .iter()
                .map(|c| {
                    vec![
                        format!("{c}"),
                        format!("{:.1}", 100.0 / (1.0 + (-(c - 0.8) * 2.2f64).exp())),
                        format!("{:.1}", 95.0 - 4.0 * (c + 2.0).powi(2) / 2.0),
                        "I <would> never & \"could\" not…".into(),
                    ]
                })
                .collect(),
        )
        .heading(2, "Geometry")
        .svg(&scatter.to_svg())
        .svg(&hist.to_svg())
        .svg(&vbars.to_svg())
        .heading(2, "Roles")
        .svg(&hbars.to_svg());
    let short = BarChart::new("Top roles", "projection", bars[..20].to_vec(), true);
    write_atomic(
        dir.join("bars_horizontal_top20.svg"),
        short.to_svg().as_bytes(),
    )?;
    report.write(dir.join("report.html"))?;
    println!("wrote {} files to {}", files.len() + 1, dir.display());
    Ok(())
}
