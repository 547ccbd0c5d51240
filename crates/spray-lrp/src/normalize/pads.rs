//! A zero Pad in front of a convolution becomes the convolution's own padding.
//!
//! Why: exporters write TF-style "same" padding (timm's `Conv2dSame`, EfficientNet's
//! `Conv2dStaticSamePadding`) as an explicit `Pad` before a `Conv` with no padding. Zero padding
//! is zero padding either way for the forward pass, but not for a rule that replaces the input
//! (♭ spreads over ones, z-box over its bounds): zennit hooks the convolution *module*, whose
//! own forward pads the modified input with zeros, so the padded border carries no relevance.
//! Spray's first layer sees the padded tensor when the Pad is a node of its own; merged into the
//! Conv's `pads`, the modified input is padded with zeros as zennit's is. For rules that do not
//! modify the input (ε, z⁺, αβ) the border contributes zero either way.

use spray_onnx::{attr, GraphProto, NodeExt, Tensor};

/// Merge every zero-constant `Pad` whose only reader is a `Conv` (explicit padding, the Pad
/// padding only spatial axes by non-negative amounts, its amounts constant) into that `Conv`'s
/// `pads`. Runs after constant folding, when exporters' pad arithmetic is an initializer.
pub(crate) fn absorb_zero_pads(graph: &mut GraphProto) {
    let mut i = 0;
    while i < graph.node.len() {
        match absorbable(graph, i) {
            Some((conv, spatial)) => {
                let input = graph.node[i].input[0].clone();
                let node = &mut graph.node[conv];
                let rank = spatial.len() / 2;
                let mut pads = node
                    .attr_ints("pads")
                    .map(<[i64]>::to_vec)
                    .unwrap_or_else(|| vec![0; 2 * rank]);
                for (p, extra) in pads.iter_mut().zip(&spatial) {
                    *p += extra;
                }
                node.attribute.retain(|a| a.name != "pads");
                node.attribute.push(attr::ints("pads", &pads));
                node.input[0] = input;
                let removed = graph.node.remove(i);
                graph
                    .value_info
                    .retain(|v| !removed.output.contains(&v.name));
            }
            None => i += 1,
        }
    }
}

/// The Conv reading node `i` and the pad amounts to add to its `pads` (begins then ends of the
/// spatial axes), when node `i` is a Pad that can go.
fn absorbable(graph: &GraphProto, i: usize) -> Option<(usize, Vec<i64>)> {
    let pad = &graph.node[i];
    if pad.op_type != "Pad" || !pad.domain.is_empty() {
        return None;
    }
    let mode = pad.attr_string("mode").unwrap_or_else(|| "constant".into());
    // A fourth input (`axes`, opset 18) is not written at the opset the compiler works in.
    if mode != "constant" || pad.input.len() > 3 || pad.input.len() < 2 {
        return None;
    }
    let constant = |name: &str| {
        graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| Tensor::from_proto(t).ok())
    };
    if let Some(value) = pad.input.get(2).filter(|n| !n.is_empty()) {
        let zero = constant(value).is_some_and(|t| match t.as_f32() {
            Some(v) => v.iter().all(|x| *x == 0.0),
            None => t.as_i64().is_some_and(|v| v.iter().all(|x| *x == 0)),
        });
        if !zero {
            return None;
        }
    }
    let amounts = constant(&pad.input[1])?.as_i64()?.to_vec();
    let rank = amounts.len() / 2;
    // N and C unpadded, the spatial axes padded outward only.
    if rank < 3 || amounts.len() != 2 * rank {
        return None;
    }
    let (begins, ends) = amounts.split_at(rank);
    if begins[..2] != [0, 0] || ends[..2] != [0, 0] || amounts.iter().any(|a| *a < 0) {
        return None;
    }
    let out = pad.output.first()?;
    if graph.output.iter().any(|o| &o.name == out) {
        return None;
    }
    let readers: Vec<usize> = (0..graph.node.len())
        .filter(|&j| graph.node[j].input.iter().any(|n| n == out))
        .collect();
    let [conv] = readers[..] else {
        return None;
    };
    let node = &graph.node[conv];
    let explicit = node
        .attr_string("auto_pad")
        .is_none_or(|p| p == "NOTSET" || p.is_empty());
    if node.op_type != "Conv" || !node.domain.is_empty() || !explicit || node.input[0] != *out {
        return None;
    }
    if node.input.iter().skip(1).any(|n| n == out) {
        return None;
    }
    let spatial = [&begins[2..], &ends[2..]].concat();
    Some((conv, spatial))
}

#[cfg(test)]
mod tests {
    use spray_onnx::{data_type, value_info, NodeProto};

    use super::*;

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    /// x → Pad(amounts) → Conv(pads = [1, 1, 1, 1]) → y, plus what `extra` adds.
    fn graph(amounts: Vec<i64>, extra: Vec<NodeProto>) -> GraphProto {
        let mut conv = node("Conv", &["padded", "w"], "y");
        conv.attribute.push(attr::ints("pads", &[1, 1, 1, 1]));
        let mut nodes = vec![node("Pad", &["x", "amounts"], "padded"), conv];
        nodes.extend(extra);
        GraphProto {
            node: nodes,
            initializer: vec![
                Tensor::i64(vec![amounts.len() as i64], amounts).to_proto("amounts"),
                Tensor::f32(vec![1, 1, 1, 1], vec![1.0]).to_proto("w"),
            ],
            input: vec![value_info(
                "x",
                data_type::FLOAT,
                &[Err("N"), Ok(1), Ok(4), Ok(4)],
            )],
            output: vec![value_info(
                "y",
                data_type::FLOAT,
                &[Err("N"), Ok(1), Ok(6), Ok(7)],
            )],
            ..Default::default()
        }
    }

    #[test]
    fn a_spatial_zero_pad_joins_the_convolutions_padding() {
        // F.pad(x, [0, 1, 1, 1]) in ONNX order: begins (N, C, H, W), then ends.
        let mut g = graph(vec![0, 0, 1, 0, 0, 0, 1, 1], vec![]);
        absorb_zero_pads(&mut g);
        assert_eq!(g.node.len(), 1);
        let conv = &g.node[0];
        assert_eq!(conv.input[0], "x");
        assert_eq!(conv.attr_ints("pads"), Some(&[2, 1, 2, 2][..]));
    }

    #[test]
    fn pads_that_are_not_a_convolutions_own_stay() {
        // Channels padded; a negative amount (a crop); a second reader of the padded tensor.
        for amounts in [vec![0, 1, 1, 1, 0, 0, 1, 1], vec![0, 0, -1, 0, 0, 0, 1, 1]] {
            let mut g = graph(amounts, vec![]);
            absorb_zero_pads(&mut g);
            assert_eq!(g.node.len(), 2);
        }
        let mut g = graph(
            vec![0, 0, 1, 1, 0, 0, 1, 1],
            vec![node("Relu", &["padded"], "r")],
        );
        absorb_zero_pads(&mut g);
        assert_eq!(g.node.len(), 3);
        // Reflect padding, or a non-zero constant, is not zero padding.
        let mut g = graph(vec![0, 0, 1, 1, 0, 0, 1, 1], vec![]);
        g.node[0].attribute.push(attr::string("mode", "reflect"));
        absorb_zero_pads(&mut g);
        assert_eq!(g.node.len(), 2);
        let mut g = graph(vec![0, 0, 1, 1, 0, 0, 1, 1], vec![]);
        g.node[0].input.push("one".into());
        g.initializer
            .push(Tensor::f32(vec![], vec![1.0]).to_proto("one"));
        absorb_zero_pads(&mut g);
        assert_eq!(g.node.len(), 2);
    }
}
