//! Checks on the report page: self-contained, escaped, well-formed enough to embed plots.

use persona_report::html::Report;
use persona_report::svg::{Chart, Series};

fn sample() -> Report {
    let chart = Chart::new("sweep", "coefficient", "trait score").with_series(
        Series::line_markers("evil", [(0.0, 10.0), (1.0, 40.0), (2.0, 75.0)]),
    );
    let mut r = Report::new("persona <steer> & \"sweep\"");
    r.code("persona steer evil --coef 0,1,2 --question 'what's <up>?'")
        .key_values(&[("model", "smollm2-135m <sha256 abc>"), ("seed", "42")])
        .heading(2, "Results & <notes>")
        .paragraph("first para with <script>alert(1)</script>\n\nsecond para")
        .list(&["one <1>", "two"])
        .table(
            &["coef", "score", "answer"],
            vec![
                vec!["0".into(), "10.5".into(), "I'm <fine> & \"well\"".into()],
                vec!["1".into(), "n/a".into(), "meh".into()],
                vec!["2".into(), "75%".into()],
            ],
        )
        .figure(
            &format!("<?xml version=\"1.0\"?>\n{}", chart.to_svg()),
            "score <vs> coef",
        )
        .svg(&chart.to_svg());
    r
}

#[test]
fn page_is_self_contained() {
    let html = sample().to_html();
    let lower = html.to_lowercase();
    for needle in ["src=", "href=", "<script", "<link", "@import", "url("] {
        assert!(!lower.contains(needle), "found {needle}");
    }
    // The only URL on the page is the SVG namespace name, which is never fetched.
    let urls = lower.matches("http").count();
    let ns = lower
        .matches("xmlns=\"http://www.w3.org/2000/svg\"")
        .count();
    assert_eq!(urls, ns);
    assert_eq!(ns, 2);
    assert!(!html.contains("<?xml"));
}

#[test]
fn text_is_escaped() {
    let html = sample().to_html();
    assert!(html.contains("<title>persona &lt;steer&gt; &amp; &quot;sweep&quot;</title>"));
    assert!(html.contains("<h2>Results &amp; &lt;notes&gt;</h2>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("I&#39;m &lt;fine&gt; &amp; &quot;well&quot;"));
    assert!(html.contains("what&#39;s &lt;up&gt;?"));
    assert!(html.contains("<figcaption>score &lt;vs&gt; coef</figcaption>"));
    assert!(!html.contains("<up>") && !html.contains("<fine>") && !html.contains("<notes>"));
}

#[test]
fn numeric_columns_are_right_aligned() {
    let html = sample().to_html();
    assert!(html.contains("<th scope=\"col\" class=\"num\">coef</th>"));
    assert!(html.contains("<th scope=\"col\" class=\"num\">score</th>"));
    assert!(html.contains("<th scope=\"col\">answer</th>"));
    assert!(html.contains("<td class=\"num\">10.5</td>"));
    assert!(html.contains("<td class=\"num\">n/a</td>"));
    // The short last row is padded to three cells.
    assert!(html.contains("<td class=\"num\">75%</td><td></td></tr>"));
}

#[test]
fn page_parses_as_xml_apart_from_the_doctype() {
    // The generator emits XHTML-compatible markup (closed tags, quoted attributes), so a strict
    // parser reading it is a cheap check that no tag is left open or text unescaped.
    let html = sample().to_html();
    let body = html
        .trim_start_matches("<!DOCTYPE html>\n")
        .replace("<meta charset=\"utf-8\">", "<meta charset=\"utf-8\"/>")
        .replace(
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>",
        );
    roxmltree::Document::parse(&body).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn write_puts_the_page_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.html");
    let r = sample();
    r.write(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), r.to_html());
}

#[test]
fn headings_are_clamped() {
    let mut r = Report::new("t");
    r.heading(0, "zero").heading(9, "nine");
    let html = r.to_html();
    assert!(html.contains("<h1>zero</h1>") && html.contains("<h6>nine</h6>"));
}
