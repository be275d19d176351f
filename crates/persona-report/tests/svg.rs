//! Checks on the rendered SVG itself: it parses as XML, data land where they should, and the
//! numbers the plots print (ticks, r, counts) are right.

use persona_report::svg::{
    least_squares, nice_ticks, BarChart, Chart, Histogram, Point, Series, SeriesKind,
};

/// Parses `svg` as XML (panicking with the document on error) and hands the tree to `f`.
fn with_doc<R>(svg: &str, f: impl FnOnce(&roxmltree::Document) -> R) -> R {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let vb: Vec<f64> = root
        .attribute("viewBox")
        .expect("viewBox")
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(vb.len(), 4);
    assert!(vb[2] > 0.0 && vb[3] > 0.0);
    f(&doc)
}

fn num(node: roxmltree::Node, attr: &str) -> f64 {
    node.attribute(attr)
        .unwrap_or_else(|| panic!("no {attr} on {node:?}"))
        .parse()
        .unwrap()
}

fn by_class<'a, 'i>(doc: &'a roxmltree::Document<'i>, class: &str) -> Vec<roxmltree::Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.split(' ').any(|c| c == class))
        })
        .collect()
}

fn texts(doc: &roxmltree::Document, class: &str) -> Vec<String> {
    by_class(doc, class)
        .iter()
        .map(|n| n.text().unwrap_or("").to_string())
        .collect()
}

#[test]
fn nice_ticks_are_round() {
    assert_eq!(
        nice_ticks(0.0, 97.0, 5),
        vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    );
    assert_eq!(nice_ticks(-0.27, 0.41, 6), {
        let v: Vec<f64> = (-3..=5).map(|i| i as f64 * 0.1).collect();
        v.iter()
            .map(|x| if x.abs() < 1e-12 { 0.0 } else { *x })
            .collect::<Vec<_>>()
    });
    let t = nice_ticks(95.0, 97.3, 5);
    assert_eq!(t.first(), Some(&95.0));
    assert_eq!(t.last(), Some(&97.5));
    assert!(nice_ticks(f64::NAN, 1.0, 5).is_empty());
    assert_eq!(nice_ticks(3.0, 3.0, 5), vec![3.0]);
}

#[test]
fn chart_axes_show_nice_tick_labels() {
    let c = Chart::new("t", "x", "y").with_series(Series::markers("a", [(0.0, 0.0), (97.0, 3.0)]));
    with_doc(&c.to_svg(), |doc| {
        assert_eq!(texts(doc, "x-tick"), ["0", "20", "40", "60", "80", "100"]);
        assert_eq!(
            texts(doc, "y-tick"),
            ["0", "0.5", "1.0", "1.5", "2.0", "2.5", "3.0"]
        );
        assert_eq!(texts(doc, "x-label"), ["x"]);
        assert_eq!(texts(doc, "y-label"), ["y"]);
        assert_eq!(texts(doc, "title"), ["t"]);
    });
}

#[test]
fn points_map_onto_the_axes() {
    // Range fixed: the corners of the range are the corners of the plot area.
    let c = Chart::new("map", "x", "y")
        .with_x_range(-2.0, 8.0)
        .with_y_range(10.0, 20.0)
        .with_series(Series::markers(
            "p",
            [(-2.0, 10.0), (8.0, 20.0), (3.0, 15.0)],
        ));
    with_doc(&c.to_svg(), |doc| {
        let y_axis = by_class(doc, "y-axis")[0];
        let x_axis = by_class(doc, "x-axis")[0];
        let (left, right) = (num(x_axis, "x1"), num(x_axis, "x2"));
        let (top, bottom) = (num(y_axis, "y1"), num(y_axis, "y2"));
        assert_eq!(num(y_axis, "x1"), left);
        assert_eq!(num(x_axis, "y1"), bottom);
        let m: Vec<(f64, f64)> = by_class(doc, "marker")
            .iter()
            .map(|n| (num(*n, "cx"), num(*n, "cy")))
            .collect();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], (left, bottom), "minimum lands on the axes' corner");
        assert_eq!(m[1], (right, top));
        assert!((m[2].0 - (left + right) / 2.0).abs() < 0.011);
        assert!((m[2].1 - (top + bottom) / 2.0).abs() < 0.011);
    });
    // Range from the data: the minimum is a round number, so it sits on the left axis too.
    let c = Chart::new("", "", "").with_series(Series::markers("p", [(0.0, 1.0), (50.0, 2.0)]));
    with_doc(&c.to_svg(), |doc| {
        let left = num(by_class(doc, "y-axis")[0], "x1");
        assert_eq!(num(by_class(doc, "marker")[0], "cx"), left);
    });
}

#[test]
fn points_outside_a_fixed_range_are_clipped() {
    let c = Chart::new("clip", "x", "y")
        .with_x_range(0.0, 1.0)
        .with_y_range(0.0, 1.0)
        .with_series(Series::line_markers(
            "l",
            [(0.5, 0.5), (2.0, 0.5), (0.5, 0.75)],
        ));
    with_doc(&c.to_svg(), |doc| {
        let right = num(by_class(doc, "x-axis")[0], "x2");
        assert_eq!(by_class(doc, "marker").len(), 2);
        let d = by_class(doc, "line")[0].attribute("d").unwrap().to_string();
        for coord in d.split(['M', 'L']).filter(|s| !s.is_empty()) {
            let x: f64 = coord.split(' ').next().unwrap().parse().unwrap();
            assert!(x <= right + 0.01, "{d}");
        }
    });
}

#[test]
fn fit_line_reports_pearson_r_and_lies_on_the_fit() {
    let pts: Vec<(f64, f64)> = (0..40)
        .map(|i| {
            let x = i as f64 * 0.37 - 3.0;
            (x, 2.0 * x + ((i * 7919) % 13) as f64 * 0.6 - 4.0)
        })
        .collect();
    // Pearson r by the textbook formula, independently of the crate.
    let nf = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
    let (mx, my) = (sx / nf, sy / nf);
    let cov: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let vx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let vy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    let r = cov / (vx * vy).sqrt();
    assert!(r > 0.5 && r < 0.99, "{r}");

    let c = Chart::new("fit", "projection", "score")
        .with_series(Series::markers("samples", pts.clone()))
        .with_fit_line(true);
    let svg = c.to_svg();
    with_doc(&svg, |doc| {
        let legend = texts(doc, "legend-label");
        let fit_text = legend
            .iter()
            .find(|t| t.contains("r = "))
            .expect("r in legend");
        let shown: f64 = fit_text.split("r = ").nth(1).unwrap().parse().unwrap();
        assert_eq!(shown, (r * 1000.0).round() / 1000.0, "{fit_text}");
        let fit = by_class(doc, "fit")[0];
        assert!((num(fit, "data-r") - r).abs() < 1e-12);
        // The drawn endpoints, mapped back to data, lie on y = a + b·x.
        let x_axis = by_class(doc, "x-axis")[0];
        let y_axis = by_class(doc, "y-axis")[0];
        let ticks = texts(doc, "x-tick");
        let yt = texts(doc, "y-tick");
        let (x0, x1): (f64, f64) = (
            ticks[0].parse().unwrap(),
            ticks.last().unwrap().parse().unwrap(),
        );
        let (y0, y1): (f64, f64) = (yt[0].parse().unwrap(), yt.last().unwrap().parse().unwrap());
        let to_x = |px: f64| {
            x0 + (px - num(x_axis, "x1")) / (num(x_axis, "x2") - num(x_axis, "x1")) * (x1 - x0)
        };
        let to_y = |py: f64| {
            y0 + (num(y_axis, "y2") - py) / (num(y_axis, "y2") - num(y_axis, "y1")) * (y1 - y0)
        };
        let b = cov / vx;
        let a = my - b * mx;
        for (xa, ya) in [("x1", "y1"), ("x2", "y2")] {
            let (x, y) = (to_x(num(fit, xa)), to_y(num(fit, ya)));
            assert!((y - (a + b * x)).abs() < 0.05, "({x}, {y}) off the fit");
        }
    });
    let f = least_squares(&c.series[0].points).unwrap();
    assert!((f.r - r).abs() < 1e-12 && (f.slope - cov / vx).abs() < 1e-12);
    assert_eq!(f.n, 40);
}

#[test]
fn least_squares_edge_cases() {
    assert!(least_squares(&[]).is_none());
    assert!(least_squares(&[Point::new(1.0, 2.0)]).is_none());
    assert!(least_squares(&[Point::new(1.0, 2.0), Point::new(1.0, 3.0)]).is_none());
    let flat = least_squares(&[Point::new(0.0, 2.0), Point::new(1.0, 2.0)]).unwrap();
    assert_eq!(flat.slope, 0.0);
    assert!(flat.r.is_nan());
    let f = least_squares(&[
        Point::new(0.0, 1.0),
        Point::new(f64::NAN, 5.0),
        Point::new(1.0, 3.0),
    ])
    .unwrap();
    assert_eq!((f.slope, f.intercept, f.n), (2.0, 1.0, 2));
    assert!((f.r - 1.0).abs() < 1e-12);
}

#[test]
fn text_is_escaped() {
    let nasty = r#"<b>"Tom" & 'Jerry'</b>"#;
    let c = Chart::new(nasty, nasty, nasty)
        .with_series(Series::new(
            nasty,
            SeriesKind::Markers,
            vec![Point::new(1.0, 1.0).with_label(nasty)],
        ))
        .with_series(Series::line("second\u{1}", [(0.0, 0.0), (1.0, 2.0)]))
        .with_hline(0.5, nasty);
    let h = Histogram::new(nasty, nasty, vec![1.0, 2.0], 2);
    let b = BarChart::new(nasty, nasty, vec![(nasty.to_string(), 1.0)], true);
    let v = BarChart::new(nasty, nasty, vec![(nasty.to_string(), -1.0)], false);
    for svg in [c.to_svg(), h.to_svg(), b.to_svg(), v.to_svg()] {
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;"));
        with_doc(&svg, |doc| {
            // After parsing, the text reads as it was given.
            assert!(doc.descendants().any(|n| n.text() == Some(nasty)));
        });
    }
}

#[test]
fn legend_only_when_needed() {
    let one = Chart::new("one", "x", "y").with_series(Series::line("a", [(0.0, 1.0), (1.0, 2.0)]));
    let two = one
        .clone()
        .with_series(Series::line("b", [(0.0, 2.0), (1.0, 1.0)]));
    with_doc(&one.to_svg(), |doc| {
        assert!(by_class(doc, "legend").is_empty())
    });
    with_doc(&two.to_svg(), |doc| {
        assert_eq!(texts(doc, "legend-label"), ["a", "b"])
    });
}

#[test]
fn degenerate_inputs_render() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let charts = vec![
        Chart::default(),
        Chart::new("empty series", "x", "y").with_series(Series::line("e", [])),
        Chart::new("one point", "x", "y").with_series(Series::markers("p", [(3.0, 4.0)])),
        Chart::new("all equal", "x", "y")
            .with_series(Series::line_markers(
                "p",
                [(1.0, 0.0), (1.0, 0.0), (1.0, 0.0)],
            ))
            .with_fit_line(true),
        Chart::new("non-finite", "x", "y")
            .with_series(Series::line_markers(
                "p",
                [(0.0, 1.0), (nan, 1.0), (1.0, inf), (2.0, 3.0), (3.0, -inf)],
            ))
            .with_series(Series::new(
                "err",
                SeriesKind::Markers,
                vec![
                    Point::new(1.0, 1.0).with_err(nan, 2.0),
                    Point::new(2.0, 2.0).with_err(3.0, 1.0),
                ],
            ))
            .with_hline(nan, "nan line")
            .with_hline(1e300, "far"),
        Chart::new("bad ranges", "x", "y")
            .with_x_range(nan, 1.0)
            .with_y_range(5.0, 5.0)
            .with_series(Series::markers("p", [(0.0, 5.0)])),
        Chart::new("reversed", "x", "y")
            .with_x_range(10.0, 0.0)
            .with_series(Series::markers("p", [(1.0, 1.0)])),
        Chart::new("huge", "x", "y")
            .with_series(Series::markers("p", [(-1e308, 1e-300), (1e308, 2e-300)])),
    ];
    for c in &charts {
        let svg = c.to_svg();
        with_doc(&svg, |doc| {
            for node in doc.descendants().filter(|n| n.is_element()) {
                for a in node.attributes() {
                    assert!(
                        !a.value().contains("NaN") && !a.value().contains("inf"),
                        "{}: {}={} in {}",
                        c.title,
                        a.name(),
                        a.value(),
                        svg
                    );
                }
            }
        });
    }
    // Non-finite points are skipped, and the plot says so.
    let svg = charts[4].to_svg();
    with_doc(&svg, |doc| {
        let series0: Vec<_> = by_class(doc, "series")[0]
            .descendants()
            .filter(|n| n.attribute("class") == Some("marker"))
            .collect();
        assert_eq!(series0.len(), 2);
        assert_eq!(texts(doc, "note"), ["3 non-finite point(s) not drawn"]);
        // No two consecutive points are finite there, so there is no line at all.
        assert!(by_class(doc, "line").is_empty());
    });
    // A missing point breaks a line into two pieces instead of joining across the gap.
    let gap = Chart::new("gap", "x", "y").with_series(Series::line(
        "g",
        [(0.0, 1.0), (1.0, 2.0), (1.5, nan), (2.0, 3.0), (3.0, 4.0)],
    ));
    with_doc(&gap.to_svg(), |doc| {
        let d = by_class(doc, "line")[0].attribute("d").unwrap().to_string();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 2, "{d}");
    });
    // A single point: one marker inside the plot area.
    with_doc(&charts[2].to_svg(), |doc| {
        let m = by_class(doc, "marker")[0];
        let x_axis = by_class(doc, "x-axis")[0];
        let (cx, left, right) = (num(m, "cx"), num(x_axis, "x1"), num(x_axis, "x2"));
        assert!(cx > left && cx < right);
    });
}

#[test]
fn error_bars_and_hlines_widen_the_range() {
    let c = Chart::new("err", "x", "y")
        .with_series(Series::new(
            "e",
            SeriesKind::LineMarkers,
            vec![
                Point::new(0.0, 50.0).with_err(30.0, 70.0),
                Point::new(1.0, 55.0),
            ],
        ))
        .with_hline(80.0, "coherence 80");
    with_doc(&c.to_svg(), |doc| {
        let ticks: Vec<f64> = texts(doc, "y-tick")
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        assert!(
            ticks[0] <= 30.0 && *ticks.last().unwrap() >= 80.0,
            "{ticks:?}"
        );
        assert_eq!(texts(doc, "hline-label"), ["coherence 80"]);
        assert_eq!(by_class(doc, "errbar").len(), 3); // bar + two caps
    });
}

#[test]
fn histogram_counts_every_finite_value() {
    let mut values: Vec<f64> = (0..1000)
        .map(|i| ((i * 37) % 101) as f64 / 7.0 - 3.0)
        .collect();
    values.extend([f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
    for bins in [0, 1, 7, 20, 5000] {
        let h = Histogram::new("h", "v", values.clone(), bins);
        let b = h.bins();
        assert_eq!(b.counts.iter().sum::<usize>(), 1000);
        assert_eq!(b.skipped, 3);
        assert_eq!(b.edges.len(), b.counts.len() + 1);
        let min = values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(f64::INFINITY, f64::min);
        let max = values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!((b.edges[0], *b.edges.last().unwrap()), (min, max));
        with_doc(&h.to_svg(), |doc| {
            let drawn: usize = by_class(doc, "bar")
                .iter()
                .map(|n| n.attribute("data-count").unwrap().parse::<usize>().unwrap())
                .sum();
            assert_eq!(drawn, 1000);
            assert!(texts(doc, "note")[0].contains("3 non-finite"));
        });
    }
    // Degenerate histograms.
    for values in [vec![], vec![2.0], vec![5.0; 10], vec![f64::NAN]] {
        let h = Histogram::new("", "", values.clone(), 10);
        let finite = values.iter().filter(|v| v.is_finite()).count();
        assert_eq!(h.bins().counts.iter().sum::<usize>(), finite);
        with_doc(&h.to_svg(), |_| ());
    }
}

#[test]
fn horizontal_bars_grow_with_their_number() {
    let bars = |n: usize| -> Vec<(String, f64)> {
        (0..n)
            .map(|i| (format!("role {i}"), i as f64 - n as f64 / 3.0))
            .collect()
    };
    let height = |svg: &str| with_doc(svg, |doc| num(doc.root_element(), "height"));
    let small = BarChart::new("roles", "projection", bars(10), true).to_svg();
    let big = BarChart::new("roles", "projection", bars(240), true).to_svg();
    assert!(height(&big) > height(&small) + 200.0 * 15.0);
    with_doc(&big, |doc| {
        assert_eq!(by_class(doc, "bar-label").len(), 240);
        let bars = by_class(doc, "bar");
        assert_eq!(bars.len(), 240);
        // Bars start at zero: a negative bar ends at the zero line, a positive one starts there.
        let zero = num(by_class(doc, "zero")[0], "x1");
        let first = bars[0];
        assert!((num(first, "x") + num(first, "width") - zero).abs() < 0.02);
        assert_eq!(num(bars[239], "x"), zero);
    });
    let empty = BarChart::new("none", "v", vec![], true).to_svg();
    with_doc(&empty, |_| ());
    let with_nan = BarChart::new(
        "nan",
        "v",
        vec![("a".into(), f64::NAN), ("b".into(), 2.0)],
        false,
    );
    with_doc(&with_nan.to_svg(), |doc| {
        assert_eq!(by_class(doc, "bar").len(), 1)
    });
    let long = BarChart::new("v", "v", bars(40), false).to_svg();
    with_doc(&long, |doc| {
        assert_eq!(by_class(doc, "bar-label").len(), 40)
    });
}

#[test]
fn bars_carry_their_intervals() {
    let bars = vec![("a".to_string(), 20.0), ("b".to_string(), 5.0)];
    let errors = vec![Some((10.0, 80.0)), None];
    for horizontal in [true, false] {
        let svg = BarChart::new("rates", "%", bars.clone(), horizontal)
            .with_errors(errors.clone())
            .to_svg();
        with_doc(&svg, |doc| {
            // One interval line and its two caps, for the bar that has an interval.
            let lines = by_class(doc, "errbar");
            assert_eq!(lines.len(), 3, "horizontal {horizontal}");
            let (x1, y1, x2, y2) = (
                num(lines[0], "x1"),
                num(lines[0], "y1"),
                num(lines[0], "x2"),
                num(lines[0], "y2"),
            );
            let bar = by_class(doc, "bar")[0];
            // The interval reaches past the bar's end (80 > 20) on the value axis.
            if horizontal {
                assert_eq!(y1, y2);
                assert!(x2 > num(bar, "x") + num(bar, "width") && x1 > num(bar, "x"));
            } else {
                assert_eq!(x1, x2);
                assert!(y2 < num(bar, "y") && y1 > num(bar, "y"));
            }
        });
    }
    // Without intervals nothing changes.
    let plain = BarChart::new("rates", "%", bars.clone(), true);
    assert_eq!(plain.clone().with_errors(vec![]).to_svg(), plain.to_svg());
}

#[test]
fn output_is_deterministic() {
    let c = Chart::new("d", "x", "y")
        .with_series(Series::markers("a", [(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)]))
        .with_fit_line(true);
    assert_eq!(c.to_svg(), c.to_svg());
    // Charts also round-trip through JSON, so a run can store what it plotted.
    let json = serde_json::to_string(&c).unwrap();
    let back: Chart = serde_json::from_str(&json).unwrap();
    assert_eq!(back.to_svg(), c.to_svg());
}

#[test]
fn many_series_get_a_legend_that_fits() {
    let mut c = Chart::new("many", "x", "y");
    for i in 0..30 {
        c = c.with_series(Series::line(
            format!("s{i}"),
            [(0.0, i as f64), (1.0, 2.0 * i as f64)],
        ));
    }
    with_doc(&c.to_svg(), |doc| {
        let height = num(doc.root_element(), "height");
        let labels = by_class(doc, "legend-label");
        assert_eq!(labels.len(), 30);
        assert!(labels.iter().all(|l| num(*l, "y") < height));
        // Series past the eighth reuse colours, but with a dash pattern.
        let lines = by_class(doc, "line");
        assert!(lines[0].attribute("stroke-dasharray").is_none());
        assert!(lines[8].attribute("stroke-dasharray").is_some());
        assert_eq!(lines[0].attribute("stroke"), lines[8].attribute("stroke"));
    });
}

/// Width of `text` at `size` px in DejaVu Sans, the charts' first font: digits, `-` and `.` by
/// their advances in the font (in units of its 2048-unit em), anything else as wide as an "m",
/// so the estimate never falls short of the drawn text.
fn dejavu_width(text: &str, size: f64) -> f64 {
    let units: f64 = text
        .chars()
        .map(|c| match c {
            '0'..='9' => 1303.0,
            '-' => 739.0,
            '.' => 651.0,
            _ => 1995.0,
        })
        .sum();
    units / 2048.0 * size
}

/// The angle of a `rotate(A X Y)` transform, 0 without one.
fn rotation(node: roxmltree::Node) -> f64 {
    node.attribute("transform").map_or(0.0, |t| {
        t.trim_start_matches("rotate(")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    })
}

#[test]
fn bar_values_never_run_into_each_other() {
    // ‖v‖ of a 30-layer model: two-digit norms with two decimals, wider than a bar's slot.
    let norms: Vec<(String, f64)> = (0..30)
        .map(|l| (format!("L{l}"), 0.4 + l as f64 * 0.9 + (l as f64).sin()))
        .collect();
    let svg = BarChart::new("‖v‖ per layer", "norm", norms.clone(), false).to_svg();
    with_doc(&svg, |doc| {
        // Every layer keeps its label and its value.
        assert_eq!(by_class(doc, "bar-label").len(), 30);
        let values = by_class(doc, "bar-value");
        assert_eq!(values.len(), 30);
        let bars = by_class(doc, "bar");
        let slot = num(bars[1], "x") - num(bars[0], "x");
        let plot_top = num(by_class(doc, "y-axis")[0], "y1");
        // The widest values are too wide to sit side by side, so all are turned upright along
        // their bars, inside the plot above the bar's end.
        let widest = values
            .iter()
            .map(|v| dejavu_width(v.text().unwrap(), 10.0))
            .fold(0.0, f64::max);
        assert!(widest > slot, "every value fits its slot: {widest} {slot}");
        for (value, bar) in values.iter().zip(&bars) {
            let text = value.text().unwrap();
            assert_eq!(rotation(*value), -90.0, "{text}");
            let (x, y) = (num(*value, "x"), num(*value, "y"));
            let centre = num(*bar, "x") + num(*bar, "width") / 2.0;
            assert!((x - 3.5 - centre).abs() < 0.01, "{text} off its bar");
            assert!(y <= num(*bar, "y"), "{text} inside its bar");
            assert!(
                y - dejavu_width(text, 10.0) >= plot_top,
                "{text} runs out of the plot (top {plot_top}, y {y})"
            );
        }
    });
    // Short values on a few wide bars stay level, centred and apart.
    let few = BarChart::new("few", "v", norms[..6].to_vec(), false).to_svg();
    with_doc(&few, |doc| {
        let values = by_class(doc, "bar-value");
        assert_eq!(values.len(), 6);
        assert!(values.iter().all(|v| rotation(*v) == 0.0));
        for pair in values.windows(2) {
            let half = |v: roxmltree::Node| dejavu_width(v.text().unwrap(), 10.0) / 2.0;
            let gap = (num(pair[1], "x") - half(pair[1])) - (num(pair[0], "x") + half(pair[0]));
            assert!(gap > 2.0, "values overlap: {gap}");
        }
    });
    // Negative values hang below their bars.
    let signed: Vec<(String, f64)> = norms
        .iter()
        .enumerate()
        .map(|(i, (l, v))| (l.clone(), if i % 2 == 0 { -v } else { *v }))
        .collect();
    let svg = BarChart::new("signed", "v", signed, false).to_svg();
    with_doc(&svg, |doc| {
        for (value, bar) in by_class(doc, "bar-value").iter().zip(by_class(doc, "bar")) {
            let negative = value.text().unwrap().starts_with('-');
            let (bar_top, bar_bottom) = (num(bar, "y"), num(bar, "y") + num(bar, "height"));
            let y = num(*value, "y");
            assert_eq!(
                value.attribute("text-anchor"),
                Some(if negative { "end" } else { "start" })
            );
            assert!(if negative {
                y >= bar_bottom
            } else {
                y <= bar_top
            });
        }
    });
}
