//! Ops that move elements without arithmetic: reshapes, transposes, concatenation, splits,
//! pads, slices and element movements (Gather, Tile, Expand, strided Slice). Relevance follows
//! the elements back to where they came from; an element copied several times collects the sum.

use spray_onnx::{attr, NodeExt, NodeProto, Tensor};

use super::{scatter_add_like, Backward, Classified, NodeView, Treatment};
use crate::builder::{Builder, I64_MAX};
use crate::composite::LayerKind;

#[derive(Debug, Clone)]
pub(crate) enum LayoutStep {
    /// Relevance reshaped to the data input's shape (Reshape, Flatten, Squeeze, Unsqueeze).
    ReshapeBack {
        input: String,
    },
    Transpose {
        input: String,
        inverse: Vec<i64>,
    },
    Concat {
        axis: i64,
    },
    Pad {
        input: String,
        pads: Vec<i64>,
    },
    /// A unit-step slice: the relevance padded back with zeros.
    Slice {
        input: String,
    },
    /// An op that only copies elements (Gather and GatherElements with input-independent
    /// indices, strided Slice, Tile, Expand): relevance goes back to the element each output was
    /// copied from, summed where one element was copied several times. Each such op must run
    /// on int64 in ONNX Runtime (DepthToSpace and SpaceToDepth do not).
    Movement {
        input: String,
    },
}

pub(crate) fn classify(v: &NodeView<'_, '_>) -> Result<Classified, String> {
    let node = v.node;
    let structural = |step: LayoutStep| -> Result<Classified, String> {
        Ok((Treatment::Layout(step), LayerKind::Structural, vec![]))
    };
    match v.op() {
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
            v.only_first_input_is_data()?;
            structural(LayoutStep::ReshapeBack {
                input: v.first_data()?,
            })
        }
        "Gather" | "GatherElements" | "Tile" | "Expand" => {
            v.only_first_input_is_data()?;
            structural(LayoutStep::Movement {
                input: v.first_data()?,
            })
        }
        "Transpose" => {
            let perm = node.attr_ints("perm").map(<[i64]>::to_vec);
            let inverse = match perm {
                Some(p) => inverse_permutation(&p).ok_or("bad perm")?,
                None => vec![],
            };
            structural(LayoutStep::Transpose {
                input: v.first_data()?,
                inverse,
            })
        }
        "Concat" => {
            let axis = node.attr_int("axis").ok_or("Concat without axis")?;
            structural(LayoutStep::Concat { axis })
        }
        "Pad" => {
            v.only_first_input_is_data()?;
            let mode = node
                .attr_string("mode")
                .unwrap_or_else(|| "constant".into());
            if mode != "constant" {
                return Err(format!(
                    "Pad mode '{mode}' (only constant padding is supported)"
                ));
            }
            if node.input.len() > 3 && !node.input[3].is_empty() {
                return Err("Pad with an axes input".into());
            }
            let pads = node
                .input
                .get(1)
                .and_then(|p| v.facts.constant(p))
                .and_then(|t| t.as_i64().map(<[i64]>::to_vec))
                .ok_or("Pad whose pads are not constant")?;
            if pads.iter().any(|p| *p < 0) {
                return Err("Pad with negative pads (cropping)".into());
            }
            structural(LayoutStep::Pad {
                input: v.first_data()?,
                pads,
            })
        }
        "Slice" => {
            v.only_first_input_is_data()?;
            if node.input.len() < 3 {
                return Err("Slice with attributes (opset < 10)".into());
            }
            if let Some(steps) = node.input.get(4).filter(|n| !n.is_empty()) {
                let ones = v
                    .facts
                    .constant(steps)
                    .and_then(|t| t.as_i64().map(|s| s.iter().all(|s| *s == 1)));
                if ones != Some(true) {
                    // Strided or reversed: move relevance back element by element.
                    return structural(LayoutStep::Movement {
                        input: v.first_data()?,
                    });
                }
            }
            structural(LayoutStep::Slice {
                input: v.first_data()?,
            })
        }
        "Split" => {
            v.only_first_input_is_data()?;
            // Several outputs: `Treatment::Split`, handled by `split_backward`.
            Ok((
                Treatment::Split {
                    input: v.first_data()?,
                    axis: node.attr_int("axis").unwrap_or(0),
                },
                LayerKind::Structural,
                vec![],
            ))
        }
        other => Err(format!("{other}: not a layout op")),
    }
}

/// The permutation that undoes `perm`, or `None` if `perm` is not a permutation of its axes.
fn inverse_permutation(perm: &[i64]) -> Option<Vec<i64>> {
    let mut inverse = vec![0i64; perm.len()];
    for (to, &from) in perm.iter().enumerate() {
        let from = usize::try_from(from).ok().filter(|f| *f < perm.len())?;
        inverse[from] = to as i64;
    }
    Some(inverse)
}

pub(crate) fn backward(
    cx: &mut Backward<'_, '_>,
    node: &NodeProto,
    step: &LayoutStep,
    r: String,
) -> Vec<(String, String)> {
    let b = &mut cx.b;
    match step {
        LayoutStep::ReshapeBack { input } => vec![(input.clone(), b.reshape_like(&r, input))],
        LayoutStep::Transpose { input, inverse } => {
            let attrs = if inverse.is_empty() {
                vec![]
            } else {
                vec![attr::ints("perm", inverse)]
            };
            vec![(input.clone(), b.op("Transpose", &[&r], attrs))]
        }
        LayoutStep::Concat { axis } => {
            let axis = *axis;
            let mut sizes = Vec::new();
            for inp in &node.input {
                let shape = b.shape(inp);
                let start = b.ints(&[axis]);
                let end = b.ints(&[if axis == -1 { I64_MAX } else { axis + 1 }]);
                sizes.push(b.op("Slice", &[&shape, &start, &end], vec![]));
            }
            let refs: Vec<&str> = sizes.iter().map(String::as_str).collect();
            let split = b.op("Concat", &refs, vec![attr::int("axis", 0)]);
            let parts = b.op_multi(
                "Split",
                &[&r, &split],
                vec![attr::int("axis", axis)],
                node.input.len(),
            );
            node.input
                .iter()
                .zip(parts)
                .filter(|(inp, _)| cx.facts.is_data(inp))
                .map(|(inp, part)| (inp.clone(), part))
                .collect()
        }
        LayoutStep::Pad { input, pads } => {
            let rank = pads.len() / 2;
            let starts: Vec<i64> = pads[..rank].to_vec();
            let ends: Vec<i64> = pads[rank..]
                .iter()
                .map(|&p| if p > 0 { -p } else { I64_MAX })
                .collect();
            let axes: Vec<i64> = (0..rank as i64).collect();
            let (s, e, a) = (b.ints(&starts), b.ints(&ends), b.ints(&axes));
            vec![(input.clone(), b.op("Slice", &[&r, &s, &e, &a], vec![]))]
        }
        LayoutStep::Slice { input } => vec![(input.clone(), slice_backward(b, node, input, &r))],
        LayoutStep::Movement { input } => {
            // The same op applied to the flat positions of the input tells, for every output
            // element, which input element it came from (negative and repeated indices included).
            let zero = b.constant("zero_i64", Tensor::i64(vec![], vec![0]));
            let one = b.constant("one_i64", Tensor::i64(vec![], vec![1]));
            let size = b.op("Size", &[input], vec![]);
            let positions = b.op("Range", &[&zero, &size, &one], vec![]);
            let positions = b.reshape_like(&positions, input);
            let mut inputs: Vec<&str> = vec![&positions];
            inputs.extend(node.input[1..].iter().map(String::as_str));
            let origin = b.op(&node.op_type, &inputs, node.attribute.clone());
            vec![(input.clone(), scatter_add_like(b, &r, &origin, input))]
        }
    }
}

/// Split's backward step: gather what each output received, zeros where one received nothing
/// (nothing at all when no output received relevance).
pub(crate) fn split_backward(
    cx: &mut Backward<'_, '_>,
    node: &NodeProto,
    input: &str,
    axis: i64,
) -> Vec<(String, String)> {
    let parts: Vec<Option<String>> = node.output.iter().map(|o| cx.take(o)).collect();
    if parts.iter().all(Option::is_none) {
        return vec![];
    }
    let b = &mut cx.b;
    let filled: Vec<String> = node
        .output
        .iter()
        .zip(parts)
        .map(|(o, part)| {
            part.unwrap_or_else(|| {
                let shape = b.shape(o);
                b.filled(&shape, Tensor::f32(vec![1], vec![0.0]))
            })
        })
        .collect();
    let refs: Vec<&str> = filled.iter().map(String::as_str).collect();
    let joined = b.op("Concat", &refs, vec![attr::int("axis", axis)]);
    vec![(input.to_owned(), joined)]
}

/// Relevance of a Slice input: the output relevance put back where the slice came from, zeros
/// elsewhere (a Pad whose amounts are computed from the input's runtime shape).
fn slice_backward(b: &mut Builder, node: &NodeProto, input: &str, r: &str) -> String {
    // starts/ends/axes may be computed at run time (from Shape): use the tensors themselves.
    let starts = node.input[1].clone();
    let ends = node.input[2].clone();
    let axes_c = match node.input.get(3).filter(|n| !n.is_empty()) {
        Some(axes) => axes.clone(),
        None => {
            let zero = b.constant("zero_i64", Tensor::i64(vec![], vec![0]));
            let one = b.constant("one_i64", Tensor::i64(vec![], vec![1]));
            let count = b.op("Size", &[&starts], vec![]);
            b.op("Range", &[&zero, &count, &one], vec![])
        }
    };
    let shape = b.shape(input);
    let rank = b.op("Size", &[&shape], vec![]);
    // Normalise axes against the runtime rank.
    let zero = b.constant("zero_i64", Tensor::i64(vec![], vec![0]));
    let negative_axis = b.op("Less", &[&axes_c, &zero], vec![]);
    let shifted = b.op("Add", &[&axes_c, &rank], vec![]);
    let axes_n = b.op("Where", &[&negative_axis, &shifted, &axes_c], vec![]);
    let dims = b.op("Gather", &[&shape, &axes_n], vec![attr::int("axis", 0)]);
    // Clamp starts and ends into [0, dim] the way Slice does.
    let clamp = |b: &mut Builder, v: &str| {
        let neg = b.op("Less", &[v, &zero], vec![]);
        let plus = b.op("Add", &[v, &dims], vec![]);
        let wrapped = b.op("Where", &[&neg, &plus, v], vec![]);
        let lower = b.op("Max", &[&wrapped, &zero], vec![]);
        b.op("Min", &[&lower, &dims], vec![])
    };
    let begin = clamp(b, &starts);
    let end = clamp(b, &ends);
    let end_pad = b.op("Sub", &[&dims, &end], vec![]);
    // Scatter the per-axis amounts into a zero pads vector of length 2·rank.
    let two = b.constant("two_i64", Tensor::i64(vec![1], vec![2]));
    let rank1 = b.op("Unsqueeze", &[&rank, &zero], vec![]);
    let pads_len = b.op("Mul", &[&rank1, &two], vec![]);
    let zeros = b.filled(&pads_len, Tensor::i64(vec![1], vec![0]));
    let end_index = b.op("Add", &[&axes_n, &rank], vec![]);
    let indices = b.op("Concat", &[&axes_n, &end_index], vec![attr::int("axis", 0)]);
    let updates = b.op("Concat", &[&begin, &end_pad], vec![attr::int("axis", 0)]);
    let pads = b.op(
        "ScatterElements",
        &[&zeros, &indices, &updates],
        vec![attr::int("axis", 0)],
    );
    b.op("Pad", &[r, &pads], vec![attr::string("mode", "constant")])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{classify_one, Input};

    #[test]
    fn only_constant_non_negative_padding_is_undone() {
        let reflect = classify_one(
            "Pad",
            &[1, 1, 2, 2],
            vec![Input::X, Input::I64(vec![8], vec![0; 8])],
            vec![attr::string("mode", "reflect")],
        );
        assert!(reflect.unwrap_err().contains("'reflect'"));
        let crop = classify_one(
            "Pad",
            &[1, 1, 2, 2],
            vec![Input::X, Input::I64(vec![8], vec![0, 0, -1, 0, 0, 0, 0, 0])],
            vec![],
        );
        assert!(crop.unwrap_err().contains("cropping"));
    }

    #[test]
    fn a_strided_slice_moves_relevance_element_by_element() {
        let bounds = || {
            vec![
                Input::X,
                Input::I64(vec![1], vec![0]),
                Input::I64(vec![1], vec![4]),
                Input::I64(vec![1], vec![1]),
            ]
        };
        let mut strided = bounds();
        strided.push(Input::I64(vec![1], vec![2]));
        let (t, ..) = classify_one("Slice", &[1, 4], strided, vec![]).unwrap();
        assert!(matches!(t, Treatment::Layout(LayoutStep::Movement { .. })));
        let mut unit = bounds();
        unit.push(Input::I64(vec![1], vec![1]));
        let (t, ..) = classify_one("Slice", &[1, 4], unit, vec![]).unwrap();
        assert!(matches!(t, Treatment::Layout(LayoutStep::Slice { .. })));
    }

    #[test]
    fn the_inverse_permutation_undoes_the_permutation() {
        assert_eq!(inverse_permutation(&[0, 2, 3, 1]), Some(vec![0, 3, 1, 2]));
        assert_eq!(inverse_permutation(&[1, 0]), Some(vec![1, 0]));
        assert_eq!(inverse_permutation(&[0, 5]), None);
        assert_eq!(inverse_permutation(&[0, -1]), None);
    }
}
