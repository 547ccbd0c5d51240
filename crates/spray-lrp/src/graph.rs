//! Read-only analysis of an ONNX graph: producers, consumers, constants, and which tensors
//! carry relevance.

use std::collections::{HashMap, HashSet};

use spray_onnx::{GraphProto, NodeExt, NodeProto, Tensor};

use crate::fold::Value;
use crate::ops::table::{self, OpFamily, SignRule, StatisticRole};

/// How a tensor depends on the input, for [`GraphFacts::is_statistic`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dependence {
    /// Does not depend on the input at all.
    Constant,
    /// Elementwise on some activation (e.g. `x`, `x − mean`).
    Raw,
    /// Only through reductions, with elementwise arithmetic around them (`mean`, `1/√(var + ε)`).
    Statistic,
}

/// Facts about a graph needed by the compiler.
pub(crate) struct GraphFacts<'g> {
    pub graph: &'g GraphProto,
    pub producer: HashMap<&'g str, usize>,
    pub consumers: HashMap<&'g str, Vec<usize>>,
    /// Initializers and outputs of `Constant` nodes, by tensor name (decoded lazily).
    constant_protos: HashMap<&'g str, ConstantSource<'g>>,
    /// Tensors whose values depend on the model input.
    pub data: HashSet<&'g str>,
    /// Data tensors known to be non-negative (outputs of ReLU and what only moves them).
    pub nonnegative: HashSet<&'g str>,
    /// Data tensors that are statistics of activations (see [`GraphFacts::is_statistic`]).
    statistics: HashSet<&'g str>,
    pub graph_outputs: HashSet<&'g str>,
}

enum ConstantSource<'g> {
    Initializer(&'g spray_onnx::TensorProto),
    ConstantNode(&'g NodeProto),
}

impl<'g> GraphFacts<'g> {
    pub fn new(graph: &'g GraphProto, input: &str) -> Self {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for out in &node.output {
                if !out.is_empty() {
                    producer.insert(out.as_str(), i);
                }
            }
            for inp in &node.input {
                if !inp.is_empty() {
                    consumers.entry(inp.as_str()).or_default().push(i);
                }
            }
        }
        let mut constant_protos = HashMap::new();
        for init in &graph.initializer {
            // An initializer that is also a graph input may be overridden at run time:
            // only the designated image input is treated as data, so keep it constant unless it
            // is that input.
            if init.name != input {
                constant_protos.insert(init.name.as_str(), ConstantSource::Initializer(init));
            }
        }
        for node in &graph.node {
            if node.op_type == "Constant" && node.domain.is_empty() {
                if let Some(out) = node.output.first() {
                    constant_protos.insert(out.as_str(), ConstantSource::ConstantNode(node));
                }
            }
        }

        let mut data: HashSet<&str> = HashSet::new();
        data.insert(
            graph
                .input
                .iter()
                .find(|v| v.name == input)
                .map(|v| v.name.as_str())
                .unwrap_or(""),
        );
        let mut nonnegative: HashSet<&str> = HashSet::new();
        for node in &graph.node {
            let takes_data = node.input.iter().any(|i| data.contains(i.as_str()));
            // Shape ops describe a tensor's shape, not its values: relevance never flows through
            // them even though their input depends on the image.
            if !takes_data || table::family(&node.op_type) == Some(OpFamily::Shape) {
                continue;
            }
            for out in &node.output {
                if !out.is_empty() {
                    data.insert(out.as_str());
                }
            }
            let data_inputs_nonneg = node
                .input
                .iter()
                .filter(|i| data.contains(i.as_str()))
                .all(|i| nonnegative.contains(i.as_str()));
            let nonneg = match table::sign(&node.op_type) {
                SignRule::NonNegative => true,
                SignRule::KeepsNonNegative => data_inputs_nonneg,
                SignRule::Any => false,
            };
            if nonneg {
                if let Some(out) = node.output.first() {
                    nonnegative.insert(out.as_str());
                }
            }
        }
        let graph_outputs = graph.output.iter().map(|v| v.name.as_str()).collect();
        let statistics = statistics(graph, &data);
        GraphFacts {
            graph,
            producer,
            consumers,
            constant_protos,
            data,
            nonnegative,
            statistics,
            graph_outputs,
        }
    }

    pub fn is_data(&self, name: &str) -> bool {
        self.data.contains(name)
    }

    /// Decode a constant tensor: an initializer or a `Constant` output. Constants the
    /// exporter computed with other ops (`MatMul(x, Transpose(W))`, pad amounts, shape
    /// arithmetic) are initializers by now: `fold` turned them into ones before planning.
    pub fn constant(&self, name: &str) -> Option<Tensor> {
        match self.constant_protos.get(name)? {
            ConstantSource::Initializer(t) => Tensor::from_proto(t).ok(),
            ConstantSource::ConstantNode(node) => {
                if let Some(t) = node.attr_tensor("value") {
                    return Tensor::from_proto(t).ok();
                }
                if let Some(a) = node.attr("value_float") {
                    return Some(Tensor::f32(vec![], vec![a.f]));
                }
                if let Some(a) = node.attr("value_floats") {
                    return Some(Tensor::f32(vec![a.floats.len() as i64], a.floats.clone()));
                }
                if let Some(a) = node.attr("value_int") {
                    return Some(Tensor::i64(vec![], vec![a.i]));
                }
                if let Some(a) = node.attr("value_ints") {
                    return Some(Tensor::i64(vec![a.ints.len() as i64], a.ints.clone()));
                }
                None
            }
        }
    }

    /// A constant's dimensions, without decoding its values.
    pub fn constant_dims(&self, name: &str) -> Option<Vec<i64>> {
        match self.constant_protos.get(name)? {
            ConstantSource::Initializer(t) => Some(t.dims.clone()),
            ConstantSource::ConstantNode(node) => match node.attr_tensor("value") {
                Some(t) => Some(t.dims.clone()),
                None => self.constant(name).map(|t| t.dims),
            },
        }
    }

    /// The same constant with its element type and bits kept, for folding.
    pub fn constant_value(&self, name: &str) -> Option<Value> {
        match self.constant_protos.get(name)? {
            ConstantSource::Initializer(t) => Value::from_proto(t),
            ConstantSource::ConstantNode(node) => {
                if let Some(t) = node.attr_tensor("value") {
                    return Value::from_proto(t);
                }
                // The scalar and list forms: float32 and int64.
                self.constant(name)
                    .map(|t| Value::from_proto(&t.to_proto(name)))?
            }
        }
    }

    pub fn consumers_of(&self, name: &str) -> &[usize] {
        self.consumers.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The single node consuming `name`, if exactly one does and `name` is not a graph output.
    pub fn sole_consumer(&self, name: &str) -> Option<usize> {
        match self.consumers_of(name) {
            [only] if !self.graph_outputs.contains(name) => Some(*only),
            _ => None,
        }
    }

    /// Whether `t` depends on the input only through reductions followed by elementwise
    /// arithmetic: the mean or the standard deviation of a normalisation written out in
    /// primitive ops (tf2onnx's LayerNorm, torch exports before opset 17, RMSNorm).
    pub fn is_statistic(&self, t: &str) -> bool {
        self.statistics.contains(t)
    }

    /// For an elementwise Add/Sub/Mul/Div of two data tensors where one is a statistic and the
    /// other is not (`x − mean`, `x · γ/σ`, `x·s + (−mean)·s`), the other one: the signal,
    /// which receives all relevance while the statistic is held constant (the rule AttnLRP uses
    /// for LayerNorm).
    pub fn normalised_signal(&self, node: &'g NodeProto) -> Option<&'g str> {
        if !matches!(node.op_type.as_str(), "Add" | "Sub" | "Mul" | "Div") {
            return None;
        }
        let [a, b] = node.input.as_slice() else {
            return None;
        };
        if !(self.is_data(a) && self.is_data(b)) || a == b {
            return None;
        }
        match (self.is_statistic(a), self.is_statistic(b)) {
            (false, true) => Some(a.as_str()),
            (true, false) if node.op_type != "Div" => Some(b.as_str()),
            _ => None,
        }
    }

    /// Nodes whose outputs can influence `target` through data tensors (the relevance path),
    /// as a membership table indexed by node position. Statistics that normalise a signal
    /// are held constant, so the nodes computing them are not on the path.
    pub fn nodes_reaching(&self, target: &str) -> Vec<bool> {
        let mut on_path = vec![false; self.graph.node.len()];
        let mut stack: Vec<&str> = vec![target];
        let mut seen: HashSet<&str> = HashSet::new();
        while let Some(t) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            let Some(&p) = self.producer.get(t) else {
                continue;
            };
            if !self.data.contains(t) {
                continue;
            }
            on_path[p] = true;
            let node = &self.graph.node[p];
            if let Some(signal) = self.normalised_signal(node) {
                stack.push(signal);
                continue;
            }
            for inp in &node.input {
                if self.data.contains(inp.as_str()) {
                    stack.push(inp.as_str());
                }
            }
        }
        on_path
    }
}

/// The data tensors that depend on the input only through reductions and the elementwise
/// arithmetic around them, found in one pass over the (topologically ordered) nodes.
fn statistics<'g>(graph: &'g GraphProto, data: &HashSet<&'g str>) -> HashSet<&'g str> {
    let mut dependence: HashMap<&str, Dependence> = HashMap::new();
    for node in &graph.node {
        let op = node.op_type.as_str();
        let role = table::statistic_role(op);
        let reduction = role == StatisticRole::Reduction;
        let inputs = node.input.iter().filter(|i| !i.is_empty()).map(|i| {
            match (data.contains(i.as_str()), dependence.get(i.as_str())) {
                (false, _) => Dependence::Constant,
                (true, Some(&d)) => d,
                // The model input itself.
                (true, None) => Dependence::Raw,
            }
        });
        let result = if role == StatisticRole::None {
            Dependence::Raw
        } else {
            let inputs: Vec<Dependence> = inputs.collect();
            if inputs.iter().all(|d| *d == Dependence::Constant) {
                Dependence::Constant
            } else if reduction {
                Dependence::Statistic
            } else if inputs.contains(&Dependence::Raw) {
                Dependence::Raw
            } else {
                Dependence::Statistic
            }
        };
        for out in node.output.iter().filter(|o| data.contains(o.as_str())) {
            dependence.insert(out.as_str(), result);
        }
    }
    dependence
        .into_iter()
        .filter(|(_, d)| *d == Dependence::Statistic)
        .map(|(t, _)| t)
        .collect()
}
