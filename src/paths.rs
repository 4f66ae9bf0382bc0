//! Output safety: no output may be, or resolve to, a file the compile reads,
//! lie inside an input checkpoint folder, or be another output.

use anyhow::{bail, Result};
use std::path::{Component, Path, PathBuf};

/// What a compile reads: files, and folders nothing may be written into.
#[derive(Default)]
pub struct Inputs {
    files: Vec<PathBuf>,
    folders: Vec<PathBuf>,
}

impl Inputs {
    /// A file that is read (ignored when it does not exist).
    pub fn file(&mut self, p: &Path) {
        if let Ok(real) = p.canonicalize() {
            self.files.push(real);
        }
    }
    /// A folder that is read as a whole (a checkpoint).
    pub fn folder(&mut self, p: &Path) {
        if let Ok(real) = p.canonicalize() {
            self.folders.push(real);
        }
    }
}

/// `p` made absolute through its nearest existing ancestor, links resolved
/// there and `..` applied to the rest, so a path that does not exist yet is
/// compared by where it will be.
pub fn resolve(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(p) };
    let parts: Vec<Component<'_>> = abs.components().collect();
    // The longest prefix that exists, with its links resolved.
    let (mut out, rest) = (0..=parts.len())
        .rev()
        .find_map(|k| {
            let prefix: PathBuf = parts[..k].iter().collect();
            let real = if k == 0 { Some(PathBuf::new()) } else { prefix.canonicalize().ok() };
            real.map(|r| (r, &parts[k..]))
        })
        .unwrap_or_default();
    for c in rest {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Refuses outputs (`(what, path)`) that overwrite an input, lie inside an
/// input folder, or coincide with each other.
pub fn check_outputs(inputs: &Inputs, outputs: &[(&str, PathBuf)]) -> Result<()> {
    let resolved: Vec<(&str, &Path, PathBuf)> = outputs.iter().map(|(w, p)| (*w, p.as_path(), resolve(p))).collect();
    for (what, p, r) in &resolved {
        if let Some(f) = inputs.files.iter().find(|f| *f == r) {
            bail!("refusing to overwrite the input {}: {what} {} is that file", f.display(), p.display());
        }
        if let Some(d) = inputs.folders.iter().find(|d| r.starts_with(d)) {
            bail!("refusing to write {what} {} inside the input folder {}", p.display(), d.display());
        }
        if let Some(f) = inputs.files.iter().find(|f| f.starts_with(r)) {
            bail!("refusing to write {what} {}: the input {} lies inside it", p.display(), f.display());
        }
    }
    for (i, (a, pa, ra)) in resolved.iter().enumerate() {
        if let Some((b, pb, _)) = resolved[i + 1..].iter().find(|(_, _, rb)| rb == ra) {
            bail!("{a} {} and {b} {} are the same file; choose different paths", pa.display(), pb.display());
        }
    }
    Ok(())
}

/// Removes, from each output folder, files a killed ecospac left there.
pub fn clean_stale(outputs: &[(&str, PathBuf)]) {
    let mut seen = Vec::new();
    for (_, p) in outputs {
        let dir = resolve(p).parent().map(Path::to_path_buf).unwrap_or_default();
        if seen.contains(&dir) {
            continue;
        }
        if let Ok(gone) = ecospac_ir::staging::remove_stale(&dir) {
            for g in &gone {
                eprintln!("removed {}, left by an ecospac run that was killed", g.display());
            }
        }
        seen.push(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_do_not_exist_resolve_by_their_existing_ancestor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().canonicalize().expect("real");
        assert_eq!(resolve(&dir.path().join("new/sub/../x.onnx")), real.join("new/x.onnx"));
        let mut inputs = Inputs::default();
        inputs.folder(dir.path());
        let err = check_outputs(&inputs, &[("--output", dir.path().join("no/such/sub/"))]).unwrap_err();
        assert!(err.to_string().contains("inside the input folder"), "{err}");
        let out = tempfile::tempdir().expect("out");
        let same = [("--report", out.path().join("a.json")), ("--emit-plan", out.path().join("./a.json"))];
        assert!(check_outputs(&inputs, &same).unwrap_err().to_string().contains("are the same file"));
    }
}
