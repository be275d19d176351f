//! Text or JSON on stdout: every command prints one or the other, never both.

use serde::Serialize;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Prints `value` as one JSON document when `--format json`, else runs `text`.
pub fn emit<T: Serialize>(format: Format, value: &T, text: impl FnOnce()) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string(value)?),
        Format::Text => text(),
    }
    Ok(())
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
pub fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Runs `work` with a progress bar on stderr that shows its stages, cleared when it ends.
pub fn with_progress<T, E>(
    first_stage: &str,
    work: impl FnOnce(&mut dyn FnMut(&str, usize, usize)) -> Result<T, E>,
) -> Result<T, E> {
    let bar = bar(1, first_stage);
    let result = work(&mut stage_progress(&bar));
    bar.finish_and_clear();
    result
}

/// Shows a model-cache event on a progress bar.
pub fn show_fetch_progress(bar: &indicatif::ProgressBar, p: &persona_models::Progress) {
    use persona_models::Progress;
    match p {
        Progress::Downloading { what } => bar.set_message(format!("downloading {what}")),
        Progress::Extracting { what, bytes, total } => {
            bar.set_length(*total);
            bar.set_position(*bytes);
            bar.set_message(format!("extracting {what}"));
        }
        Progress::Verifying { what, bytes, total } => {
            bar.set_length(*total);
            bar.set_position(*bytes);
            bar.set_message(format!("verifying {what}"));
        }
        Progress::Done { .. } => bar.set_message("done"),
    }
}

/// A `(stage, done, total)` callback that shows the stage and its progress on `bar`.
pub fn stage_progress(bar: &indicatif::ProgressBar) -> impl FnMut(&str, usize, usize) + '_ {
    move |stage, done, total| {
        bar.set_message(stage.to_string());
        bar.set_length(total as u64);
        bar.set_position(done.min(total) as u64);
    }
}

/// `x` with `digits` decimals, or `–` where there is no value.
pub fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// `[lo, hi]` with `digits` decimals, or `–` where there is no interval.
pub fn interval(ci: Option<(f64, f64)>, digits: usize) -> String {
    ci.map_or("–".into(), |(lo, hi)| {
        format!("[{lo:.digits$}, {hi:.digits$}]")
    })
}
