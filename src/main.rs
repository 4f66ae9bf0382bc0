//! The `ecospac` command line: parses, builds a recipe, calls the library, prints.

mod compile;
#[cfg(feature = "train")]
mod distil_cmd;
mod inspect;
mod paths;
mod progress;
mod recover;
#[cfg(feature = "train")]
mod train_cmd;
mod verify_cmd;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ecospac_frontends::hf::Checkpoint;
use ecospac_ir::Model;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "ecospac", version, about = "Coupled structured sparsity for transformer graphs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a model: opsets, inputs/outputs, op histogram, parameters.
    Inspect {
        /// The ONNX model or checkpoint folder.
        model: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Print the IR text form instead.
        #[arg(long, conflicts_with = "json")]
        text: bool,
        /// Bind symbolic dims by name for the FLOPs count, e.g. `batch=1,seq=128` (`*=N` binds the rest).
        #[arg(long, value_delimiter = ',')]
        bind: Vec<String>,
        /// Print the coupling groups (what can be pruned together) and the pinned weight axes.
        #[arg(long, conflicts_with = "text")]
        groups: bool,
    },
    /// Run the compile pipeline and write the result.
    Compile {
        /// The ONNX model or checkpoint folder.
        model: PathBuf,
        /// Where to write the result (never the input): an .onnx file, or a folder for a checkpoint.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        prune: Box<compile::PruneArgs>,
        /// Run this recipe (TOML or JSON, see `ecospac recipe`) instead of the one the flags stand for.
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Model passes to run before pruning, comma-separated (see `ecospac passes`).
        #[arg(long, value_delimiter = ',', default_value = "infer-shapes")]
        passes: Vec<String>,
        /// Print the IR text form after this pass (repeatable).
        #[arg(long)]
        dump_after: Vec<String>,
        /// Write weights to `<output>.data` even when the model is under 2 GB.
        #[arg(long)]
        external_data: bool,
        /// Run the verifier after every pass (always on in debug builds).
        #[arg(long)]
        verify_each: bool,
    },
    /// Print the recipe (TOML) that the compile flags stand for.
    Recipe {
        #[command(flatten)]
        prune: Box<compile::PruneArgs>,
        /// Model passes to run before pruning, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "infer-shapes")]
        passes: Vec<String>,
        /// The recipe of a compile to a checkpoint folder (scope `config`).
        #[arg(long)]
        checkpoint: bool,
        /// JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// Run the original (or, with --masked, the masked original) and the compact
    /// model in ONNX Runtime on the same inputs: fidelity and latency.
    Verify(Box<verify_cmd::VerifyArgs>),
    /// List the registered passes.
    Passes,
    /// Train with the EcoSpa schedule (pre-train from a config or fine-tune a
    /// checkpoint), shrinking the model as it learns; export it to ONNX. With
    /// --teacher, repair a compact ONNX model by distillation from its original.
    #[cfg(feature = "train")]
    Train(Box<train_cmd::TrainArgs>),
}

/// Restores the default SIGPIPE action, so that `ecospac ... | head` ends quietly
/// instead of panicking on a closed stdout.
#[cfg(unix)]
fn default_sigpipe() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    // SAFETY: setting SIGPIPE (13) to SIG_DFL (0) before any thread starts.
    unsafe {
        signal(13, 0);
    }
}

/// Ends the process from the interrupt handler's thread without running
/// exit handlers: libtorch's static destructors would otherwise tear down its
/// operator registry under a training step still running on the main thread,
/// which then fails on an internal assertion instead of ending quietly.
fn exit_now(code: i32) -> ! {
    #[cfg(unix)]
    {
        extern "C" {
            fn _exit(status: i32) -> !;
        }
        // SAFETY: `_exit` takes any status and never returns; the staged
        // outputs are removed and stderr is unbuffered.
        unsafe { _exit(code) }
    }
    #[cfg(not(unix))]
    std::process::exit(code)
}

fn main() {
    #[cfg(unix)]
    default_sigpipe();
    // Ctrl-C, SIGTERM, SIGHUP: remove what this run has staged, then exit.
    let _ = ctrlc::set_handler(|| {
        let n = ecospac_ir::staging::close();
        eprintln!("\ninterrupted: removed {n} unfinished output file(s)");
        exit_now(130);
    });
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {}", message(&e));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, each cause once (library errors
/// often name their source in their own message already).
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { model, json, text, groups: false, bind } => inspect::inspect(&model, json, text, &bind),
        Command::Inspect { model, json, groups: true, .. } => inspect::inspect_groups(&model, json),
        Command::Compile { model, output, prune, recipe, passes, dump_after, external_data, verify_each } => {
            compile::compile(&compile::CompileArgs {
                input: &model,
                output: &output,
                prune: &prune,
                passes: &passes,
                recipe: recipe.as_deref(),
                dump_after: &dump_after,
                external: external_data,
                verify_each,
            })
        }
        Command::Recipe { prune, passes, checkpoint, json } => {
            let r = compile::recipe_of(&prune, &passes, checkpoint, checkpoint)?;
            print!("{}", if json { r.to_json() + "\n" } else { r.to_toml() });
            Ok(())
        }
        Command::Verify(args) => verify_cmd::verify(&args),
        #[cfg(feature = "train")]
        Command::Train(args) => train_cmd::train(&args),
        Command::Passes => {
            let registry = recover::registry()?;
            for name in registry.names() {
                println!("{name:24} {}", registry.doc(name).unwrap_or(""));
            }
            Ok(())
        }
    }
}

fn load(path: &Path) -> Result<Model> {
    Ok(load_any(path)?.0)
}

/// Reads a checkpoint folder; names, once, the `config.json` keys ecospac does not know.
fn import_checkpoint(path: &Path) -> Result<ecospac_frontends::HfModel> {
    let hf = ecospac_frontends::import_checkpoint(path)
        .with_context(|| format!("cannot import the checkpoint {}", path.display()))?;
    if !hf.unknown_keys.is_empty() {
        eprintln!(
            "warning: config.json keys ecospac does not know, assumed not to change the computation: {}",
            hf.unknown_keys.join(", ")
        );
    }
    Ok(hf)
}

/// Reads an ONNX file, or a checkpoint folder (then also returns the
/// checkpoint); and what it read, so that no output overwrites it.
fn load_any(path: &Path) -> Result<(Model, Option<Checkpoint>, paths::Inputs)> {
    let _stage = progress::stage(&format!("importing {}", path.display()));
    let mut read = paths::Inputs::default();
    if ecospac_frontends::is_checkpoint(path) {
        let hf = import_checkpoint(path)?;
        read.folder(path);
        for f in &hf.checkpoint.weights.files {
            read.file(f);
        }
        return Ok((hf.model, Some(hf.checkpoint), read));
    }
    if path.is_dir() {
        bail!("{} is a folder without config.json; give an ONNX file or a checkpoint folder", path.display());
    }
    let imported =
        ecospac_frontends::import_file_with_data(path).with_context(|| format!("cannot import {}", path.display()))?;
    read.file(path);
    for f in &imported.data_files {
        read.file(f);
    }
    for d in &imported.ignored {
        eprintln!("warning: {d}; the annotation is ignored, as ONNX Runtime ignores it");
    }
    Ok((imported.model, None, read))
}

fn parse_bindings(bind: &[String]) -> Result<std::collections::HashMap<String, i64>> {
    bind.iter()
        .map(|b| {
            let (k, v) = b.split_once('=').with_context(|| format!("--bind takes name=value, got `{b}`"))?;
            Ok((k.to_string(), v.parse().with_context(|| format!("--bind {k}: `{v}` is not an integer"))?))
        })
        .collect()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp =
        ecospac_backends::onnx::staging_file(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
