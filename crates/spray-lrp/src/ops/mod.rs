//! Recognition and backward emission of every op on the relevance path, one file per family
//! (see [`table`]): each family file holds its `classify` (is this node supported, and how) and
//! its `backward` (the ONNX nodes that carry relevance from the node's output to its inputs)
//! side by side, with its tests.

pub(crate) mod attention;
pub(crate) mod elementwise;
pub(crate) mod layout;
pub(crate) mod linear;
pub(crate) mod pooling;
pub mod table;

use std::collections::HashMap;

use spray_onnx::{attr, NodeExt, NodeProto, Tensor};

use crate::builder::Builder;
use crate::composite::LayerKind;
use crate::graph::GraphFacts;
use crate::rules::Rule;
use table::OpFamily;

/// How the compiler handles one relevance-path node.
#[derive(Debug, Clone)]
pub(crate) enum Treatment {
    Linear(Box<linear::LinearLayer>),
    /// Folded into a linear layer (a BatchNormalization or bias Add); relevance is handled there.
    Merged,
    Elementwise(elementwise::ElementwiseStep),
    Layout(layout::LayoutStep),
    /// The one op with several relevance-carrying outputs (its family is layout): the outputs'
    /// relevance is concatenated back along `axis`.
    Split {
        input: String,
        axis: i64,
    },
    Pooling(pooling::PoolingStep),
    Attention(attention::AttentionStep),
}

/// A node's treatment, its layer kind, and the nodes it absorbs (merged into it).
pub(crate) type Classified = (Treatment, LayerKind, Vec<usize>);

/// The node being classified, with the helpers every family needs.
pub(crate) struct NodeView<'a, 'g> {
    pub facts: &'a GraphFacts<'g>,
    pub index: usize,
    pub node: &'g NodeProto,
    /// The node's inputs that depend on the image, in input order.
    pub data: Vec<&'g str>,
}

impl<'a, 'g> NodeView<'a, 'g> {
    fn new(facts: &'a GraphFacts<'g>, index: usize) -> Self {
        let node = &facts.graph.node[index];
        let data = node
            .input
            .iter()
            .filter(|n| facts.is_data(n))
            .map(String::as_str)
            .collect();
        NodeView {
            facts,
            index,
            node,
            data,
        }
    }

    pub fn op(&self) -> &'g str {
        self.node.op_type.as_str()
    }

    pub fn first_data(&self) -> Result<String, String> {
        self.data
            .first()
            .map(|s| s.to_string())
            .ok_or_else(|| "no data input".to_string())
    }

    /// Linear layers, activations and most layout ops take one activation, as their first input.
    pub fn only_first_input_is_data(&self) -> Result<(), String> {
        let op = self.op();
        if self.data.len() == 1
            && self.node.input.first().map(String::as_str) == self.data.first().copied()
        {
            Ok(())
        } else if self.data.len() >= 2 && op == "Gemm" {
            Err(format!(
                "{op} of two activations: spray has an LRP rule for MatMul of two activations \
                 (attention), not for {op}"
            ))
        } else {
            Err(format!(
                "{op} is supported only with the activation as its first input"
            ))
        }
    }
}

/// Classify relevance-path node `index` through its family (the op table decides which).
pub(crate) fn classify(facts: &GraphFacts<'_>, index: usize) -> Result<Classified, String> {
    let view = NodeView::new(facts, index);
    if let Some(layer_norm) = elementwise::classify_decomposed_layer_norm(&view) {
        return Ok(layer_norm);
    }
    if let Some(signal) = facts.normalised_signal(view.node) {
        // x − mean, x / σ, x · γ/σ + (β − mean·γ/σ): the statistic is held constant.
        return Ok((
            Treatment::Elementwise(elementwise::ElementwiseStep::PassThrough {
                input: signal.to_owned(),
            }),
            LayerKind::Normalization,
            vec![],
        ));
    }
    match table::family(view.op()) {
        // A MatMul of two activations is attention's product, not a layer with weights.
        Some(OpFamily::Linear) if view.op() == "MatMul" && view.data.len() == 2 => {
            attention::classify(&view)
        }
        Some(OpFamily::Attention) => attention::classify(&view),
        Some(OpFamily::Linear) => linear::classify(&view),
        Some(OpFamily::Elementwise) => elementwise::classify(&view),
        Some(OpFamily::Layout) => layout::classify(&view),
        Some(OpFamily::Pooling) => pooling::classify(&view),
        Some(OpFamily::OutputOnly) => Err(format!(
            "{} is supported only as the model's last op",
            view.op()
        )),
        Some(OpFamily::Shape | OpFamily::Support) | None => {
            Err("no LRP treatment for this op".into())
        }
    }
}

/// What the backward pass needs while it walks the graph in reverse: the builder that collects
/// the new nodes, the graph facts, and the relevance each tensor has received so far (several
/// consumers contribute terms that are summed when the producer is reached).
pub(crate) struct Backward<'a, 'g> {
    pub b: Builder,
    pub facts: &'a GraphFacts<'g>,
    relevance: HashMap<String, Vec<String>>,
}

impl<'a, 'g> Backward<'a, 'g> {
    pub fn new(b: Builder, facts: &'a GraphFacts<'g>) -> Self {
        Backward {
            b,
            facts,
            relevance: HashMap::new(),
        }
    }

    /// Record one relevance term for `tensor`.
    pub fn send(&mut self, tensor: String, r: String) {
        self.relevance.entry(tensor).or_default().push(r);
    }

    /// The total relevance `tensor` received (its terms summed), or `None` if it received none.
    pub fn take(&mut self, tensor: &str) -> Option<String> {
        let terms = self.relevance.remove(tensor)?;
        self.b.sum(&terms)
    }

    /// Emit the backward step of one node: its output relevance goes to its data inputs.
    pub fn step(&mut self, node: &NodeProto, treatment: &Treatment, rule: Option<&Rule>) {
        let rule = rule.cloned().unwrap_or(Rule::Pass);
        // Every other op carries relevance from one output: the sum of what it received.
        let out_name = match treatment {
            Treatment::Merged | Treatment::Split { .. } => None,
            Treatment::Linear(layer) => Some(layer.output.as_str()),
            Treatment::Elementwise(elementwise::ElementwiseStep::LayerNorm { output, .. }) => {
                Some(output.as_str())
            }
            _ => Some(node.output[0].as_str()),
        };
        let r = match out_name {
            Some(name) => match self.take(name) {
                Some(r) => Some(r),
                None => return,
            },
            None => None,
        };
        let sent = match (treatment, r) {
            (Treatment::Merged, _) => vec![],
            (Treatment::Split { input, axis }, _) => {
                layout::split_backward(self, node, input, *axis)
            }
            (Treatment::Linear(layer), Some(r)) => linear::backward(self, layer, &rule, &r),
            (Treatment::Elementwise(step), Some(r)) => {
                elementwise::backward(self, node, step, &rule, r)
            }
            (Treatment::Layout(step), Some(r)) => layout::backward(self, node, step, r),
            (Treatment::Pooling(step), Some(r)) => pooling::backward(self, node, step, &rule, &r),
            (Treatment::Attention(step), Some(r)) => {
                attention::backward(self, node, step, &rule, &r)
            }
            (_, None) => vec![],
        };
        for (tensor, r) in sent {
            self.send(tensor, r);
        }
    }
}

/// A stable key for a node: its name, or its first output when unnamed.
pub(crate) fn node_key(node: &NodeProto) -> String {
    if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    }
}

pub(crate) fn check_auto_pad(node: &NodeProto) -> Result<(), String> {
    match node.attr_string("auto_pad").as_deref() {
        None | Some("NOTSET") | Some("VALID") | Some("") => Ok(()),
        Some(other) => Err(format!("auto_pad={other} (re-export with explicit pads)")),
    }
}

/// R / stab(z) for proportional rules (norm, epsilon); R itself for the gradient.
pub(crate) fn proportional(b: &mut Builder, r: &str, z: &str, rule: &Rule) -> String {
    match rule {
        Rule::Norm { stabilizer } => b.divide_stabilized(r, z, *stabilizer),
        Rule::Epsilon { epsilon } => b.divide_stabilized(r, z, *epsilon),
        _ => r.to_owned(),
    }
}

/// x ⊙ s, the input times the backward signal (the gradient rule keeps s alone).
pub(crate) fn times_input(b: &mut Builder, rule: &Rule, input: &str, s: &str) -> String {
    match rule {
        Rule::Gradient => s.to_owned(),
        _ => b.op("Mul", &[input, s], vec![]),
    }
}

/// Relevance `r` added onto a zero tensor shaped like `input` at the flat positions `indices`
/// (same shape as `r`).
pub(crate) fn scatter_add_like(b: &mut Builder, r: &str, indices: &str, input: &str) -> String {
    let flat = b.ints(&[-1]);
    let r_flat = b.op("Reshape", &[r, &flat], vec![]);
    let idx_flat = b.op("Reshape", &[indices, &flat], vec![]);
    let size = b.op("Size", &[input], vec![]);
    let size1 = b.op("Reshape", &[&size, &flat], vec![]);
    let zeros = b.filled(&size1, Tensor::f32(vec![1], vec![0.0]));
    let scattered = b.op(
        "ScatterElements",
        &[&zeros, &idx_flat, &r_flat],
        vec![attr::int("axis", 0), attr::string("reduction", "add")],
    );
    b.reshape_like(&scattered, input)
}

/// With a stride that does not divide the padded extent, the last windows stop short of the end
/// padding, and ConvTranspose's end cropping would cut real input positions instead of padding.
/// So crop only the start padding here and let [`Builder::fit_spatial`] crop or zero-pad the end
/// to the input's extent.
pub(crate) fn crop_start_only(a: spray_onnx::AttributeProto) -> spray_onnx::AttributeProto {
    if a.name != "pads" {
        return a;
    }
    let half = a.ints.len() / 2;
    let pads: Vec<i64> = a.ints[..half]
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0, half))
        .collect();
    attr::ints("pads", &pads)
}

/// One-node graphs for the family tests: `x` (the image) feeds the node under test.
#[cfg(test)]
pub(crate) mod testing {
    use spray_onnx::{data_type, value_info, AttributeProto, GraphProto, NodeProto, Tensor};

    use super::{classify, Classified};
    use crate::graph::GraphFacts;

    /// A constant input of the node under test.
    pub enum Input {
        /// The image `x`.
        X,
        F32(Vec<i64>, Vec<f32>),
        I64(Vec<i64>, Vec<i64>),
    }

    /// Classify one `op` node reading `inputs`, with `x` of shape `x_dims`.
    pub fn classify_one(
        op: &str,
        x_dims: &[i64],
        inputs: Vec<Input>,
        attribute: Vec<AttributeProto>,
    ) -> Result<Classified, String> {
        let mut graph = GraphProto {
            input: vec![value_info(
                "x",
                data_type::FLOAT,
                &x_dims.iter().map(|d| Ok(*d)).collect::<Vec<_>>(),
            )],
            ..Default::default()
        };
        let mut names = Vec::new();
        for (i, input) in inputs.into_iter().enumerate() {
            let name = format!("c{i}");
            match input {
                Input::X => {
                    names.push("x".to_owned());
                    continue;
                }
                Input::F32(dims, v) => graph.initializer.push(Tensor::f32(dims, v).to_proto(&name)),
                Input::I64(dims, v) => graph.initializer.push(Tensor::i64(dims, v).to_proto(&name)),
            }
            names.push(name);
        }
        let outputs = if op == "Split" {
            vec!["y", "y2"]
        } else {
            vec!["y"]
        };
        graph.node.push(NodeProto {
            op_type: op.to_owned(),
            name: format!("node/{op}"),
            input: names,
            output: outputs.into_iter().map(str::to_owned).collect(),
            attribute,
            ..Default::default()
        });
        let facts = GraphFacts::new(&graph, "x");
        classify(&facts, 0)
    }
}

#[cfg(test)]
mod tests {
    use spray_onnx::attr;

    use super::table::{OpFamily, OPS};
    use super::testing::{classify_one, Input};
    use crate::composite::LayerKind;

    /// A node of `op` that the compiler supports, as a user's model would have it.
    fn example(op: &str) -> (Vec<i64>, Vec<Input>, Vec<spray_onnx::AttributeProto>) {
        use Input::{F32, I64, X};
        let image = vec![1, 4, 4, 4];
        let ones = |n: usize| vec![1.0; n];
        match op {
            "Conv" => (
                image,
                vec![X, F32(vec![2, 4, 1, 1], ones(8))],
                vec![attr::ints("kernel_shape", &[1, 1])],
            ),
            "Gemm" => (
                vec![1, 4],
                vec![X, F32(vec![3, 4], ones(12))],
                vec![attr::int("transB", 1)],
            ),
            "MatMul" => (vec![1, 4], vec![X, F32(vec![4, 3], ones(12))], vec![]),
            "Einsum" => (
                vec![1, 3, 3],
                vec![X, X],
                vec![attr::string("equation", "bij,bjk->bik")],
            ),
            "PRelu" => (image, vec![X, F32(vec![1], vec![0.1])], vec![]),
            "BatchNormalization" => (
                image,
                vec![
                    X,
                    F32(vec![4], ones(4)),
                    F32(vec![4], ones(4)),
                    F32(vec![4], ones(4)),
                    F32(vec![4], ones(4)),
                ],
                vec![],
            ),
            "LayerNormalization" => (image, vec![X, F32(vec![4], ones(4))], vec![]),
            "LRN" => (image, vec![X], vec![attr::int("size", 3)]),
            "Cast" => (image, vec![X], vec![attr::int("to", 1)]),
            "Add" | "Sub" | "Mul" | "Div" => (image, vec![X, F32(vec![1], vec![2.0])], vec![]),
            "Sum" => (image, vec![X, X], vec![]),
            "Reshape" => (image, vec![X, I64(vec![2], vec![1, -1])], vec![]),
            "Squeeze" => (vec![1, 4, 1, 1], vec![X, I64(vec![1], vec![3])], vec![]),
            "Unsqueeze" => (image, vec![X, I64(vec![1], vec![0])], vec![]),
            "Transpose" => (image, vec![X], vec![attr::ints("perm", &[0, 2, 3, 1])]),
            "Concat" => (image, vec![X, X], vec![attr::int("axis", 1)]),
            "Split" => (image, vec![X], vec![attr::int("axis", 1)]),
            "Pad" => (
                image,
                vec![X, I64(vec![8], vec![0, 0, 1, 1, 0, 0, 1, 1])],
                vec![],
            ),
            "Slice" => (
                image,
                vec![X, I64(vec![1], vec![1]), I64(vec![1], vec![3])],
                vec![],
            ),
            "Gather" => (
                image,
                vec![X, I64(vec![2], vec![0, 2])],
                vec![attr::int("axis", 1)],
            ),
            "GatherElements" => (vec![1, 2], vec![X, I64(vec![1, 2], vec![1, 0])], vec![]),
            "Tile" => (image, vec![X, I64(vec![4], vec![1, 1, 2, 2])], vec![]),
            "Expand" => (
                vec![1, 4, 1, 1],
                vec![X, I64(vec![4], vec![1, 4, 2, 2])],
                vec![],
            ),
            "MaxPool" | "AveragePool" => {
                (image, vec![X], vec![attr::ints("kernel_shape", &[2, 2])])
            }
            "ReduceMean" => (image, vec![X], vec![attr::ints("axes", &[2, 3])]),
            _ => (image, vec![X], vec![]),
        }
    }

    #[test]
    fn every_relevance_op_in_the_table_classifies() {
        for info in OPS.iter().filter(|i| i.family.on_relevance_path()) {
            let (dims, inputs, attrs) = example(info.name);
            let (treatment, kind, absorbed) = classify_one(info.name, &dims, inputs, attrs)
                .unwrap_or_else(|e| panic!("{}: {e}", info.name));
            assert!(absorbed.is_empty(), "{}", info.name);
            // The family the table names is the family that handled the op.
            let family = match treatment {
                super::Treatment::Linear(_) => OpFamily::Linear,
                super::Treatment::Elementwise(_) => OpFamily::Elementwise,
                super::Treatment::Layout(_) | super::Treatment::Split { .. } => OpFamily::Layout,
                super::Treatment::Pooling(_) => OpFamily::Pooling,
                super::Treatment::Attention(_) => OpFamily::Attention,
                super::Treatment::Merged => panic!("{}: merged on its own", info.name),
            };
            assert_eq!(family, info.family, "{}", info.name);
            assert_eq!(
                matches!(kind, LayerKind::Conv | LayerKind::Dense),
                info.family == OpFamily::Linear,
                "{}",
                info.name
            );
        }
    }

    #[test]
    fn ops_off_the_relevance_path_are_refused_by_name() {
        for op in ["Exp", "Abs", "Shape", "Where", "NonMaxSuppression"] {
            let err = classify_one(op, &[1, 4], vec![Input::X], vec![]).unwrap_err();
            assert_eq!(err, "no LRP treatment for this op", "{op}");
        }
        let err = classify_one("LogSoftmax", &[1, 4], vec![Input::X], vec![]).unwrap_err();
        assert!(err.contains("only as the model's last op"), "{err}");
    }
}
