//! Free a batch dimension fixed at export, so the explainer can batch.
//!
//! Why: `torch.onnx.export` without `dynamic_axes` (and the dynamo exporter without
//! `dynamic_shapes`) fixes the input's first dimension to the example's batch size, and writes
//! every reshape of the activations with that number in front (`x.reshape(B, -1, C)` becomes
//! the constant target `[1, -1, 96]`). The input's dimension becomes the symbol `N`, and each
//! such target stops naming the old batch size: `-1` where the rest is known, or `0` (copy the
//! input's first dimension) where another dimension is already inferred.

use std::collections::BTreeMap;

use spray_onnx::{GraphProto, NodeExt, Tensor, TensorProto};

/// Frees the first dimension of graph input `input` when it is fixed, and rewrites the Reshape
/// targets that repeat it. Returns whether anything changed.
pub(crate) fn relax_fixed_batch(graph: &mut GraphProto, input: &str) -> bool {
    let Some(info) = graph.input.iter_mut().find(|v| v.name == input) else {
        return false;
    };
    let Some(dim0) = info
        .r#type
        .as_mut()
        .and_then(|t| t.tensor_type.as_mut())
        .and_then(|t| t.shape.as_mut())
        .and_then(|s| s.dim.first_mut())
    else {
        return false;
    };
    let Some(fixed) = dim0.dim_value else {
        return false;
    };
    dim0.dim_value = None;
    dim0.dim_param = Some("N".into());
    for out in &mut graph.output {
        if let Some(d) = out
            .r#type
            .as_mut()
            .and_then(|t| t.tensor_type.as_mut())
            .and_then(|t| t.shape.as_mut())
            .and_then(|s| s.dim.first_mut())
        {
            if d.dim_value == Some(fixed) {
                d.dim_value = None;
                d.dim_param = Some("N".into());
            }
        }
    }
    // Intermediate shapes recorded at export would now contradict the free batch dimension.
    graph.value_info.clear();
    let mut readers: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        if n.op_type == "Reshape" && n.input.len() > 1 {
            readers.entry(n.input[1].clone()).or_default().push(i);
        }
    }
    for (name, nodes) in readers {
        let allow_zero = nodes
            .iter()
            .any(|&i| graph.node[i].attr_int("allowzero").unwrap_or(0) != 0);
        let Some(proto) = shape_constant(graph, &name) else {
            continue;
        };
        match rewrite_batch(proto, fixed, allow_zero) {
            Rewrite::CopyDim => {
                // `0` copies only with allowzero off; with it on, `0` is a literal zero and ONNX
                // Runtime refuses it beside a `-1`. No other zero is in the target (checked).
                for i in nodes {
                    graph.node[i].attribute.retain(|a| a.name != "allowzero");
                }
            }
            Rewrite::Inferred | Rewrite::Unchanged => {}
        }
    }
    true
}

/// The constant (initializer or Constant node) named `name`, to rewrite in place.
fn shape_constant<'g>(graph: &'g mut GraphProto, name: &str) -> Option<&'g mut TensorProto> {
    if let Some(pos) = graph.initializer.iter().position(|t| t.name == name) {
        return graph.initializer.get_mut(pos);
    }
    graph
        .node
        .iter_mut()
        .find(|n| n.op_type == "Constant" && n.output.first().map(String::as_str) == Some(name))?
        .attribute
        .iter_mut()
        .find(|a| a.name == "value")
        .and_then(|a| a.t.as_mut())
}

/// What became of a Reshape target's leading batch size.
#[derive(Debug, PartialEq, Eq)]
enum Rewrite {
    /// Not a target starting with the fixed batch size, or one that cannot be rewritten.
    Unchanged,
    /// The batch size became `-1`.
    Inferred,
    /// The batch size became `0` (copy the input's), another dimension being `-1`.
    CopyDim,
}

fn rewrite_batch(proto: &mut TensorProto, fixed: i64, allow_zero: bool) -> Rewrite {
    let Ok(t) = Tensor::from_proto(proto) else {
        return Rewrite::Unchanged;
    };
    let Some(values) = t.as_i64() else {
        return Rewrite::Unchanged;
    };
    if values.first() != Some(&fixed) {
        return Rewrite::Unchanged;
    }
    let mut v = values.to_vec();
    let rewrite = if v[1..].contains(&-1) {
        // A literal zero elsewhere (an empty tensor) would turn into "copy" without allowzero.
        if allow_zero && v[1..].contains(&0) {
            return Rewrite::Unchanged;
        }
        v[0] = 0;
        Rewrite::CopyDim
    } else {
        v[0] = -1;
        Rewrite::Inferred
    };
    let name = proto.name.clone();
    *proto = Tensor::i64(t.dims.clone(), v).to_proto(&name);
    rewrite
}

#[cfg(test)]
mod tests {
    use spray_onnx::{attr, data_type, value_info, NodeProto};

    use super::*;

    /// x [1, 3, 4, 4] → Reshape(target, allowzero) → y.
    fn graph(target: Vec<i64>, allow_zero: Option<i64>) -> GraphProto {
        let mut reshape = NodeProto {
            op_type: "Reshape".into(),
            name: "reshape".into(),
            input: vec!["x".into(), "target".into()],
            output: vec!["y".into()],
            ..Default::default()
        };
        if let Some(z) = allow_zero {
            reshape.attribute.push(attr::int("allowzero", z));
        }
        GraphProto {
            node: vec![reshape],
            initializer: vec![Tensor::i64(vec![target.len() as i64], target).to_proto("target")],
            input: vec![value_info(
                "x",
                data_type::FLOAT,
                &[Ok(1), Ok(3), Ok(4), Ok(4)],
            )],
            ..Default::default()
        }
    }

    fn target(graph: &GraphProto) -> Vec<i64> {
        let t = Tensor::from_proto(&graph.initializer[0]).unwrap();
        t.as_i64().unwrap().to_vec()
    }

    #[test]
    fn a_fixed_batch_size_in_front_of_known_dimensions_is_inferred() {
        let mut g = graph(vec![1, 48], None);
        assert!(relax_fixed_batch(&mut g, "x"));
        assert_eq!(target(&g), vec![-1, 48]);
        let dim0 = &g.input[0]
            .r#type
            .as_ref()
            .unwrap()
            .tensor_type
            .as_ref()
            .unwrap();
        let dim0 = &dim0.shape.as_ref().unwrap().dim[0];
        assert_eq!(dim0.dim_param.as_deref(), Some("N"));
        assert_eq!(dim0.dim_value, None);
    }

    #[test]
    fn beside_an_inferred_dimension_the_batch_size_is_copied() {
        let mut g = graph(vec![1, -1, 16], Some(0));
        assert!(relax_fixed_batch(&mut g, "x"));
        assert_eq!(target(&g), vec![0, -1, 16]);
    }

    /// timm's Swin under the dynamo exporter: `x.reshape(B, -1, C)` with allowzero = 1, where a
    /// copied `0` would be a literal zero and ONNX Runtime refuses the model at session start.
    #[test]
    fn a_copied_batch_size_turns_allowzero_off() {
        let mut g = graph(vec![1, -1, 16], Some(1));
        assert!(relax_fixed_batch(&mut g, "x"));
        assert_eq!(target(&g), vec![0, -1, 16]);
        assert_eq!(g.node[0].attr_int("allowzero"), None);
    }

    #[test]
    fn a_literal_zero_under_allowzero_keeps_the_target() {
        let mut g = graph(vec![1, 0, -1], Some(1));
        assert!(relax_fixed_batch(&mut g, "x"));
        assert_eq!(target(&g), vec![1, 0, -1]);
        assert_eq!(g.node[0].attr_int("allowzero"), Some(1));
    }

    #[test]
    fn a_free_batch_dimension_changes_nothing() {
        let mut g = graph(vec![1, -1, 16], Some(1));
        g.input[0] = value_info("x", data_type::FLOAT, &[Err("N"), Ok(3), Ok(4), Ok(4)]);
        assert!(!relax_fixed_batch(&mut g, "x"));
        assert_eq!(target(&g), vec![1, -1, 16]);
    }
}
