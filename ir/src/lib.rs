//! ecospac's typed graph IR.
//!
//! A [`Graph`] holds nodes and values in arenas indexed by [`NodeId`] and
//! [`ValueId`]; ops come from one closed enum, [`Op`], with typed attributes;
//! tensor types carry real and symbolic dimensions ([`Dim`]). [`verify()`]
//! collects every located error; [`text`] prints and parses a readable form.

pub mod attr;
pub mod axes;
pub mod exec;
pub mod graph;
pub mod ids;
pub mod infer;
pub mod op;
mod ops;
pub mod patch;
pub mod staging;
pub mod tensor;
pub mod text;
pub mod ty;
pub mod verify;

pub use attr::{Attr, Attrs};
pub use graph::{CycleError, Graph, Model, Node, OpsetImport, Value};
pub use ids::{Arena, EntityId, NodeId, SymId, ValueId};
pub use op::Op;
pub use patch::Patch;
pub use tensor::{DataLayout, Origin, Storage, Tensor};
pub use ty::{DType, Dim, TensorTy};
pub use verify::{verify, Verified, VerifierError, VerifierErrors};
