//! The compiled model's forward half alone: the nodes the logits output needs, nothing of the
//! relevance walk. Why: a stage that only needs the model's decision (verify scores tens of
//! thousands of perturbed images) should not pay for the backward pass and the modified
//! weights — the forward half is the same nodes and the same weights as in the LRP model, so its
//! logits are the model's logits, at the cost of plain inference.

use std::collections::HashSet;

use spray_onnx::{GraphProto, ModelProto, NodeProto};

use crate::compile::LrpModel;

impl LrpModel {
    /// The model that computes only the logits (`signature.logits`, `float32 [N, K]`) from the
    /// image input: the compiled graph cut to the nodes that output needs, the `target`
    /// input, the relevance and concept outputs, and every initializer only they read,
    /// dropped.
    pub fn forward_model(&self) -> ModelProto {
        let mut model = self.model.clone();
        if let Some(graph) = model.graph.as_mut() {
            keep_only(graph, &self.signature.logits);
        }
        model
    }
}

/// Cut `graph` to what computes `output`: its nodes in their order, and the inputs,
/// initializers and value infos they read.
fn keep_only(graph: &mut GraphProto, output: &str) {
    let mut needed: HashSet<String> = HashSet::from([output.to_owned()]);
    let mut keep = vec![false; graph.node.len()];
    // Nodes are in topological order: walking back, a node is needed once a later needed
    // node (or the output) reads one of its outputs.
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(node.input.iter().filter(|n| !n.is_empty()).cloned());
            needed.extend(subgraph_reads(node));
        }
    }
    let mut kept = keep.iter();
    graph
        .node
        .retain(|_| *kept.next().expect("one flag per node"));
    drop_unread_optional_outputs(graph, &needed);
    let produced: HashSet<&String> = graph.node.iter().flat_map(|n| &n.output).collect();
    let known = |name: &String| needed.contains(name) || produced.contains(name);
    graph.value_info.retain(|v| known(&v.name));
    graph.output.retain(|v| v.name == output);
    graph.input.retain(|v| needed.contains(&v.name));
    graph.initializer.retain(|t| needed.contains(&t.name));
    graph.sparse_initializer.retain(|t| {
        t.values
            .as_ref()
            .is_some_and(|values| needed.contains(&values.name))
    });
}

/// Ops whose outputs after the first are optional in ONNX (the operator specs mark them so):
/// an output of theirs that nothing reads can be left off.
const OPTIONAL_TRAILING_OUTPUTS: [&str; 7] = [
    "MaxPool",
    "Dropout",
    "BatchNormalization",
    "LayerNormalization",
    "LSTM",
    "GRU",
    "RNN",
];

/// Each kept node of an op in [`OPTIONAL_TRAILING_OUTPUTS`] without its trailing outputs
/// that are not `needed` (read by no kept node, and not the graph's output, which the walk
/// starts from). Why: the compiler asks
/// each MaxPool for its winners' indices (the relevance walk routes through them), and a
/// MaxPool with an Indices output is one ONNX Runtime's CPU layout pass (NCHWc) cannot take
/// over — the forward half then reorders its activations around the pool and leaves the
/// residual Add and Relu after it unfused: held-resnet-128's forward half ran at 1.49 ms an
/// image (batch 10, one thread) against the exported model's 0.69 (benches/RESULTS.md).
fn drop_unread_optional_outputs(graph: &mut GraphProto, needed: &HashSet<String>) {
    for node in &mut graph.node {
        if !OPTIONAL_TRAILING_OUTPUTS.contains(&node.op_type.as_str()) {
            continue;
        }
        while node.output.len() > 1 {
            let last = node.output.last().expect("more than one output");
            if needed.contains(last) {
                break;
            }
            node.output.pop();
        }
    }
}

/// The names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing scope, as far
/// as this walk can tell: every input of every node in them.
fn subgraph_reads(node: &NodeProto) -> Vec<String> {
    let mut names = Vec::new();
    for attr in &node.attribute {
        for graph in attr.g.iter().chain(&attr.graphs) {
            for inner in &graph.node {
                names.extend(inner.input.iter().filter(|n| !n.is_empty()).cloned());
                names.extend(subgraph_reads(inner));
            }
        }
    }
    names
}

#[cfg(test)]
pub(crate) mod tests {
    use spray_onnx::{attr, data_type, value_info, Tensor};

    use super::*;
    use crate::{compile, CompileOptions, Composite, CompositeOptions};

    /// x [N, 4] → Gemm(W, b) → Relu → Gemm(W2, b2) → logits [N, 3].
    pub(crate) fn mlp() -> ModelProto {
        let f = |name: &str, dims: Vec<i64>| {
            let n = dims.iter().product::<i64>() as usize;
            let values = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            Tensor::f32(dims, values).to_proto(name)
        };
        let node = |op: &str, inputs: &[&str], output: &str, attrs| NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        };
        let trans = || vec![attr::int("transB", 1)];
        let graph = GraphProto {
            node: vec![
                node("Gemm", &["x", "w1", "b1"], "h", trans()),
                node("Relu", &["h"], "a", vec![]),
                node("Gemm", &["a", "w2", "b2"], "logits", trans()),
            ],
            initializer: vec![
                f("w1", vec![5, 4]),
                f("b1", vec![5]),
                f("w2", vec![3, 5]),
                f("b2", vec![3]),
            ],
            input: vec![value_info("x", data_type::FLOAT, &[Err("N"), Ok(4)])],
            output: vec![value_info("logits", data_type::FLOAT, &[Err("N"), Ok(3)])],
            ..Default::default()
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![spray_onnx::proto::OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(graph),
            ..Default::default()
        }
    }

    /// `model` compiled under ε-z⁺, nothing else asked.
    fn epsilon_plus(model: &ModelProto) -> LrpModel {
        let composite = Composite::builtin("epsilon-plus", &CompositeOptions::default()).unwrap();
        let options = CompileOptions {
            composite,
            input: None,
            concept: Vec::new(),
            constant_evaluator: None,
        };
        compile(model, &options).unwrap()
    }

    #[test]
    fn the_forward_half_reads_only_the_image_and_writes_only_the_logits() {
        let lrp = epsilon_plus(&mlp());
        let forward = lrp.forward_model();
        let graph = forward.graph.as_ref().unwrap();
        let names = |v: &[spray_onnx::ValueInfoProto]| -> Vec<String> {
            v.iter().map(|v| v.name.clone()).collect()
        };
        assert_eq!(
            names(&graph.input),
            std::slice::from_ref(&lrp.signature.input)
        );
        assert_eq!(
            names(&graph.output),
            std::slice::from_ref(&lrp.signature.logits)
        );
        let full = lrp.model.graph.as_ref().unwrap();
        assert!(graph.node.len() < full.node.len());
        // The forward ops of the original model, nothing of the walk.
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert!(
            ops.iter().filter(|op| **op == "Gemm").count() == 2 && !ops.contains(&"OneHot"),
            "{ops:?}"
        );
        // Every initializer is read, and every read name is an input, an initializer or
        // produced by a kept node.
        let produced: HashSet<&String> = graph.node.iter().flat_map(|n| &n.output).collect();
        let initializers: HashSet<&String> = graph.initializer.iter().map(|t| &t.name).collect();
        for node in &graph.node {
            for name in node.input.iter().filter(|n| !n.is_empty()) {
                assert!(
                    produced.contains(name)
                        || initializers.contains(name)
                        || *name == lrp.signature.input,
                    "{name} is read but not defined"
                );
            }
        }
        for t in &graph.initializer {
            assert!(
                graph.node.iter().any(|n| n.input.contains(&t.name)),
                "{} is never read",
                t.name
            );
        }
        // Cutting again changes nothing.
        let mut again = graph.clone();
        keep_only(&mut again, &lrp.signature.logits);
        assert_eq!(&again, graph);
    }

    /// x [N, 1, 4, 4] → Conv 1×1 (2 channels) → MaxPool 2×2 → Flatten → Gemm → logits [N, 3].
    fn pooled_cnn() -> ModelProto {
        let f = |name: &str, dims: Vec<i64>| {
            let n = dims.iter().product::<i64>() as usize;
            let values = (0..n).map(|i| (i as f32 * 0.53).cos()).collect();
            Tensor::f32(dims, values).to_proto(name)
        };
        let node = |op: &str, inputs: &[&str], output: &str, attribute| NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute,
            ..Default::default()
        };
        let mut model = mlp();
        model.graph = Some(GraphProto {
            node: vec![
                node("Conv", &["x", "k", "kb"], "c", vec![]),
                node(
                    "MaxPool",
                    &["c"],
                    "p",
                    vec![
                        attr::ints("kernel_shape", &[2, 2]),
                        attr::ints("strides", &[2, 2]),
                    ],
                ),
                node("Flatten", &["p"], "flat", vec![]),
                node(
                    "Gemm",
                    &["flat", "w", "b"],
                    "logits",
                    vec![attr::int("transB", 1)],
                ),
            ],
            initializer: vec![
                f("k", vec![2, 1, 1, 1]),
                f("kb", vec![2]),
                f("w", vec![3, 8]),
                f("b", vec![3]),
            ],
            input: vec![value_info(
                "x",
                data_type::FLOAT,
                &[Err("N"), Ok(1), Ok(4), Ok(4)],
            )],
            output: vec![value_info("logits", data_type::FLOAT, &[Err("N"), Ok(3)])],
            ..Default::default()
        });
        model
    }

    /// The relevance walk reads each MaxPool's indices; the forward half computes the pool
    /// without them (the form ONNX Runtime's layout pass takes over).
    #[test]
    fn the_forward_half_asks_no_maxpool_for_its_indices() {
        let lrp = epsilon_plus(&pooled_cnn());
        let outputs = |model: &ModelProto| -> Vec<usize> {
            let graph = model.graph.as_ref().unwrap();
            graph
                .node
                .iter()
                .filter(|n| n.op_type == "MaxPool")
                .map(|n| n.output.len())
                .collect()
        };
        assert_eq!(outputs(&lrp.model), [2]);
        let forward = lrp.forward_model();
        assert_eq!(outputs(&forward), [1]);
        let graph = forward.graph.as_ref().unwrap();
        let produced: HashSet<&String> = graph.node.iter().flat_map(|n| &n.output).collect();
        assert!(graph
            .value_info
            .iter()
            .all(|v| produced.contains(&v.name) || v.name == lrp.signature.input));
    }

    /// Only an optional output that nothing reads is left off: one a kept node reads stays,
    /// and an op whose outputs are all required keeps every one.
    #[test]
    fn only_unread_optional_outputs_are_left_off() {
        let node = |op: &str, inputs: &[&str], outputs: &[&str]| NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let mut graph = GraphProto {
            node: vec![
                node("MaxPool", &["x"], &["p", "pi"]),
                node("MaxPool", &["x"], &["q", "qi"]),
                node("Split", &["x"], &["s0", "s1"]),
                node("Concat", &["p", "qi", "s0"], &["y"]),
            ],
            ..Default::default()
        };
        let needed: HashSet<String> = ["x", "p", "qi", "s0", "y"].map(String::from).into();
        drop_unread_optional_outputs(&mut graph, &needed);
        let outputs: Vec<Vec<String>> = graph.node.iter().map(|n| n.output.clone()).collect();
        assert_eq!(outputs[0], ["p"]);
        assert_eq!(outputs[1], ["q", "qi"]);
        assert_eq!(outputs[2], ["s0", "s1"]);
    }
}
