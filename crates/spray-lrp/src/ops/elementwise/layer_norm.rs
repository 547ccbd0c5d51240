//! LayerNorm: recognising one written out in primitive ops, and the backward step of the
//! rule that holds σ constant.
//!
//! Why the recognition: torch below opset 17 (and other exporters) write `nn.LayerNorm` as
//! `ReduceMean → Sub → Pow 2 → ReduceMean → Add ε → Sqrt → Div → Mul γ → Add β`. The relevance
//! of a model must not depend on how it was exported, and the default LayerNorm rule
//! ([`crate::LayerNormRule::Linear`]) needs the whole normalisation: its centring is a linear
//! map of the input, which the statistic machinery (mean and σ held constant) would treat as a
//! shift. The forward nodes stay as they are; the plan treats the chain as one step.

use spray_onnx::{attr, data_type, GraphProto, NodeExt, NodeProto, Tensor};

use crate::builder::Builder;
use crate::ops::{proportional, times_input};
use crate::rules::Rule;

/// A LayerNorm written out in primitive ops, found from its centring `Sub`.
pub(crate) struct Decomposed {
    /// The on-path nodes after the Sub (Div by σ, Mul by γ, the bias Add if any).
    pub absorbed: Vec<usize>,
    pub input: String,
    pub scale: String,
    pub output: String,
    pub axis: i64,
    pub epsilon: f32,
}

/// The decomposed LayerNorm whose centring `Sub(x, ReduceMean(x))` is node `sub`, if the whole
/// pattern is there, over the last axis, with a constant scale.
pub(crate) fn decomposed_at(graph: &GraphProto, sub: usize) -> Option<Decomposed> {
    let node = &graph.node[sub];
    if !is(node, "Sub") {
        return None;
    }
    let mean = graph
        .node
        .iter()
        .position(|n| n.output.first() == node.input.get(1))?;
    let found = match_at(graph, mean)?;
    (found.nodes[1] == sub).then(|| Decomposed {
        // ReduceMean, Sub, Pow, ReduceMean, Add ε, Sqrt are off the path or the Sub itself.
        absorbed: found.nodes[6..].to_vec(),
        input: found.input,
        scale: found.scale,
        output: found.output,
        axis: found.axis,
        epsilon: found.epsilon,
    })
}

/// LayerNorm's backward step on the `[outer, normalised]` view (`Flatten` at `axis` works for
/// any rank and for negative axes): with `S = R / stab(y)` and `T = γ ⊙ S / σ`,
/// `R_x = x ⊙ (T − mean T)`.
pub(crate) fn backward(
    b: &mut Builder,
    rule: &Rule,
    r: &str,
    output: &str,
    (input, scale, axis, epsilon): (&str, &str, i64, f32),
) -> String {
    let flatten = |b: &mut Builder, t: &str| b.op("Flatten", &[t], vec![attr::int("axis", axis)]);
    let x = flatten(b, input);
    let y = flatten(b, output);
    let r = flatten(b, r);
    let last = b.ints(&[1]);
    // mean over the normalised axis: ReduceSum / count (ReduceMean's axes moved from an
    // attribute to an input at opset 18; ReduceSum's did at 13, before any opset spray writes).
    let count = {
        let shape = b.shape(&x);
        let end = b.ints(&[2]);
        let n = b.op("Slice", &[&shape, &last, &end], vec![]);
        b.op(
            "Cast",
            &[&n],
            vec![attr::int("to", data_type::FLOAT as i64)],
        )
    };
    let mean = |b: &mut Builder, t: &str| {
        let total = b.op("ReduceSum", &[t, &last], vec![attr::int("keepdims", 1)]);
        b.op("Div", &[&total, &count], vec![])
    };
    let mu = mean(b, &x);
    let centred = b.op("Sub", &[&x, &mu], vec![]);
    let squared = b.op("Mul", &[&centred, &centred], vec![]);
    let variance = mean(b, &squared);
    let eps = b.scalar(epsilon);
    let shifted = b.op("Add", &[&variance, &eps], vec![]);
    let sigma = b.op("Sqrt", &[&shifted], vec![]);

    let s = proportional(b, &r, &y, rule);
    let row = b.ints(&[1, -1]);
    let gamma = b.op("Reshape", &[scale, &row], vec![]);
    let scaled = b.op("Mul", &[&s, &gamma], vec![]);
    let t = b.op("Div", &[&scaled, &sigma], vec![]);
    let t_mean = mean(b, &t);
    let u = b.op("Sub", &[&t, &t_mean], vec![]);
    let rx = times_input(b, rule, &x, &u);
    b.reshape_like(&rx, input)
}

struct Found {
    nodes: Vec<usize>,
    input: String,
    scale: String,
    output: String,
    axis: i64,
    epsilon: f32,
}

/// The pattern starting at the first ReduceMean (node `i`), if every link of it is there and no
/// intermediate tensor is read elsewhere.
fn match_at(graph: &GraphProto, i: usize) -> Option<Found> {
    let mean = &graph.node[i];
    if !is(mean, "ReduceMean") {
        return None;
    }
    let x = mean.input.first()?.clone();
    let axes = reduce_axes(graph, mean)?;
    let k = axes.len() as i64;
    // Trailing axes written as negatives: [-k, …, -1].
    let mut sorted = axes.clone();
    sorted.sort_unstable();
    if sorted != (-k..0).collect::<Vec<_>>() || mean.attr_int("keepdims").unwrap_or(1) != 1 {
        return None;
    }
    let centre = only_reader(graph, &mean.output[0])?;
    let c = &graph.node[centre];
    if !is(c, "Sub") || c.input != [x.clone(), mean.output[0].clone()] {
        return None;
    }
    // The centred signal is read twice: squared for the variance, divided by σ.
    let readers = readers_of(graph, &c.output[0]);
    let [r1, r2] = readers.as_slice() else {
        return None;
    };
    let (square, divide) = if is(&graph.node[*r1], "Div") {
        (*r2, *r1)
    } else {
        (*r1, *r2)
    };
    let sq = &graph.node[square];
    let squares = match sq.op_type.as_str() {
        "Pow" => {
            sq.input.first() == Some(&c.output[0])
                && scalar(graph, sq.input.get(1)?).is_some_and(|v| v == 2.0)
        }
        "Mul" => sq.input == [c.output[0].clone(), c.output[0].clone()],
        _ => false,
    };
    if !squares {
        return None;
    }
    let var = only_reader(graph, &sq.output[0])?;
    let v = &graph.node[var];
    if !is(v, "ReduceMean")
        || reduce_axes(graph, v)? != axes
        || v.attr_int("keepdims").unwrap_or(1) != 1
    {
        return None;
    }
    let add_eps = only_reader(graph, &v.output[0])?;
    let e = &graph.node[add_eps];
    let epsilon = other_constant(graph, e, "Add", &v.output[0])?;
    let sqrt = only_reader(graph, &e.output[0])?;
    let s = &graph.node[sqrt];
    if !is(s, "Sqrt") {
        return None;
    }
    let d = &graph.node[divide];
    if d.input != [c.output[0].clone(), s.output[0].clone()]
        || only_reader(graph, &s.output[0])? != divide
    {
        return None;
    }
    // γ: a constant of the normalised shape (LayerNormalization takes no broadcast scale).
    let scale_node = only_reader(graph, &d.output[0])?;
    let m = &graph.node[scale_node];
    if !is(m, "Mul") {
        return None;
    }
    let scale = other_input(m, &d.output[0])?;
    let gamma = constant(graph, &scale)?;
    if k != 1 || gamma.dims.len() != 1 {
        return None;
    }
    let mut nodes = vec![i, centre, square, var, add_eps, sqrt, divide, scale_node];
    let mut output = m.output[0].clone();
    if let [reader] = readers_of(graph, &output).as_slice() {
        let a = &graph.node[*reader];
        if is(a, "Add") {
            if let Some(b) = other_input(a, &output) {
                if constant(graph, &b).is_some_and(|t| t.dims == gamma.dims) {
                    nodes.push(*reader);
                    output = a.output[0].clone();
                }
            }
        }
    }
    if graph.output.iter().any(|o| {
        nodes[..nodes.len() - 1]
            .iter()
            .any(|&n| graph.node[n].output.contains(&o.name))
    }) {
        return None;
    }
    Some(Found {
        nodes,
        input: x,
        scale,
        output,
        axis: -k,
        epsilon,
    })
}

fn is(node: &NodeProto, op: &str) -> bool {
    node.op_type == op && node.domain.is_empty()
}

fn readers_of(graph: &GraphProto, tensor: &str) -> Vec<usize> {
    let mut found = Vec::new();
    for (k, n) in graph.node.iter().enumerate() {
        for input in &n.input {
            if input == tensor {
                found.push(k);
            }
        }
    }
    found
}

/// The one node reading `tensor` (read once, and not a graph output).
fn only_reader(graph: &GraphProto, tensor: &str) -> Option<usize> {
    if graph.output.iter().any(|o| o.name == tensor) {
        return None;
    }
    match readers_of(graph, tensor).as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

fn other_input(node: &NodeProto, known: &str) -> Option<String> {
    match node.input.as_slice() {
        [a, b] if a == known => Some(b.clone()),
        [a, b] if b == known => Some(a.clone()),
        _ => None,
    }
}

/// For `op(known, c)` or `op(c, known)` with `c` a scalar constant: its value.
fn other_constant(graph: &GraphProto, node: &NodeProto, op: &str, known: &str) -> Option<f32> {
    if !is(node, op) {
        return None;
    }
    scalar(graph, &other_input(node, known)?)
}

fn scalar(graph: &GraphProto, name: &str) -> Option<f32> {
    let t = constant(graph, name)?;
    match t.as_f32()? {
        [v] => Some(*v),
        _ => None,
    }
}

/// A float or integer constant by name: an initializer or a Constant node's value.
fn constant(graph: &GraphProto, name: &str) -> Option<Tensor> {
    if let Some(t) = graph.initializer.iter().find(|t| t.name == name) {
        return Tensor::from_proto(t).ok();
    }
    let node = graph
        .node
        .iter()
        .find(|n| is(n, "Constant") && n.output.first().map(String::as_str) == Some(name))?;
    Tensor::from_proto(node.attr_tensor("value")?).ok()
}

/// A ReduceMean's axes: the attribute (opset ≤ 17) or the constant second input (18).
fn reduce_axes(graph: &GraphProto, node: &NodeProto) -> Option<Vec<i64>> {
    if let Some(axes) = node.attr_ints("axes") {
        return Some(axes.to_vec());
    }
    let t = constant(graph, node.input.get(1)?)?;
    t.as_i64().map(<[i64]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(
        op: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<spray_onnx::AttributeProto>,
    ) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: format!("n/{output}"),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute,
            ..Default::default()
        }
    }

    /// torch's opset-16 export of `nn.LayerNorm(4)`: nine nodes.
    fn torch_layer_norm(bias: bool) -> GraphProto {
        let axes = || vec![attr::ints("axes", &[-1])];
        let mut g = GraphProto {
            node: vec![
                node("ReduceMean", &["x"], "mean", axes()),
                node("Sub", &["x", "mean"], "centred", vec![]),
                node("Pow", &["centred", "two"], "squared", vec![]),
                node("ReduceMean", &["squared"], "var", axes()),
                node("Add", &["var", "eps"], "shifted", vec![]),
                node("Sqrt", &["shifted"], "sigma", vec![]),
                node("Div", &["centred", "sigma"], "normed", vec![]),
                node("Mul", &["normed", "gamma"], "scaled", vec![]),
            ],
            initializer: vec![
                Tensor::f32(vec![], vec![2.0]).to_proto("two"),
                Tensor::f32(vec![], vec![1e-5]).to_proto("eps"),
                Tensor::f32(vec![4], vec![1.0; 4]).to_proto("gamma"),
                Tensor::f32(vec![4], vec![0.0; 4]).to_proto("beta"),
            ],
            ..Default::default()
        };
        if bias {
            g.node.push(node("Add", &["scaled", "beta"], "y", vec![]));
        }
        g
    }

    #[test]
    fn torch_decomposition_is_one_layer_norm_found_at_its_centring() {
        let g = torch_layer_norm(true);
        assert!(decomposed_at(&g, 0).is_none(), "found at the Sub only");
        let found = decomposed_at(&g, 1).unwrap();
        assert_eq!(found.absorbed, vec![6, 7, 8]);
        assert_eq!((found.input.as_str(), found.output.as_str()), ("x", "y"));
        assert_eq!((found.axis, found.epsilon), (-1, 1e-5));
        let no_bias = decomposed_at(&torch_layer_norm(false), 1).unwrap();
        assert_eq!(
            (no_bias.absorbed, no_bias.output.as_str()),
            (vec![6, 7], "scaled")
        );
    }

    #[test]
    fn a_chain_read_elsewhere_or_over_other_axes_is_not_a_layer_norm() {
        let mut g = torch_layer_norm(true);
        g.node.push(node("Relu", &["normed"], "elsewhere", vec![]));
        assert!(decomposed_at(&g, 1).is_none());
        let mut g = torch_layer_norm(true);
        g.node[0].attribute = vec![attr::ints("axes", &[1])];
        assert!(decomposed_at(&g, 1).is_none());
    }
}
