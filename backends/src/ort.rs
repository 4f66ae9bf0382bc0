//! ONNX Runtime as an [`Executor`]: models are written to a private temporary
//! folder and run there, so the passes that need activations (calibration,
//! refitting) and `ecospac verify` run what the user deploys.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`) from `--ort-lib`,
//! `$ORT_DYLIB_PATH`, or the `.venv` that `scripts/setup.sh` makes.

use crate::onnx::{export_onnx, ExportOptions};
use ecospac_ir::exec::{Batch, ExecError, Executor, Session};
use ecospac_ir::{verify, DType, Model, Tensor};
use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, ValueType};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The ONNX Runtime version whose wheel `scripts/setup.sh` installs.
pub const ORT_VERSION: &str = "1.31.1";

/// The ONNX Runtime library: `explicit`, else `$ORT_DYLIB_PATH`, else the one
/// in a `.venv` beside the working directory or the executable.
pub fn ort_library(explicit: Option<&Path>) -> Result<PathBuf, ExecError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(p));
    }
    let mut roots = vec![PathBuf::from(".")];
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    for root in roots {
        let Ok(dir) = std::fs::read_dir(root.join(".venv/lib")) else { continue };
        for e in dir.flatten() {
            let p = e.path().join(format!("site-packages/onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}"));
            if p.exists() {
                return Ok(p);
            }
        }
    }
    Err(ExecError(
        "ONNX Runtime not found: pass --ort-lib PATH or set ORT_DYLIB_PATH (scripts/setup.sh installs it in .venv)"
            .into(),
    ))
}

fn err(context: &str) -> impl Fn(ort::Error) -> ExecError + '_ {
    move |e| ExecError(format!("{context}: {e}"))
}

/// ONNX Runtime on the CPU.
pub struct OrtExecutor {
    env: &'static ort::environment::Environment,
    threads: usize,
    optimise: bool,
}

/// The process's ONNX Runtime environment (ONNX Runtime allows one per
/// process): loaded from `library` (see [`ort_library`]) on first use.
pub fn environment(library: Option<&Path>) -> Result<&'static ort::environment::Environment, ExecError> {
    static ENV: std::sync::OnceLock<ort::environment::Environment> = std::sync::OnceLock::new();
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let path = ort_library(library)?;
    let env = ort::init_from(&path)
        .map_err(|e| ExecError(format!("cannot load ONNX Runtime from {}: {e}", path.display())))?
        .with_name("ecospac")
        .build()
        .map_err(err("cannot start ONNX Runtime"))?;
    Ok(ENV.get_or_init(|| env))
}

impl OrtExecutor {
    /// Loads the library (see [`environment`]); sessions use `threads` intra-op threads (0: ONNX Runtime's default).
    pub fn new(library: Option<&Path>, threads: usize) -> Result<OrtExecutor, ExecError> {
        Ok(OrtExecutor { env: environment(library)?, threads, optimise: true })
    }

    /// Sessions without ONNX Runtime's graph optimisations: its fusions
    /// (of QDQ patterns, say) change the float rounding, by up to 2e-4
    /// relative on a QDQ BERT; unoptimised, a run computes the graph as written.
    pub fn unoptimised(self) -> OrtExecutor {
        OrtExecutor { optimise: false, ..self }
    }

    /// Opens an ONNX file as a session.
    pub fn open(&self, path: &Path) -> Result<OrtSession, ExecError> {
        let mut builder = ort::session::Session::builder(self.env).map_err(err("session options"))?;
        // Its errors come back as the run's error; it need not print them too.
        builder =
            builder.with_log_level(ort::logging::LogLevel::Fatal).map_err(|e| ExecError(format!("log level: {e}")))?;
        if self.threads > 0 {
            builder = builder.with_intra_threads(self.threads).map_err(|e| ExecError(format!("threads: {e}")))?;
        }
        if !self.optimise {
            builder = builder
                .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Disable)
                .map_err(|e| ExecError(format!("optimisation level: {e}")))?;
        }
        let session = builder
            .commit_from_file(path)
            .map_err(|e| ExecError(format!("ONNX Runtime cannot load {}: {e}", path.display())))?;
        let inputs = session.inputs().iter().map(|i| i.name().to_string()).collect();
        let outputs = session.outputs().iter().map(|o| o.name().to_string()).collect();
        Ok(OrtSession { session, inputs, outputs, _dir: None })
    }
}

impl Executor for OrtExecutor {
    fn load(&self, model: &Model) -> Result<Box<dyn Session + '_>, ExecError> {
        let proof = verify(&model.graph).map_err(|e| ExecError(format!("the model to run does not verify: {e}")))?;
        let dir = tempfile::tempdir().map_err(|e| ExecError(format!("cannot make a temporary folder: {e}")))?;
        let path = dir.path().join("model.onnx");
        export_onnx(model, proof, &path, &ExportOptions::default()).map_err(|e| ExecError(e.to_string()))?;
        let mut s = self.open(&path)?;
        s._dir = Some(dir);
        Ok(Box::new(s))
    }
}

/// An ONNX Runtime session; runs return the model's outputs as IR tensors.
pub struct OrtSession {
    session: ort::session::Session,
    inputs: Vec<String>,
    outputs: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl OrtSession {
    /// The input names of the model.
    pub fn input_names(&self) -> &[String] {
        &self.inputs
    }
    /// The output names of the model, in the order runs return them.
    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }
}

fn ort_value(name: &str, t: &Tensor) -> Result<DynValue, ExecError> {
    let dims = t.dims.clone();
    let bad = |e: ort::Error| ExecError(format!("input `{name}`: {e}"));
    let b = t.bytes();
    macro_rules! from_le {
        ($ty:ty, $n:expr) => {{
            let v: Vec<$ty> =
                b.chunks_exact($n).map(|c| <$ty>::from_le_bytes(c.try_into().unwrap_or([0; $n]))).collect();
            OrtTensor::from_array((dims, v)).map_err(bad)?.into_dyn()
        }};
    }
    Ok(match t.dtype {
        DType::F32 => from_le!(f32, 4),
        DType::F64 => from_le!(f64, 8),
        DType::F16 => from_le!(half::f16, 2),
        DType::BF16 => from_le!(half::bf16, 2),
        DType::I64 => from_le!(i64, 8),
        DType::I32 => from_le!(i32, 4),
        DType::I8 => from_le!(i8, 1),
        DType::U8 => from_le!(u8, 1),
        DType::Bool => {
            OrtTensor::from_array((dims, b.iter().map(|&x| x != 0).collect::<Vec<bool>>())).map_err(bad)?.into_dyn()
        }
        other => return Err(ExecError(format!("input `{name}`: {other} inputs are not supported"))),
    })
}

fn ir_tensor(name: &str, value: &DynValue) -> Result<Tensor, ExecError> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(ExecError(format!("output `{name}` is not a tensor")));
    };
    macro_rules! to_le {
        ($ty:ty, $dt:expr) => {{
            let (shape, data) = value.try_extract_tensor::<$ty>().map_err(err(name))?;
            let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
            Tensor::from_bytes($dt, shape.to_vec(), bytes)
        }};
    }
    Ok(match ty {
        TensorElementType::Float32 => to_le!(f32, DType::F32),
        TensorElementType::Float64 => to_le!(f64, DType::F64),
        TensorElementType::Float16 => to_le!(half::f16, DType::F16),
        TensorElementType::Bfloat16 => to_le!(half::bf16, DType::BF16),
        TensorElementType::Int64 => to_le!(i64, DType::I64),
        TensorElementType::Int32 => to_le!(i32, DType::I32),
        TensorElementType::Int8 => to_le!(i8, DType::I8),
        TensorElementType::Uint8 => to_le!(u8, DType::U8),
        TensorElementType::Bool => {
            let (shape, data) = value.try_extract_tensor::<bool>().map_err(err(name))?;
            Tensor::from_bytes(DType::Bool, shape.to_vec(), data.iter().map(|&x| x as u8).collect())
        }
        other => return Err(ExecError(format!("output `{name}` is {other:?}, which ecospac cannot read back"))),
    })
}

impl Session for OrtSession {
    fn run(&mut self, feeds: &Batch) -> Result<Vec<Tensor>, ExecError> {
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::new();
        for name in &self.inputs {
            let (_, t) = feeds
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| ExecError(format!("no data for the model input `{name}`")))?;
            values.push((Cow::Owned(name.clone()), ort_value(name, t)?.into()));
        }
        let outputs = self.session.run(values).map_err(err("ONNX Runtime run"))?;
        self.outputs.iter().map(|name| ir_tensor(name, &outputs[name.as_str()])).collect()
    }
}
