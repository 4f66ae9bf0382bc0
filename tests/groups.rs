//! Snapshots of `ecospac inspect --groups` for every fixture, so that a change
//! that finds fewer groups (or pins more) fails even when something still
//! shrinks. Review changes with `cargo insta review` (or bless with
//! `INSTA_UPDATE=always cargo test --test groups`).

mod common;

use common::*;

fn groups_text(path: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ecospac"))
        .args(["inspect", &path.display().to_string(), "--groups"])
        .output()
        .expect("run ecospac");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).replace(&path.display().to_string(), "MODEL")
}

#[test]
fn groups_of_exported_fixtures() {
    for name in FIXTURES {
        insta::assert_snapshot!(format!("groups-{name}"), groups_text(&fixture(name)));
    }
}

#[test]
fn groups_of_checkpoint_fixtures() {
    for name in ["gpt2", "llama", "llama-rope-llama3", "qwen2", "qwen3", "phi3", "mistral", "gemma2", "gemma3", "vit"] {
        insta::assert_snapshot!(format!("groups-hf-{name}"), groups_text(&fixture("hf").join(name)));
    }
}
