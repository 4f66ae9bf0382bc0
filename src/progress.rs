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
