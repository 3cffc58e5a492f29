//! A state-graph runtime: named async nodes over one typed state, joined by static and
//! conditional edges, run step by step with a checkpoint after every node.
//!
//! - [`GraphBuilder`] declares nodes and edges and [`GraphBuilder::build`] checks them
//!   (every edge lands on a node, every node has a way out, every node is reachable);
//!   [`Graph::mermaid`] draws the result.
//! - [`Graph::start`] runs from the entry node; each node gets the state mutably and a
//!   [`NodeContext`] (run id, step, the value it was resumed with, an event sender). Loops
//!   are bounded by a step limit, and every node by a timeout.
//! - After each node the state and the node to run next are saved through a
//!   [`Checkpointer`] ([`StoreCheckpointer`] keeps them in the Store), so a run whose
//!   process died continues from its last checkpoint with [`Graph::recover`]. A node that
//!   was running when the process died runs again *with the same step number*: side effects
//!   keyed by (run, step) are recognised as repeats by whoever performs them.
//! - A node can pause the run ([`Flow::Interrupt`]) to wait for outside input; the run is
//!   saved as waiting on that interrupt's id, and [`Graph::resume`] with that id (and only
//!   that id) runs the node again with the input.
//!
//! Invariant: knows nothing of customer support. It stores what it is given as JSON and
//! calls nodes; what the state means is the caller's business.

mod checkpoint;
mod graph;
mod run;

pub use checkpoint::{CheckpointError, Checkpointer, MemoryCheckpointer, Saved, StoreCheckpointer};
pub use graph::{BuildError, Flow, Graph, GraphBuilder, Interrupt, Node, NodeError, END, START};
pub use run::{GraphError, GraphEvent, NodeContext, Outcome, Resume, Run};
