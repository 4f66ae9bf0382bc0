//! Named passes over the IR and the manager that runs them.
//!
//! A pipeline is an ordered list of pass names, checked against the registry
//! ([`PASS_NAMES`]) before anything runs; the [`PassManager`] times each pass
//! and, when asked (always in tests and debug builds), runs the verifier after
//! each one and stops at the first pass that leaves the graph broken.

pub mod cost;
pub mod coupling;
mod fold;
mod infer_shapes;
mod manager;
pub mod prune;

pub use fold::{EliminateDeadNodes, FoldShapeConstants, HoistConstants};
pub use infer_shapes::InferShapes;
pub use manager::{pass_by_name, Changed, Pass, PassError, PassManager, PassTiming, PASS_NAMES, PRUNE_PREPARATION};
