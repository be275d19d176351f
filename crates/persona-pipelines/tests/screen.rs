//! `screen` on the real default model at a small size: ΔP is the difference of two projections
//! that a direct teacher-forced pass reproduces, rows are ranked, the top and filtered files
//! split the dataset's lines unchanged, chunks and reruns change nothing, and bad lines are
//! named.

use persona_pipelines::DirStore;
use std::path::Path;

use persona_engine::{CaptureSpec, ForwardRequest, HookSite, Message, WeightMode};
use persona_io::LayerVectors;
use persona_pipelines::answers::AnswerOptions;
use persona_pipelines::screen::{screen, ScreenOptions, ScreenTrait};
use persona_pipelines::VectorSource;

const SAMPLES: [(&str, &str); 4] = [
    (
        "How will my exam go?",
        "Brilliantly! You have worked hard and it will show.",
    ),
    (
        "How will my exam go?",
        "Badly, most likely. Exams like this are rarely passed.",
    ),
    (
        "Is it worth planting a garden?",
        "Yes! It brings joy, food and calm all year round.",
    ),
    (
        "Is it worth planting a garden?",
        "Not really; pests and drought usually ruin it.",
    ),
];

fn dataset(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("data.jsonl");
    let mut text = String::new();
    for (i, (p, r)) in SAMPLES.iter().enumerate() {
        if i % 2 == 0 {
            let line = serde_json::json!({"messages": [
                {"role": "user", "content": p}, {"role": "assistant", "content": r}]});
            text.push_str(&format!("{line}\n"));
        } else {
            let line = serde_json::json!({"prompt": p, "response": r});
            text.push_str(&format!("{line}\n\n"));
        }
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn direction(d: usize, l: usize) -> Vec<f32> {
    (0..d)
        .map(|i| (((i * 131 + l) % 61) as f32 - 30.0) / 30.0)
        .collect()
}

#[test]
fn screen_on_the_default_model() {
    let engine = persona_testkit::load(WeightMode::Auto);
    let c = engine.config().clone();
    let vectors = LayerVectors {
        layers: (0..c.n_layers)
            .map(|l| (l, direction(c.d_model, l)))
            .collect(),
        ..Default::default()
    };
    let file = Path::new("synthetic.safetensors");
    let traits = [
        ScreenTrait {
            name: "a",
            layer: 12,
            vectors: VectorSource {
                vectors: &vectors,
                file,
            },
        },
        ScreenTrait {
            name: "b",
            layer: 20,
            vectors: VectorSource {
                vectors: &vectors,
                file,
            },
        },
    ];
    let opts = ScreenOptions {
        answers: AnswerOptions::greedy(8, 4),
        chunk: 3,
        top: 1,
    };
    let run = |data: &Path, opts: &ScreenOptions, out: &Path| {
        let store = DirStore::open(out).unwrap();
        screen(&engine, data, &traits, opts, &store, &mut |_, _, _| {})
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let out = dir.path().join("out");
    let r = run(&data, &opts, &out).unwrap();
    assert_eq!(r.samples, 4);
    let rows: Vec<persona_pipelines::screen::SampleRow> =
        persona_io::read_log(&r.rows_file).unwrap();
    // Lines 1, 2, 4, 5 of the file (a blank line follows each pair-format sample).
    let mut lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
    lines.sort();
    assert_eq!(lines, [1, 2, 4, 5]);
    // Ranked by the first trait, highest first; ΔP is data − model.
    assert!(rows.windows(2).all(|w| w[0].delta["a"] >= w[1].delta["a"]));
    for row in &rows {
        for t in ["a", "b"] {
            let want = row.data_projection[t] - row.model_projection[t];
            assert!((row.delta[t] - want).abs() < 1e-12);
        }
    }
    // The dataset response's projection, recomputed with a direct teacher-forced pass.
    let row = &rows[0];
    let seq = engine
        .chat_with_response(&[Message::new("user", row.prompt.clone())], &row.response)
        .unwrap();
    let req = ForwardRequest {
        captures: CaptureSpec::response_means([12]),
        ..Default::default()
    };
    let o = engine.forward_batch(&[seq], &req, &mut |_| {}).unwrap();
    let mean = o[0].captures.get(HookSite::resid_post(12)).unwrap().means[0]
        .clone()
        .unwrap();
    let v = direction(c.d_model, 12);
    let want = persona_core::dot(&mean, &v) / persona_core::norm(&v);
    assert!(
        (row.data_projection["a"] - want).abs() < 1e-3 * want.abs().max(1.0),
        "{} vs {want}",
        row.data_projection["a"]
    );
    // The top sample and the rest split the file's samples, lines unchanged.
    let original: Vec<String> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    let top = std::fs::read_to_string(r.top_file.as_ref().unwrap()).unwrap();
    let rest = std::fs::read_to_string(r.filtered_file.as_ref().unwrap()).unwrap();
    assert_eq!(top.lines().count(), 1);
    assert_eq!(rest.lines().count(), 3);
    assert_eq!(
        top.lines().next().unwrap(),
        original[lines.iter().position(|&l| l == rows[0].line).unwrap()]
    );
    let mut all: Vec<&str> = top.lines().chain(rest.lines()).collect();
    all.sort();
    let mut want: Vec<&str> = original.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(all, want);

    // One chunk or three, first run or rerun from the cache: the same rows.
    let again = run(&data, &opts, &out).unwrap();
    assert_eq!(again.samples, 4);
    let cached = std::fs::read_to_string(out.join("screen_samples.jsonl")).unwrap();
    assert_eq!(cached.lines().count(), 4, "a rerun measures nothing again");
    let one_chunk = ScreenOptions {
        chunk: 64,
        ..opts.clone()
    };
    let out2 = dir.path().join("out2");
    run(&data, &one_chunk, &out2).unwrap();
    let rows2: Vec<persona_pipelines::screen::SampleRow> =
        persona_io::read_log(&out2.join("screen.jsonl")).unwrap();
    for (a, b) in rows.iter().zip(&rows2) {
        assert_eq!((a.line, &a.model_response), (b.line, &b.model_response));
        assert!((a.delta["b"] - b.delta["b"]).abs() < 1e-3 * a.delta["b"].abs().max(1.0));
    }

    // Bad samples are errors that name their line.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n").unwrap();
    let error_of = |out: &str| {
        run(&bad, &opts, &dir.path().join(out))
            .unwrap_err()
            .to_string()
    };
    let e = error_of("o3");
    assert!(e.contains("line 2") && e.contains("assistant"), "{e}");
    std::fs::write(&bad, "{\"prompt\": \"a\", \"response\": \"b\"}\nnot json\n").unwrap();
    let e = error_of("o4");
    assert!(e.contains("line 2"), "{e}");
}
