//! Every input in `fuzz/regressions/<target>/` (each once a crash, hang or
//! runaway allocation the fuzzer found) runs through that target's harness
//! (`fuzz/src/lib.rs`, the code the fuzz targets run) and returns normally.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::time::{Duration, Instant};

/// A fuzz target's harness.
type Harness = fn(&[u8]);

#[test]
fn inputs_the_fuzzer_found_run_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let targets: [(&str, Harness); 4] = [
        ("onnx_import", harness::onnx_import),
        ("checkpoint", harness::checkpoint),
        ("plan_recipe", harness::plan_recipe),
        ("compile", harness::compile),
    ];
    let mut ran = 0;
    for (name, run) in targets {
        let Ok(dir) = std::fs::read_dir(root.join(name)) else { continue };
        let mut files: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).expect("read");
            // On a thread, so that a hang fails the test instead of blocking it.
            let (done, wait) = std::sync::mpsc::channel();
            let t = Instant::now();
            std::thread::spawn(move || {
                run(&data);
                let _ = done.send(());
            });
            match wait.recv_timeout(Duration::from_secs(60)) {
                Ok(()) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{}: still running after 60 s", f.display()),
                Err(_) => panic!("{}: the harness panicked", f.display()),
            }
            eprintln!("{}: {:?}", f.display(), t.elapsed());
            ran += 1;
        }
    }
    assert!(ran > 0, "no regression inputs under {}", root.display());
}
