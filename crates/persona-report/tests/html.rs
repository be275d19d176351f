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

/// Parses the page as XML once the doctype is dropped and the void `<meta>` elements closed.
fn parse_as_xml(html: &str) {
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
fn page_parses_as_xml_apart_from_the_doctype() {
    // The generator emits XHTML-compatible markup (closed tags, quoted attributes), so a strict
    // parser reading it is a cheap check that no tag is left open or text unescaped.
    let html = sample().to_html();
    parse_as_xml(&html);
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

fn answer_page() -> (String, String) {
    use persona_report::html::{AnswerGrid, AnswerRow, Excerpt, PREVIEW_CHARS};
    let long: String = (0..120)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(long.chars().count() > PREVIEW_CHARS);
    let grid = AnswerGrid {
        columns: vec!["α = −4".into(), "α = 0 (unsteered)".into(), "α = 4".into()],
        reference: Some(1),
        rows: vec![
            AnswerRow {
                heading: "What's <next>?".into(),
                cells: vec![
                    Some(Excerpt {
                        text: "I'd say <b>gloom</b> & \"doom\"\nsecond line".into(),
                        note: "trait 12 · coherence 80".into(),
                    }),
                    Some(Excerpt {
                        text: "  \n ".into(),
                        note: String::new(),
                    }),
                    None,
                ],
            },
            AnswerRow {
                heading: String::new(),
                cells: vec![
                    None,
                    None,
                    Some(Excerpt {
                        text: long.clone(),
                        note: "trait 90".into(),
                    }),
                ],
            },
        ],
    };
    let mut r = Report::new("answers");
    r.answers(&grid);
    (r.to_html(), long)
}

#[test]
fn answers_sit_side_by_side_escaped_with_long_ones_folded() {
    let (html, long) = answer_page();
    // The prompt spans the three columns; the reference column is marked in head and cells.
    assert!(html.contains(
        "<tr class=\"prompt\"><th scope=\"rowgroup\" colspan=\"3\">What&#39;s &lt;next&gt;?</th></tr>"
    ));
    assert!(html.contains("<th scope=\"col\" class=\"reference\">α = 0 (unsteered)</th>"));
    assert_eq!(html.matches("<td class=\"reference\">").count(), 2);
    // Text is escaped and keeps its line break; blank answers say so; absent ones are a dash.
    assert!(html.contains(
        "<div class=\"text\">I&#39;d say &lt;b&gt;gloom&lt;/b&gt; &amp; &quot;doom&quot;\nsecond line</div>"
    ));
    assert!(!html.contains("<b>gloom"));
    assert!(html.contains("<div class=\"note\">trait 12 · coherence 80</div>"));
    assert!(html.contains("(empty answer)"));
    assert_eq!(html.matches("<span class=\"missing\">–</span>").count(), 3);
    // A long answer shows its start up to a word break with a marker, and the whole text
    // once opened.
    let chars = long.chars().count();
    assert!(html.contains(&format!("… show all {chars} characters")));
    let preview_start = html.find("<span class=\"preview\">").unwrap() + 22;
    let preview_end = preview_start + html[preview_start..].find("</span>").unwrap();
    let preview = &html[preview_start..preview_end];
    assert!(long.starts_with(preview) && preview.len() < long.len() && preview.len() > 180);
    assert!(long[preview.len()..].starts_with(' '), "cut inside a word");
    assert!(html.contains(&format!("</summary>{long}</details>")));
    // Still well-formed: the grid parses as XML with the rest of the page.
    parse_as_xml(&html);
}
