//! A spinner on stderr while a long stage runs (only when stderr is a terminal).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// A running stage; dropping it clears the spinner.
pub struct Stage(Option<ProgressBar>);

/// Starts a stage named `what`.
pub fn stage(what: &str) -> Stage {
    if !std::io::stderr().is_terminal() {
        return Stage(None);
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    Stage(Some(bar))
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

/// A progress bar for passes that report `done` of `total` steps of a stage
/// (only when stderr is a terminal); dropping it clears it.
pub struct Bar(Option<ProgressBar>);

impl Bar {
    /// A bar, hidden until the first report.
    pub fn new() -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let bar = ProgressBar::new(1);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bar(Some(bar))
    }

    /// Shows `stage` at `done` of `total`.
    pub fn set(&self, stage: &str, done: usize, total: usize) {
        if let Some(b) = &self.0 {
            b.set_message(stage.to_string());
            b.set_length(total.max(1) as u64);
            b.set_position(done as u64);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}
