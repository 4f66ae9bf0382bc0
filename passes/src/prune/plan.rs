//! The slice plan: plain data, keyed by the weights it cuts.
//!
//! A [`SlicePlan`] names, per coupling group, the weight axes the group cuts
//! and the indices it keeps, and lists the weights a refit replaces. Applying a
//! plan to a model first [binds](SlicePlan::bind) it to the model's analysis:
//! each group of the plan must name exactly the weight axes of one group of the
//! analysis, with the same sizes, or the plan is refused with the first
//! mismatch named (a plan from another graph never silently cuts other layers).

use crate::coupling::{Coupling, Group};
use ecospac_ir::{DType, EntityId, Model, NodeId, Tensor, ValueId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The format version written into plans.
pub const PLAN_FORMAT: u32 = 2;

/// One weight axis of a group, as a plan names it: the weight, the axis, and
/// the first and last position the group cuts there (a fused projection has
/// several groups on one axis).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct AxisRef {
    /// The initializer's name.
    pub weight: String,
    /// The axis.
    pub axis: usize,
    /// The first and last position the group's indices cover on it.
    pub span: [u32; 2],
}

/// The plan of one group.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupPlan {
    /// The weight axes the group cuts (sorted, each once): its identity.
    pub cuts: Vec<AxisRef>,
    /// Size of the index space.
    pub size: usize,
    /// Size of one block (head); every block keeps the same count.
    pub block: usize,
    /// Kept indices, sorted.
    pub kept: Vec<u32>,
    /// The score of every index (higher: more important), when a criterion chose the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<Vec<f32>>,
}

/// A weight whose values a plan replaces (a refit consumer or its bias),
/// at the shape it has in the sliced model.
#[derive(Clone, Debug, PartialEq)]
pub struct Refit {
    /// The initializer's name in the original model.
    pub weight: String,
    /// The new values, at the sliced shape.
    pub tensor: Tensor,
}

/// What to keep: plain data, written and read as JSON (refit weights beside it
/// as safetensors).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlicePlan {
    /// Per group: what it cuts and keeps.
    pub groups: Vec<GroupPlan>,
    /// Replaced weights.
    pub refits: Vec<Refit>,
}

/// Why a plan does not fit a model, or cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The plan names weights or sizes the model does not have.
    #[error("the plan does not fit this model: {0}")]
    Mismatch(String),
    /// A plan file that cannot be read or written.
    #[error("plan file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

impl GroupPlan {
    /// Removed indices, sorted.
    pub fn removed(&self) -> Vec<u32> {
        let kept: BTreeSet<u32> = self.kept.iter().copied().collect();
        (0..self.size as u32).filter(|i| !kept.contains(i)).collect()
    }
}

/// The identity of an analysis group: its weight axes with the spans it cuts, sorted, each once.
pub fn group_key(model: &Model, g: &Group) -> Vec<AxisRef> {
    let mut k: Vec<AxisRef> = g
        .members
        .iter()
        .map(|m| {
            let all = m.positions.iter().flatten();
            let span = [all.clone().copied().min().unwrap_or(0), all.copied().max().unwrap_or(0)];
            AxisRef { weight: model.graph.value(m.value).name.clone(), axis: m.axis, span }
        })
        .collect();
    k.sort();
    k.dedup();
    k
}

impl SlicePlan {
    /// A plan that keeps `kept[g]` of each group of `coupling`, with optional scores.
    pub fn from_kept(model: &Model, coupling: &Coupling, kept: Vec<Vec<u32>>) -> SlicePlan {
        let groups = coupling
            .groups
            .iter()
            .zip(kept)
            .map(|(g, mut k)| {
                k.sort_unstable();
                k.dedup();
                GroupPlan { cuts: group_key(model, g), size: g.size, block: g.block, kept: k, scores: None }
            })
            .collect();
        SlicePlan { groups, refits: Vec::new() }
    }

    /// A plan that keeps everything.
    pub fn identity(model: &Model, coupling: &Coupling) -> SlicePlan {
        SlicePlan::from_kept(model, coupling, coupling.groups.iter().map(|g| (0..g.size as u32).collect()).collect())
    }

    /// Matches the plan to the analysis of a model: for each analysis group, the
    /// indices the plan removes. Every group of either side must find its
    /// counterpart (same weight axes, same sizes), every block must keep the
    /// same count, and every refit must name a weight of the model.
    pub fn bind(&self, model: &Model, coupling: &Coupling) -> Result<Vec<Vec<u32>>, PlanError> {
        let mut by_key: HashMap<(&[AxisRef], usize, usize), &GroupPlan> = HashMap::new();
        for gp in &self.groups {
            if by_key.insert((&gp.cuts, gp.size, gp.block), gp).is_some() {
                return Err(PlanError::Mismatch(format!(
                    "two groups of the plan cut {} with {} indices",
                    describe(&gp.cuts),
                    gp.size
                )));
            }
        }
        let mut removed = Vec::with_capacity(coupling.groups.len());
        let mut used = 0;
        for g in &coupling.groups {
            let key = group_key(model, g);
            let Some(gp) = by_key.get(&(key.as_slice(), g.size, g.block)) else {
                let similar = self.groups.iter().find(|gp| gp.cuts == key);
                return Err(PlanError::Mismatch(match similar {
                    Some(gp) => format!(
                        "the group cutting {} has {} indices in blocks of {} here, {} in blocks of {} in the plan",
                        describe(&key),
                        g.size,
                        g.block,
                        gp.size,
                        gp.block
                    ),
                    None => format!("no group of the plan cuts {} ({} indices)", describe(&key), g.size),
                }));
            };
            used += 1;
            if gp.kept.is_empty() || gp.kept.iter().any(|&i| i as usize >= g.size) {
                return Err(PlanError::Mismatch(format!(
                    "the group cutting {} keeps nothing or an index out of range",
                    describe(&key)
                )));
            }
            let per_block: Vec<usize> =
                (0..g.blocks()).map(|b| gp.kept.iter().filter(|&&i| i as usize / g.block == b).count()).collect();
            if per_block.windows(2).any(|w| w[0] != w[1]) {
                return Err(PlanError::Mismatch(format!(
                    "the group cutting {}: blocks keep different counts {per_block:?}",
                    describe(&key)
                )));
            }
            removed.push(gp.removed());
        }
        if used != self.groups.len() {
            let extra = self
                .groups
                .iter()
                .find(|gp| {
                    !coupling
                        .groups
                        .iter()
                        .any(|g| group_key(model, g) == gp.cuts && g.size == gp.size && g.block == gp.block)
                })
                .map_or(String::new(), |gp| describe(&gp.cuts));
            return Err(PlanError::Mismatch(format!("the model has no group that cuts {extra}")));
        }
        for r in &self.refits {
            if !model.graph.initializers.iter().any(|&v| model.graph.value(v).name == r.weight) {
                return Err(PlanError::Mismatch(format!("the plan refits `{}`, which the model lacks", r.weight)));
            }
        }
        Ok(removed)
    }

    /// Where [`SlicePlan::save`] puts the refit weights of a plan saved at `path`.
    pub fn weights_path(path: &Path) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".weights.safetensors");
        path.with_file_name(name)
    }

    /// Writes the plan as JSON at `path` and, when it has refits, their tensors
    /// beside it (`<path>.weights.safetensors`); both atomically.
    pub fn save(&self, path: &Path) -> Result<(), PlanError> {
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "plan.json".into());
        let dir = path.parent().unwrap_or(Path::new(""));
        // The refit weights first: the JSON that names them never exists without them.
        for (file, bytes) in self.encode(&name)?.into_iter().rev() {
            write_atomically(&dir.join(file), &bytes)?;
        }
        Ok(())
    }

    /// The plan's files as `(file name, bytes)`: the JSON named `json_name`,
    /// then, when the plan has refits, `<json_name>.weights.safetensors`.
    pub fn encode(&self, json_name: &str) -> Result<Vec<(String, Vec<u8>)>, PlanError> {
        let fail =
            |file: &str, e: &dyn std::fmt::Display| PlanError::File { path: file.into(), message: e.to_string() };
        let sidecar = format!("{json_name}.weights.safetensors");
        let mut files = Vec::new();
        let mut refits = Vec::new();
        if !self.refits.is_empty() {
            let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = self
                .refits
                .iter()
                .map(|r| {
                    let dims: Vec<usize> = r.tensor.dims.iter().map(|&d| d.max(0) as usize).collect();
                    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, dims, r.tensor.bytes())
                        .map_err(|e| fail(&sidecar, &e))?;
                    Ok((r.weight.clone(), view))
                })
                .collect::<Result<_, PlanError>>()?;
            files.push((sidecar.clone(), safetensors::serialize(views, None).map_err(|e| fail(&sidecar, &e))?));
            refits =
                self.refits.iter().map(|r| serde_json::json!({"weight": r.weight, "dims": r.tensor.dims})).collect();
        }
        let doc = serde_json::json!({
            "format": PLAN_FORMAT,
            "groups": self.groups,
            "refits": refits,
            "refit_file": if self.refits.is_empty() { None } else { Some(&sidecar) },
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| fail(json_name, &e))?;
        files.insert(0, (json_name.to_string(), text.into_bytes()));
        Ok(files)
    }

    /// Reads a plan written by [`SlicePlan::save`].
    pub fn load(path: &Path) -> Result<SlicePlan, PlanError> {
        let file_err = |p: &Path, m: String| PlanError::File { path: p.to_path_buf(), message: m };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))?;
        let doc: PlanFile =
            serde_json::from_str(&text).map_err(|e| file_err(path, format!("not a slice plan: {e}")))?;
        if doc.format != PLAN_FORMAT {
            return Err(file_err(path, format!("plan format {} (this ecospac reads {PLAN_FORMAT})", doc.format)));
        }
        let mut refits = Vec::new();
        if let Some(name) = &doc.refit_file {
            if Path::new(name).file_name() != Some(std::ffi::OsStr::new(name)) {
                return Err(file_err(path, format!("refit_file `{name}` is not a file name beside the plan")));
            }
            let sidecar = path.parent().unwrap_or(Path::new(".")).join(name);
            let bytes = std::fs::read(&sidecar).map_err(|e| file_err(&sidecar, e.to_string()))?;
            let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| file_err(&sidecar, e.to_string()))?;
            for r in &doc.refits {
                let view = st.tensor(&r.weight).map_err(|e| file_err(&sidecar, format!("`{}`: {e}", r.weight)))?;
                let dims: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
                if view.dtype() != safetensors::Dtype::F32 || dims != r.dims {
                    return Err(file_err(&sidecar, format!("`{}` is not f32{:?}", r.weight, r.dims)));
                }
                refits.push(Refit {
                    weight: r.weight.clone(),
                    tensor: Tensor::from_bytes(DType::F32, dims, view.data().to_vec()),
                });
            }
        } else if !doc.refits.is_empty() {
            return Err(file_err(path, "refits are listed but no refit_file is named".into()));
        }
        Ok(SlicePlan { groups: doc.groups, refits })
    }
}

/// Plans without refit weights embed in other JSON documents (training
/// checkpoints list the plans they applied); a plan with refits is refused
/// there, since its weights belong beside it ([`SlicePlan::save`]).
impl serde::Serialize for SlicePlan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.refits.is_empty() {
            return Err(serde::ser::Error::custom(
                "a plan with refit weights is written with SlicePlan::save (its weights go beside it)",
            ));
        }
        serde::Serialize::serialize(&serde_json::json!({ "groups": self.groups }), s)
    }
}

impl<'de> serde::Deserialize<'de> for SlicePlan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SlicePlan, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Groups {
            groups: Vec<GroupPlan>,
        }
        let g = Groups::deserialize(d)?;
        Ok(SlicePlan { groups: g.groups, refits: Vec::new() })
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    format: u32,
    groups: Vec<GroupPlan>,
    #[serde(default)]
    refits: Vec<RefitEntry>,
    #[serde(default)]
    refit_file: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RefitEntry {
    weight: String,
    dims: Vec<i64>,
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PlanError> {
    use std::io::Write;
    let fail = |e: &dyn std::fmt::Display| PlanError::File { path: path.to_path_buf(), message: e.to_string() };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = ecospac_ir::staging::file(dir).map_err(|e| fail(&e))?;
    tmp.write_all(bytes).map_err(|e| fail(&e))?;
    tmp.as_file().sync_all().map_err(|e| fail(&e))?;
    tmp.persist(path).map_err(|e| fail(&e.error))?;
    Ok(())
}

fn describe(cuts: &[AxisRef]) -> String {
    let names: Vec<String> = cuts
        .iter()
        .take(3)
        .map(|c| format!("`{}` axis {} [{}..={}]", c.weight, c.axis, c.span[0], c.span[1]))
        .collect();
    let more = if cuts.len() > 3 { format!(" and {} more", cuts.len() - 3) } else { String::new() };
    format!("{}{more}", names.join(", "))
}

/// Removed positions per tensor the slicer changes ([`Member::storage`](crate::coupling::Member::storage)), per
/// axis: the union over every group that cuts the tensor.
pub type Cuts = BTreeMap<(ValueId, Option<(NodeId, usize)>), BTreeMap<usize, BTreeSet<u32>>>;

/// The positions `removed` (per group, from [`SlicePlan::bind`]) take out of each weight.
pub fn cuts(coupling: &Coupling, removed: &[Vec<u32>]) -> Cuts {
    let mut cuts: Cuts = BTreeMap::new();
    for (g, r) in coupling.groups.iter().zip(removed) {
        for m in &g.members {
            let set = cuts.entry(m.storage()).or_default().entry(m.axis).or_default();
            for &i in r {
                if let Some(p) = m.positions.get(i as usize) {
                    set.extend(p.iter().copied());
                }
            }
        }
    }
    cuts
}

/// Parameters of the weights the groups cut, before and after removing
/// `removed`, counted exactly (positions several groups remove count once;
/// a tensor shared by several uses counts once, a use with its own copy counts
/// on its own).
pub fn prunable_parameters(model: &Model, coupling: &Coupling, removed: &[Vec<u32>]) -> (u64, u64) {
    prunable_parameters_in(model, coupling, removed, None)
}

/// [`prunable_parameters`] over the weights of the groups in `scope` only.
pub fn prunable_parameters_in(
    model: &Model,
    coupling: &Coupling,
    removed: &[Vec<u32>],
    scope: Option<&[bool]>,
) -> (u64, u64) {
    let (mut before, mut after) = (0u64, 0u64);
    let mut all = Cuts::new();
    for (gi, (g, r)) in coupling.groups.iter().zip(removed).enumerate() {
        if scope.is_some_and(|s| !s.get(gi).copied().unwrap_or(false)) {
            continue;
        }
        for m in &g.members {
            let set = all.entry(m.storage()).or_default().entry(m.axis).or_default();
            for &i in r {
                if let Some(p) = m.positions.get(i as usize) {
                    set.extend(p.iter().copied());
                }
            }
        }
    }
    let tables = model.graph.tables();
    for ((value, _), axes) in all {
        // Tables (cos/sin caches) are cut with the weights but are not parameters.
        if tables.get(value.index()).copied().unwrap_or(false) {
            continue;
        }
        let Some(t) = model.graph.value(value).constant.as_ref() else { continue };
        let dims: Vec<u64> = t.dims.iter().map(|&d| d.max(0) as u64).collect();
        before = before.saturating_add(dims.iter().product());
        let kept: u64 = dims
            .iter()
            .enumerate()
            .map(|(a, &d)| d.saturating_sub(axes.get(&a).map_or(0, |s| s.len() as u64)))
            .product();
        after = after.saturating_add(kept);
    }
    (before, after)
}
