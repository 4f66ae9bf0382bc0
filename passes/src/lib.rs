//! ecospac's passes: the coupling analysis, importance, budget allocation,
//! reconstruction and slicing, each a library function and a registered pass
//! of the declarative [`pipeline`].
//!
//! A compile is a [`pipeline::Recipe`]: an ordered list of named passes with
//! typed parameters, validated against the registry ([`pipeline::PASS_NAMES`])
//! before anything runs, and run by a [`pipeline::Pipeline`] that enforces
//! every pass's contract (the facts it requires and ensures), verifies the
//! graph after each pass when asked, and leaves the model untouched when a
//! pass fails.

pub mod cost;
pub mod coupling;
mod fold;
mod infer_shapes;
pub mod pipeline;
pub mod prune;
pub mod synthetic;

pub use fold::{eliminate_dead, fold_shape_constants, hoist_constants};
pub use infer_shapes::infer_shapes;
pub use pipeline::{prepare, run_passes, Changed, PassError, PASS_NAMES};
