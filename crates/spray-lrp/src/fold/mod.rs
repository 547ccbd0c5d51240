//! Constant folding before planning: every tensor that feeds the relevance path without
//! depending on the input's values — an exporter's shape arithmetic, pad and slice amounts,
//! weights computed at run time — is evaluated once and becomes an initializer, so the planner
//! sees constants whatever chain of ops the exporter wrote (torch writes each `F.pad` amount as
//! Constant → ConstantOfShape → Concat → Reshape → Slice → Transpose → Reshape → Cast).
//!
//! A node is constant when it is a standard op (no custom domain, no subgraph, no random
//! output) and all its inputs are constants, or it is `Shape`/`Size` of an activation whose
//! shape the graph fixes (see [`shapes`]: shapes are inferred statically, with the batch
//! dimension symbolic). The ops that only move elements and integer arithmetic are evaluated
//! here ([`eval`]); everything else (floating-point arithmetic above all) goes to a
//! [`ConstantEvaluator`] — ONNX Runtime itself, supplied by spray-engine — so every folded value
//! is the one the runtime would compute and the forward graph's outputs stay bit-identical.
//!
//! Only the constant inputs of relevance-path nodes are replaced; the nodes that computed them
//! are removed once nothing else reads them. A graph with nothing to fold is left untouched.

mod eval;
mod shapes;
mod value;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use spray_onnx::proto::{attribute_type, OperatorSetIdProto};
use spray_onnx::{GraphProto, ModelProto, NodeProto, TensorProto};

use crate::graph::GraphFacts;
use crate::LrpError;
use shapes::{Derived, Dim, Known, Partial, Shape};
pub(crate) use value::Value;

/// Evaluates the part of a model's constant subgraph that the compiler does not evaluate
/// itself. spray-engine implements it with ONNX Runtime, so folded values are exactly what the
/// runtime computes; [`crate::CompileOptions::constant_evaluator`] carries it into `compile`.
pub trait ConstantEvaluator: std::fmt::Debug + Send + Sync {
    /// Run `model` once — a graph without inputs, whose initializers and nodes compute its
    /// outputs — and return every output, in the order of `model.graph.output`.
    fn evaluate(
        &self,
        model: &ModelProto,
    ) -> Result<Vec<TensorProto>, Box<dyn std::error::Error + Send + Sync>>;
}

impl crate::CompileOptions {
    /// These options with `evaluator` folding the constants the compiler does not evaluate
    /// itself.
    pub fn with_constant_evaluator(mut self, evaluator: Arc<dyn ConstantEvaluator>) -> Self {
        self.constant_evaluator = Some(evaluator);
        self
    }
}

/// What folding did to a graph.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Folded {
    /// Tensors that became initializers, in the order their producers ran.
    pub tensors: Vec<String>,
    /// Nodes removed (those that computed them and nothing else).
    pub removed_nodes: usize,
    /// Calls to the evaluator.
    pub evaluator_calls: usize,
}

/// The ops whose outputs are random: never constant, whatever their inputs.
const RANDOM: &[&str] = &[
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
];

/// Fold the constant inputs of the nodes on the relevance path from `input` to `logits`.
pub(crate) fn fold_constants(
    graph: &mut GraphProto,
    opset_import: &[OperatorSetIdProto],
    ir_version: i64,
    input: &str,
    logits: &str,
    evaluator: Option<&dyn ConstantEvaluator>,
) -> Result<Folded, LrpError> {
    let plan = {
        let mut folder = Folder::new(graph, input);
        folder.run(evaluator, opset_import, ir_version)?;
        folder.plan(logits)
    };
    let Some(plan) = plan else {
        return Ok(Folded::default());
    };
    let gone: HashSet<String> = graph
        .node
        .iter()
        .zip(&plan.remove)
        .filter(|(_, r)| **r)
        .flat_map(|(n, _)| n.output.iter().cloned())
        .collect();
    graph.value_info.retain(|v| !gone.contains(&v.name));
    let mut index = 0;
    graph.node.retain(|_| {
        index += 1;
        !plan.remove[index - 1]
    });
    let tensors = plan.initializers.iter().map(|t| t.name.clone()).collect();
    graph.initializer.extend(plan.initializers);
    Ok(Folded {
        tensors,
        removed_nodes: plan.remove.iter().filter(|r| **r).count(),
        evaluator_calls: plan.evaluator_calls,
    })
}

/// The rewrite, decided on the unchanged graph.
struct Plan {
    initializers: Vec<TensorProto>,
    /// Indexed like the graph's nodes.
    remove: Vec<bool>,
    evaluator_calls: usize,
}

struct Folder<'g> {
    graph: &'g GraphProto,
    facts: GraphFacts<'g>,
    /// Constant values: decoded stored constants and computed ones.
    values: HashMap<String, Value>,
    /// Shape vectors with symbolic entries, from `Shape` of activations.
    partials: HashMap<String, Partial>,
    /// Static shapes of activations.
    shapes: HashMap<String, Shape>,
    /// Constant nodes left to the evaluator (not yet evaluated).
    pending: BTreeSet<usize>,
    /// Nodes the evaluator has run (an output it returned that cannot be held, a string,
    /// stays unknown; the node is not sent again).
    evaluated: HashSet<usize>,
    /// Nodes whose outputs are constant (evaluated, pending or derived from static shapes).
    constant_nodes: HashSet<usize>,
    evaluator_calls: usize,
}

impl<'g> Folder<'g> {
    fn new(graph: &'g GraphProto, input: &str) -> Self {
        let facts = GraphFacts::new(graph, input);
        let mut shapes = HashMap::new();
        if let Some(info) = graph.input.iter().find(|v| v.name == input) {
            if let Some(shape) = declared_shape(info) {
                shapes.insert(input.to_owned(), shape);
            }
        }
        Folder {
            graph,
            facts,
            values: HashMap::new(),
            partials: HashMap::new(),
            shapes,
            pending: BTreeSet::new(),
            evaluated: HashSet::new(),
            constant_nodes: HashSet::new(),
            evaluator_calls: 0,
        }
    }

    /// A stored constant (initializer or `Constant` output), decoded once.
    fn stored(&mut self, name: &str) -> bool {
        if self.values.contains_key(name) {
            return true;
        }
        match self.facts.constant_value(name) {
            Some(v) => {
                self.values.insert(name.to_owned(), v);
                true
            }
            None => false,
        }
    }

    /// Propagate values, partial shape vectors and shapes through the graph; with an
    /// evaluator, hand it what is left and propagate again, until nothing changes.
    fn run(
        &mut self,
        evaluator: Option<&dyn ConstantEvaluator>,
        opset_import: &[OperatorSetIdProto],
        ir_version: i64,
    ) -> Result<(), LrpError> {
        loop {
            self.propagate();
            let Some(evaluator) = evaluator else {
                return Ok(());
            };
            let batch = self.pending_batch();
            if batch.is_empty() {
                return Ok(());
            }
            self.evaluate_with(evaluator, &batch, opset_import, ir_version)?;
        }
    }

    /// One pass in topological order.
    fn propagate(&mut self) {
        let graph = self.graph;
        for (i, node) in graph.node.iter().enumerate() {
            if node.op_type == "Constant" && node.domain.is_empty() {
                continue;
            }
            let outputs_known = node
                .output
                .iter()
                .filter(|o| !o.is_empty())
                .all(|o| self.values.contains_key(o.as_str()));
            if (outputs_known && !node.output.is_empty()) || self.evaluated.contains(&i) {
                continue;
            }
            if self.is_constant(node) {
                self.constant_nodes.insert(i);
                let blocked = node
                    .input
                    .iter()
                    .any(|n| !n.is_empty() && !self.values.contains_key(n.as_str()));
                if blocked {
                    self.pending.insert(i);
                    continue;
                }
                let inputs: Vec<Option<&Value>> = node
                    .input
                    .iter()
                    .map(|n| self.values.get(n.as_str()))
                    .collect();
                let outputs =
                    eval::evaluate(node, &inputs).filter(|outs| outs.len() == node.output.len());
                match outputs {
                    Some(outs) => {
                        for (name, v) in node.output.iter().zip(outs) {
                            self.values.insert(name.clone(), v);
                        }
                        self.pending.remove(&i);
                    }
                    None => {
                        self.pending.insert(i);
                    }
                }
                continue;
            }
            self.read_arguments(node);
            let (derived, inferred) = {
                let known: Vec<Known<'_>> = node.input.iter().map(|n| self.known(n)).collect();
                match shapes::derive(node, &known) {
                    Some(d) => (Some(d), Vec::new()),
                    None if node.output.iter().any(|o| self.facts.is_data(o)) => {
                        (None, shapes::infer(node, &known))
                    }
                    None => (None, Vec::new()),
                }
            };
            if let Some(derived) = derived {
                let name = node.output[0].clone();
                self.constant_nodes.insert(i);
                match derived {
                    Derived::Value(v) => {
                        self.values.insert(name, v);
                    }
                    Derived::Partial(p) => {
                        self.partials.insert(name, p);
                    }
                }
            }
            for (name, shape) in node.output.iter().zip(inferred) {
                if let Some(shape) = shape {
                    self.shapes.insert(name.clone(), shape);
                }
            }
        }
    }

    /// Make a node's stored constant inputs known: small ones (arguments such as pads, axes
    /// and shapes) by value, large ones (weights) by their dimensions only.
    fn read_arguments(&mut self, node: &NodeProto) {
        const SMALL: i64 = 1 << 16;
        for name in &node.input {
            if name.is_empty() || self.values.contains_key(name) || self.shapes.contains_key(name) {
                continue;
            }
            if let Some(dims) = self.facts.constant_dims(name) {
                if dims.iter().product::<i64>() <= SMALL {
                    self.stored(name);
                } else {
                    self.shapes.insert(name.clone(), shapes::known_shape(&dims));
                }
            }
        }
    }

    fn known(&self, name: &str) -> Known<'_> {
        if name.is_empty() {
            Known::Nothing
        } else if let Some(v) = self.values.get(name) {
            Known::Value(v)
        } else if let Some(p) = self.partials.get(name) {
            Known::Partial(p)
        } else if let Some(shape) = self.shapes.get(name) {
            Known::Shaped(Some(shape))
        } else if self.facts.is_data(name) {
            Known::Shaped(None)
        } else {
            Known::Nothing
        }
    }

    /// Whether `node` computes constants: a standard, deterministic op without subgraphs whose
    /// inputs are all constant (known, stored, or left to the evaluator).
    fn is_constant(&mut self, node: &NodeProto) -> bool {
        let standard = node.domain.is_empty() || node.domain == "ai.onnx";
        let deterministic = !RANDOM.contains(&node.op_type.as_str());
        let plain = !node.attribute.iter().any(|a| {
            matches!(a.r#type, attribute_type::GRAPH) || a.g.is_some() || !a.graphs.is_empty()
        });
        // Sequences and optionals are not tensors: they cannot become initializers.
        let tensors = !node.op_type.contains("Sequence") && !node.op_type.starts_with("Optional");
        if !(standard && deterministic && plain && tensors) || node.output.is_empty() {
            return false;
        }
        node.input.iter().filter(|n| !n.is_empty()).all(|n| {
            self.stored(n)
                || self
                    .facts
                    .producer
                    .get(n.as_str())
                    .is_some_and(|p| self.pending.contains(p))
        })
    }

    /// The constant tensors that data nodes read (their arguments) and that are not known
    /// yet: what is worth evaluating.
    fn wanted(&self) -> Vec<&'g str> {
        let mut wanted = Vec::new();
        for node in &self.graph.node {
            if !node.output.iter().any(|o| self.facts.is_data(o)) {
                continue;
            }
            for name in &node.input {
                if !name.is_empty()
                    && !self.facts.is_data(name)
                    && !self.values.contains_key(name.as_str())
                {
                    wanted.push(name.as_str());
                }
            }
        }
        wanted
    }

    /// The pending nodes that wanted tensors need, in topological order.
    fn pending_batch(&self) -> Vec<usize> {
        let mut batch = BTreeSet::new();
        let mut stack: Vec<&str> = self.wanted();
        while let Some(name) = stack.pop() {
            let Some(&p) = self.facts.producer.get(name) else {
                continue;
            };
            if !self.pending.contains(&p) || !batch.insert(p) {
                continue;
            }
            stack.extend(self.graph.node[p].input.iter().map(String::as_str));
        }
        batch.into_iter().collect()
    }

    fn evaluate_with(
        &mut self,
        evaluator: &dyn ConstantEvaluator,
        batch: &[usize],
        opset_import: &[OperatorSetIdProto],
        ir_version: i64,
    ) -> Result<(), LrpError> {
        let nodes: Vec<NodeProto> = batch.iter().map(|&i| self.graph.node[i].clone()).collect();
        let produced: HashSet<&str> = nodes
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .collect();
        let mut initializer = Vec::new();
        let mut seen = HashSet::new();
        for name in nodes.iter().flat_map(|n| &n.input) {
            if name.is_empty() || produced.contains(name.as_str()) || !seen.insert(name) {
                continue;
            }
            let value = self.values.get(name.as_str()).ok_or_else(|| {
                LrpError::Model(format!("constant '{name}' is not known before it is used"))
            })?;
            initializer.push(value.to_proto(name));
        }
        let outputs: Vec<String> = nodes
            .iter()
            .flat_map(|n| n.output.iter().filter(|o| !o.is_empty()).cloned())
            .collect();
        let model = ModelProto {
            ir_version,
            opset_import: opset_import.to_vec(),
            producer_name: "spray-lrp constant folding".into(),
            graph: Some(GraphProto {
                name: "constants".into(),
                node: nodes,
                initializer,
                output: outputs
                    .iter()
                    .map(|name| spray_onnx::ValueInfoProto {
                        name: name.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.evaluator_calls += 1;
        let results = evaluator.evaluate(&model).map_err(|e| {
            let ops: BTreeSet<&str> = batch
                .iter()
                .map(|&i| self.graph.node[i].op_type.as_str())
                .collect();
            LrpError::Model(format!(
                "evaluating {} input-independent node(s) ({}) to fold them into constants \
                 failed: {e}",
                batch.len(),
                ops.into_iter().collect::<Vec<_>>().join(", ")
            ))
        })?;
        if results.len() != outputs.len() {
            return Err(LrpError::Model(format!(
                "the constant evaluator returned {} tensors for {} outputs",
                results.len(),
                outputs.len()
            )));
        }
        for (name, proto) in outputs.into_iter().zip(results) {
            // A type the folder cannot hold (a string) stays computed by its node.
            if let Some(v) = Value::from_proto(&proto) {
                self.values.insert(name, v);
            }
        }
        for &i in batch {
            self.pending.remove(&i);
            self.evaluated.insert(i);
        }
        Ok(())
    }

    /// Which tensors become initializers and which nodes go; `None` when nothing changes.
    fn plan(&self, logits: &str) -> Option<Plan> {
        let graph = self.graph;
        let on_path = self.facts.nodes_reaching(logits);
        let mut fold: BTreeSet<usize> = BTreeSet::new();
        for (i, node) in graph.node.iter().enumerate() {
            if !on_path[i] {
                continue;
            }
            for name in &node.input {
                let Some(&p) = self.facts.producer.get(name.as_str()) else {
                    continue;
                };
                let producer = &graph.node[p];
                let stored = producer.op_type == "Constant" && producer.domain.is_empty();
                // A node is folded as a whole: every output it has must be known.
                let whole = producer
                    .output
                    .iter()
                    .all(|o| o.is_empty() || self.values.contains_key(o.as_str()));
                if !stored && self.constant_nodes.contains(&p) && whole {
                    fold.insert(p);
                }
            }
        }
        if fold.is_empty() {
            return None;
        }
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for node in &graph.node {
            for name in node.input.iter().filter(|n| !n.is_empty()) {
                *uses.entry(name.as_str()).or_default() += 1;
            }
        }
        let outputs: HashSet<&str> = graph.output.iter().map(|v| v.name.as_str()).collect();
        let mut remove = vec![false; graph.node.len()];
        let mut initializers = Vec::new();
        for (i, node) in graph.node.iter().enumerate().rev() {
            let folded = fold.contains(&i);
            let used = |n: &String| {
                !n.is_empty()
                    && (uses.get(n.as_str()).copied().unwrap_or(0) > 0
                        || outputs.contains(n.as_str()))
            };
            // A node that only fed removed nodes goes too (constants and shape arithmetic
            // only: anything else the model computes stays, used or not).
            let orphaned = self.constant_nodes.contains(&i)
                || (node.op_type == "Constant" && node.domain.is_empty());
            let now_unused = !node.output.iter().any(used);
            if !(folded || (orphaned && now_unused && self.fed_removed(i, &remove))) {
                continue;
            }
            if folded {
                initializers.push(
                    node.output
                        .iter()
                        .filter(|n| used(n))
                        .map(|name| self.values[name.as_str()].to_proto(name))
                        .collect::<Vec<_>>(),
                );
            }
            remove[i] = true;
            for name in node.input.iter().filter(|n| !n.is_empty()) {
                if let Some(u) = uses.get_mut(name.as_str()) {
                    *u -= 1;
                }
            }
        }
        Some(Plan {
            initializers: initializers.into_iter().rev().flatten().collect(),
            remove,
            evaluator_calls: self.evaluator_calls,
        })
    }

    /// Whether any consumer of node `i`'s outputs was removed (so it was used before).
    fn fed_removed(&self, i: usize, remove: &[bool]) -> bool {
        self.graph.node[i]
            .output
            .iter()
            .flat_map(|o| self.facts.consumers_of(o))
            .any(|&c| remove[c])
    }
}

/// The declared shape of a graph input: numbers where fixed, symbols where named.
fn declared_shape(info: &spray_onnx::ValueInfoProto) -> Option<Shape> {
    let shape = info.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match (d.dim_value, &d.dim_param) {
                (Some(v), _) if v > 0 => Dim::Known(v),
                (_, Some(p)) if !p.is_empty() => Dim::Symbol(p.clone()),
                _ => Dim::Unknown,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
