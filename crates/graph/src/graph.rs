//! Declaring a graph: nodes, edges, limits; checking the declaration; drawing it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::run::NodeContext;

/// Where every run begins: the source of the entry edge.
pub const START: &str = "__start__";
/// Where a run ends: a target like any node's.
pub const END: &str = "__end__";

/// One step of a graph. It may change the state, emit events through `ctx`, and either let
/// the run go on along its edges or pause it until outside input arrives.
///
/// A node may run more than once for the same step: when the process died while it ran,
/// recovery runs it again, with the same `ctx.step()`. Whatever it does outside the state
/// must be safe to repeat under the same (run, step), e.g. by an idempotency key.
#[async_trait]
pub trait Node<S, E>: Send + Sync {
    async fn run(&self, state: &mut S, ctx: &NodeContext<E>) -> Result<Flow, NodeError>;
}

/// What a node tells the runtime when it is done.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    /// Follow the node's edge.
    Continue,
    /// Save the run as waiting for this input; the node runs again when it is given.
    Interrupt(Interrupt),
}

/// A pause in a run, waiting for input from outside (an approval, an answer). The id is
/// what the input must name to be accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interrupt {
    pub id: String,
    /// The node that paused, which runs again on resume.
    pub node: String,
    /// What is awaited, e.g. `approval`: for whoever routes the input.
    pub kind: String,
    pub payload: Value,
}

/// A node's failure, carrying whatever error the node had.
pub struct NodeError(Box<dyn std::error::Error + Send + Sync>);

impl NodeError {
    pub fn msg(message: impl Into<String>) -> Self {
        NodeError(message.into().into())
    }

    /// The node's own error, if it was an `T`.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl<T: std::error::Error + Send + Sync + 'static> From<T> for NodeError {
    fn from(error: T) -> Self {
        NodeError(Box::new(error))
    }
}

impl fmt::Debug for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Chooses the next node from the state.
pub(crate) type Decide<S> = Arc<dyn Fn(&S) -> String + Send + Sync>;

/// How a run leaves a node.
pub(crate) enum Edge<S> {
    To(String),
    /// To whichever of `targets` `decide` names.
    Branch {
        targets: Vec<String>,
        decide: Decide<S>,
    },
}

impl<S> Edge<S> {
    fn targets(&self) -> Vec<&str> {
        match self {
            Edge::To(to) => vec![to.as_str()],
            Edge::Branch { targets, .. } => targets.iter().map(String::as_str).collect(),
        }
    }
}

pub(crate) struct NodeEntry<S, E> {
    pub(crate) node: Arc<dyn Node<S, E>>,
    pub(crate) timeout: Option<Duration>,
}

/// Why a declaration is not a graph. Each names the node or edge at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BuildError {
    #[error("node `{0}` is declared twice")]
    DuplicateNode(String),
    #[error("`{0}` is not a valid node name: expected letters, digits and `_`, not starting with `__`")]
    BadName(String),
    #[error("no entry: declare an edge from START")]
    NoEntry,
    #[error("the edge from `{from}` goes to `{to}`, which is not a node")]
    UnknownTarget { from: String, to: String },
    #[error("an edge leaves `{0}`, which is not a node")]
    UnknownSource(String),
    #[error("`{0}` has two ways out: give it one edge or one branch")]
    TwoWaysOut(String),
    #[error("`{0}` has no way out: give it an edge or a branch (to END to finish)")]
    NoWayOut(String),
    #[error("`{0}` cannot be reached from START")]
    Unreachable(String),
    #[error("the branch from `{0}` has no targets")]
    EmptyBranch(String),
    #[error("a timeout is set for `{0}`, which is not a node")]
    TimeoutForUnknown(String),
    #[error("the step-limit fallback `{0}` is not a node")]
    UnknownFallback(String),
    #[error("the step limit must be at least 1")]
    ZeroStepLimit,
}

/// A graph under construction. Mistakes are collected and reported by [`build`](Self::build).
pub struct GraphBuilder<S, E> {
    nodes: Vec<(String, Arc<dyn Node<S, E>>)>,
    edges: Vec<(String, Edge<S>)>,
    timeouts: Vec<(String, Duration)>,
    default_timeout: Duration,
    step_limit: u32,
    on_step_limit: Option<String>,
}

impl<S: Send + Sync + 'static, E: Send + 'static> Default for GraphBuilder<S, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Send + Sync + 'static, E: Send + 'static> GraphBuilder<S, E> {
    /// A graph with no nodes, a step limit of 25 and 30 s per node.
    pub fn new() -> Self {
        GraphBuilder {
            nodes: Vec::new(),
            edges: Vec::new(),
            timeouts: Vec::new(),
            default_timeout: Duration::from_secs(30),
            step_limit: 25,
            on_step_limit: None,
        }
    }

    pub fn node(self, name: &str, node: impl Node<S, E> + 'static) -> Self {
        self.shared_node(name, Arc::new(node))
    }

    pub fn shared_node(mut self, name: &str, node: Arc<dyn Node<S, E>>) -> Self {
        self.nodes.push((name.to_owned(), node));
        self
    }

    /// A static edge; `from` may be [`START`], `to` may be [`END`].
    pub fn edge(mut self, from: &str, to: &str) -> Self {
        self.edges.push((from.to_owned(), Edge::To(to.to_owned())));
        self
    }

    /// A conditional edge: after `from`, to the target `decide` names, which must be one of
    /// `targets` (a run that names another stops with an error).
    pub fn branch(
        mut self,
        from: &str,
        targets: &[&str],
        decide: impl Fn(&S) -> String + Send + Sync + 'static,
    ) -> Self {
        let targets = targets.iter().map(|t| (*t).to_owned()).collect();
        self.edges.push((from.to_owned(), Edge::Branch { targets, decide: Arc::new(decide) }));
        self
    }

    /// How long any node may take unless given its own timeout.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    pub fn timeout(mut self, node: &str, timeout: Duration) -> Self {
        self.timeouts.push((node.to_owned(), timeout));
        self
    }

    /// At most `limit` node runs per graph run (loops included).
    pub fn step_limit(mut self, limit: u32) -> Self {
        self.step_limit = limit;
        self
    }

    /// Past the step limit, go to `node` instead of failing; from there the run has as many
    /// steps again to finish, then fails.
    pub fn on_step_limit(mut self, node: &str) -> Self {
        self.on_step_limit = Some(node.to_owned());
        self
    }

    pub fn build(self) -> Result<Graph<S, E>, BuildError> {
        if self.step_limit == 0 {
            return Err(BuildError::ZeroStepLimit);
        }
        let mut nodes: HashMap<String, NodeEntry<S, E>> = HashMap::new();
        let mut order = Vec::new();
        for (name, node) in self.nodes {
            if !valid_name(&name) {
                return Err(BuildError::BadName(name));
            }
            if nodes.contains_key(&name) {
                return Err(BuildError::DuplicateNode(name));
            }
            order.push(name.clone());
            nodes.insert(name, NodeEntry { node, timeout: None });
        }
        for (name, timeout) in self.timeouts {
            let entry = nodes.get_mut(&name).ok_or(BuildError::TimeoutForUnknown(name))?;
            entry.timeout = Some(timeout);
        }
        let mut edges: HashMap<String, Edge<S>> = HashMap::new();
        for (from, edge) in self.edges {
            if from != START && !nodes.contains_key(&from) {
                return Err(BuildError::UnknownSource(from));
            }
            if let Edge::Branch { targets, .. } = &edge {
                if targets.is_empty() {
                    return Err(BuildError::EmptyBranch(from));
                }
            }
            for to in edge.targets() {
                if to != END && !nodes.contains_key(to) {
                    return Err(BuildError::UnknownTarget { from, to: to.to_owned() });
                }
            }
            if edges.contains_key(&from) {
                return Err(BuildError::TwoWaysOut(from));
            }
            edges.insert(from, edge);
        }
        if !edges.contains_key(START) {
            return Err(BuildError::NoEntry);
        }
        if let Some(name) = order.iter().find(|name| !edges.contains_key(*name)) {
            return Err(BuildError::NoWayOut(name.clone()));
        }
        if let Some(fallback) = &self.on_step_limit {
            if !nodes.contains_key(fallback) {
                return Err(BuildError::UnknownFallback(fallback.clone()));
            }
        }
        let reached = reachable(&edges, self.on_step_limit.as_deref());
        if let Some(name) = order.iter().find(|name| !reached.contains(name.as_str())) {
            return Err(BuildError::Unreachable(name.clone()));
        }
        Ok(Graph {
            nodes,
            order,
            edges,
            default_timeout: self.default_timeout,
            step_limit: self.step_limit,
            on_step_limit: self.on_step_limit,
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with("__") && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Every node a run can reach from START (or by the step-limit fallback).
fn reachable<'a, S>(edges: &'a HashMap<String, Edge<S>>, fallback: Option<&'a str>) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<&str> = VecDeque::from([START]);
    queue.extend(fallback);
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name) {
            continue;
        }
        if let Some(edge) = edges.get(name) {
            queue.extend(edge.targets());
        }
    }
    seen
}

/// A checked graph, ready to run any number of times at once.
pub struct Graph<S, E> {
    pub(crate) nodes: HashMap<String, NodeEntry<S, E>>,
    /// Declaration order, for drawing.
    order: Vec<String>,
    pub(crate) edges: HashMap<String, Edge<S>>,
    pub(crate) default_timeout: Duration,
    pub(crate) step_limit: u32,
    pub(crate) on_step_limit: Option<String>,
}

impl<S, E> Graph<S, E> {
    /// The nodes in the order they were declared.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// The graph as a Mermaid flowchart: static edges solid, branches dotted, the
    /// step-limit fallback as a dotted edge from START labelled `step limit`.
    pub fn mermaid(&self) -> String {
        // Mermaid ids are positional (`n0`, `n1`, …) so no node name can collide with its
        // keywords (`end`, `graph`, …); the names are the labels.
        let id = |name: &str| match name {
            START => "start".to_owned(),
            END => "stop".to_owned(),
            _ => format!("n{}", self.order.iter().position(|n| n == name).unwrap_or(0)),
        };
        let mut out = String::from("flowchart TD\n    start([start])\n    stop([end])\n");
        for (i, name) in self.order.iter().enumerate() {
            out.push_str(&format!("    n{i}[\"{name}\"]\n"));
        }
        let sources = std::iter::once(START).chain(self.order.iter().map(String::as_str));
        for from in sources {
            match self.edges.get(from) {
                Some(Edge::To(to)) => out.push_str(&format!("    {} --> {}\n", id(from), id(to))),
                Some(Edge::Branch { targets, .. }) => {
                    for to in targets {
                        out.push_str(&format!("    {} -.-> {}\n", id(from), id(to)));
                    }
                }
                None => {}
            }
        }
        if let Some(fallback) = &self.on_step_limit {
            out.push_str(&format!("    start -. step limit .-> {}\n", id(fallback)));
        }
        out
    }

    /// The node after `from` for this state, or an error naming a branch's stray target.
    pub(crate) fn next_after(&self, from: &str, state: &S) -> Result<String, crate::GraphError> {
        match self.edges.get(from) {
            Some(Edge::To(to)) => Ok(to.clone()),
            Some(Edge::Branch { targets, decide }) => {
                let to = decide(state);
                if targets.contains(&to) {
                    Ok(to)
                } else {
                    Err(crate::GraphError::StrayBranch { from: from.to_owned(), to })
                }
            }
            // `build` gave every node and START an edge.
            None => Err(crate::GraphError::StrayBranch { from: from.to_owned(), to: String::new() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Noop;

    #[async_trait]
    impl Node<u32, ()> for Noop {
        async fn run(&self, state: &mut u32, _: &NodeContext<()>) -> Result<Flow, NodeError> {
            *state += 1;
            Ok(Flow::Continue)
        }
    }

    fn loop_graph() -> GraphBuilder<u32, ()> {
        GraphBuilder::new()
            .node("plan", Noop)
            .node("act", Noop)
            .node("end", Noop)
            .edge(START, "plan")
            .branch("plan", &["act", "end"], |n| if *n < 3 { "act".into() } else { "end".into() })
            .edge("act", "plan")
            .edge("end", END)
    }

    #[test]
    fn a_declaration_with_a_loop_and_a_branch_builds() {
        let graph = loop_graph().build().unwrap();
        assert_eq!(graph.node_names().collect::<Vec<_>>(), ["plan", "act", "end"]);
    }

    #[test]
    fn mistakes_in_a_declaration_are_named() {
        let missing = loop_graph().edge("ghost", "plan").build().err();
        assert_eq!(missing, Some(BuildError::UnknownSource("ghost".into())));
        let stray = GraphBuilder::<u32, ()>::new().node("a", Noop).edge(START, "a").edge("a", "b").build().err();
        assert_eq!(stray, Some(BuildError::UnknownTarget { from: "a".into(), to: "b".into() }));
        let twice = loop_graph().node("act", Noop).build().err();
        assert_eq!(twice, Some(BuildError::DuplicateNode("act".into())));
        let no_exit = GraphBuilder::<u32, ()>::new().node("a", Noop).edge(START, "a").build().err();
        assert_eq!(no_exit, Some(BuildError::NoWayOut("a".into())));
        let two_exits = loop_graph().edge("act", END).build().err();
        assert_eq!(two_exits, Some(BuildError::TwoWaysOut("act".into())));
        let island = loop_graph().node("island", Noop).edge("island", END).build().err();
        assert_eq!(island, Some(BuildError::Unreachable("island".into())));
        let no_entry = GraphBuilder::<u32, ()>::new().node("a", Noop).edge("a", END).build().err();
        assert_eq!(no_entry, Some(BuildError::NoEntry));
        let reserved = loop_graph().node("__end__", Noop).build().err();
        assert_eq!(reserved, Some(BuildError::BadName("__end__".into())));
        let spaced = loop_graph().node("a b", Noop).build().err();
        assert_eq!(spaced, Some(BuildError::BadName("a b".into())));
        let timeout = loop_graph().timeout("nope", Duration::from_secs(1)).build().err();
        assert_eq!(timeout, Some(BuildError::TimeoutForUnknown("nope".into())));
        let fallback = loop_graph().on_step_limit("nope").build().err();
        assert_eq!(fallback, Some(BuildError::UnknownFallback("nope".into())));
        assert_eq!(loop_graph().step_limit(0).build().err(), Some(BuildError::ZeroStepLimit));
        let empty = GraphBuilder::<u32, ()>::new().node("a", Noop).edge(START, "a").branch("a", &[], |_| String::new());
        assert_eq!(empty.build().err(), Some(BuildError::EmptyBranch("a".into())));
    }

    #[test]
    fn the_mermaid_drawing_has_every_node_and_edge_and_survives_keyword_names() {
        let text = loop_graph().on_step_limit("end").build().unwrap().mermaid();
        let expected = "flowchart TD
    start([start])
    stop([end])
    n0[\"plan\"]
    n1[\"act\"]
    n2[\"end\"]
    start --> n0
    n0 -.-> n1
    n0 -.-> n2
    n1 --> n0
    n2 --> stop
    start -. step limit .-> n2
";
        assert_eq!(text, expected);
    }
}
