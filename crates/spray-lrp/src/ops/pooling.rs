//! Pooling and mean reductions. Max pooling is winner-takes-all (zennit's and the thesis'
//! choice); average pooling and means are linear maps, so they get the layer's proportional
//! rule (ε, gradient) like any linear layer.

use spray_onnx::{attr, NodeExt, NodeProto, Tensor};

use super::{
    check_auto_pad, crop_start_only, proportional, scatter_add_like, times_input, Backward,
    Classified, NodeView, Treatment,
};
use crate::builder::Builder;
use crate::composite::LayerKind;
use crate::rules::Rule;

#[derive(Debug, Clone)]
pub(crate) enum PoolingStep {
    /// `indices` names the forward node's second output (the winners), which the compiler asks
    /// for before the backward pass is built.
    MaxPool {
        input: String,
        indices: String,
    },
    AveragePool {
        input: String,
    },
    GlobalAveragePool {
        input: String,
    },
    /// Winner takes all per channel, like MaxPool.
    GlobalMaxPool {
        input: String,
    },
    ReduceMean {
        input: String,
        axes: Vec<i64>,
        keepdims: bool,
    },
}

pub(crate) fn classify(v: &NodeView<'_, '_>) -> Result<Classified, String> {
    let node = v.node;
    let pooled = |step: PoolingStep, kind: LayerKind| -> Result<Classified, String> {
        Ok((Treatment::Pooling(step), kind, vec![]))
    };
    match v.op() {
        "MaxPool" => {
            v.only_first_input_is_data()?;
            pooled(
                PoolingStep::MaxPool {
                    input: v.first_data()?,
                    indices: String::new(),
                },
                LayerKind::MaxPool,
            )
        }
        "AveragePool" => {
            v.only_first_input_is_data()?;
            if node.attr_int("ceil_mode").unwrap_or(0) != 0
                && node.attr_int("count_include_pad").unwrap_or(0) != 0
            {
                // The divisor of a window that runs past the padding is defined differently by
                // different runtimes; without count_include_pad it is the count of real inputs.
                return Err("AveragePool with ceil_mode=1 and count_include_pad=1".into());
            }
            check_auto_pad(node)?;
            pooled(
                PoolingStep::AveragePool {
                    input: v.first_data()?,
                },
                LayerKind::AvgPool,
            )
        }
        "ReduceMean" => {
            v.only_first_input_is_data()?;
            let axes = match node.attr_ints("axes") {
                Some(a) => a.to_vec(),
                None => node
                    .input
                    .get(1)
                    .filter(|n| !n.is_empty())
                    .and_then(|n| v.facts.constant(n))
                    .and_then(|t| t.as_i64().map(<[i64]>::to_vec))
                    .ok_or("ReduceMean over all axes or with non-constant axes")?,
            };
            let keepdims = node.attr_int("keepdims").unwrap_or(1) != 0;
            pooled(
                PoolingStep::ReduceMean {
                    input: v.first_data()?,
                    axes,
                    keepdims,
                },
                LayerKind::AvgPool,
            )
        }
        "GlobalAveragePool" => pooled(
            PoolingStep::GlobalAveragePool {
                input: v.first_data()?,
            },
            LayerKind::AvgPool,
        ),
        "GlobalMaxPool" => pooled(
            PoolingStep::GlobalMaxPool {
                input: v.first_data()?,
            },
            LayerKind::MaxPool,
        ),
        other => Err(format!("{other}: not a pooling op")),
    }
}

pub(crate) fn backward(
    cx: &mut Backward<'_, '_>,
    node: &NodeProto,
    step: &PoolingStep,
    rule: &Rule,
    r: &str,
) -> Vec<(String, String)> {
    let b = &mut cx.b;
    match step {
        PoolingStep::MaxPool { input, indices } => {
            // Winner takes all, summed where overlapping windows share a winner: scatter-add of
            // the output relevance onto the flat input at the indices MaxPool reports.
            vec![(input.clone(), scatter_add_like(b, r, indices, input))]
        }
        PoolingStep::GlobalMaxPool { input } => {
            // Each channel's relevance goes to its (first) maximum over the spatial positions.
            let per_channel = b.ints(&[0, 0, -1]);
            let flat = b.op("Reshape", &[input, &per_channel], vec![]);
            let winner = b.op(
                "ArgMax",
                &[&flat],
                vec![attr::int("axis", 2), attr::int("keepdims", 1)],
            );
            let r_flat = b.op("Reshape", &[r, &per_channel], vec![]);
            let shape = b.shape(&flat);
            let zeros = b.filled(&shape, Tensor::f32(vec![1], vec![0.0]));
            let placed = b.op(
                "ScatterElements",
                &[&zeros, &winner, &r_flat],
                vec![attr::int("axis", 2)],
            );
            vec![(input.clone(), b.reshape_like(&placed, input))]
        }
        PoolingStep::GlobalAveragePool { input } => {
            let s = proportional(b, r, &node.output[0], rule);
            let spatial = b.spatial_dims(input);
            let spread = b.divide_by_count(&s, &spatial);
            vec![(input.clone(), times_input(b, rule, input, &spread))]
        }
        PoolingStep::ReduceMean {
            input,
            axes,
            keepdims,
        } => {
            let mut s = proportional(b, r, &node.output[0], rule);
            let axes_const = b.ints(axes);
            if !keepdims {
                s = b.op("Unsqueeze", &[&s, &axes_const], vec![]);
            }
            let shape = b.shape(input);
            let dims = b.op("Gather", &[&shape, &axes_const], vec![attr::int("axis", 0)]);
            let spread = b.divide_by_count(&s, &dims);
            vec![(input.clone(), times_input(b, rule, input, &spread))]
        }
        PoolingStep::AveragePool { input } => {
            vec![(
                input.clone(),
                average_pool_backward(b, node, input, r, rule),
            )]
        }
    }
}

fn average_pool_backward(
    b: &mut Builder,
    node: &NodeProto,
    input: &str,
    r: &str,
    rule: &Rule,
) -> String {
    let kernel: Vec<i64> = node.attr_ints("kernel_shape").unwrap_or(&[]).to_vec();
    let nd = kernel.len();
    let pads: Vec<i64> = node
        .attr_ints("pads")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![0; 2 * nd]);
    let include_pad = node.attr_int("count_include_pad").unwrap_or(0) != 0;
    // ceil_mode adds windows that run past the input's end, averaged over fewer elements.
    let ceil_mode = node.attr_int("ceil_mode").unwrap_or(0) != 0;
    let uniform = (include_pad || pads.iter().all(|p| *p == 0)) && !ceil_mode;
    let window: i64 = kernel.iter().product();
    let mut pool_attrs: Vec<spray_onnx::AttributeProto> = vec![attr::ints("kernel_shape", &kernel)];
    for name in ["strides", "dilations"] {
        if let Some(v) = node.attr_ints(name) {
            pool_attrs.push(attr::ints(name, v));
        }
    }
    pool_attrs.push(attr::ints("pads", &pads));

    let mut s = proportional(b, r, &node.output[0], rule);
    let kernel_dims: Vec<i64> = [1, 1].into_iter().chain(kernel.iter().copied()).collect();
    let kernel_weight = if uniform {
        let value = 1.0 / window as f32;
        b.constant(
            "avgpool_kernel",
            Tensor::f32(kernel_dims.clone(), vec![value; window as usize]),
        )
    } else {
        // Without count_include_pad, border windows average over fewer elements: divide by
        // the per-window count of real (unpadded) inputs.
        let ones_kernel = b.constant(
            "avgpool_ones",
            Tensor::f32(kernel_dims.clone(), vec![1.0; window as usize]),
        );
        let spatial = b.spatial_dims(input);
        let lead = b.ints(&[1, 1]);
        let plane_shape = b.op("Concat", &[&lead, &spatial], vec![attr::int("axis", 0)]);
        let plane = b.filled(&plane_shape, Tensor::f32(vec![1], vec![1.0]));
        let count = if ceil_mode {
            // Conv has no ceil_mode: pad the end by stride − 1 more zeros, then keep as many
            // windows as the pool produced.
            let strides: Vec<i64> = node
                .attr_ints("strides")
                .map(<[i64]>::to_vec)
                .unwrap_or_else(|| vec![1; nd]);
            let mut wide = pads.clone();
            for (i, s) in strides.iter().enumerate() {
                wide[nd + i] += s - 1;
            }
            let attrs: Vec<spray_onnx::AttributeProto> = pool_attrs
                .iter()
                .map(|a| {
                    if a.name == "pads" {
                        attr::ints("pads", &wide)
                    } else {
                        a.clone()
                    }
                })
                .collect();
            let counted = b.op("Conv", &[&plane, &ones_kernel], attrs);
            b.fit_spatial(&counted, &node.output[0], nd)
        } else {
            b.op("Conv", &[&plane, &ones_kernel], pool_attrs.clone())
        };
        s = b.op("Div", &[&s, &count], vec![]);
        ones_kernel
    };
    // Treat channels as batch so one single-channel transposed convolution spreads every map.
    let planes_shape: Vec<i64> = [-1, 1]
        .into_iter()
        .chain(std::iter::repeat_n(0, nd))
        .collect();
    let planes_shape = b.ints(&planes_shape);
    let planes = b.op("Reshape", &[&s, &planes_shape], vec![]);
    let spread_attrs = pool_attrs.into_iter().map(crop_start_only).collect();
    let spread = b.op("ConvTranspose", &[&planes, &kernel_weight], spread_attrs);
    let fitted = b.fit_spatial(&spread, input, nd);
    let back = b.reshape_like(&fitted, input);
    times_input(b, rule, input, &back)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{classify_one, Input};

    #[test]
    fn pooling_whose_divisor_runtimes_disagree_on_is_refused() {
        let err = classify_one(
            "AveragePool",
            &[1, 1, 5, 5],
            vec![Input::X],
            vec![
                attr::ints("kernel_shape", &[2, 2]),
                attr::int("ceil_mode", 1),
                attr::int("count_include_pad", 1),
            ],
        )
        .unwrap_err();
        assert!(err.contains("ceil_mode=1 and count_include_pad=1"), "{err}");
    }

    #[test]
    fn a_mean_needs_constant_axes_and_keeps_them() {
        let err = classify_one("ReduceMean", &[1, 4, 2, 2], vec![Input::X], vec![]).unwrap_err();
        assert!(err.contains("over all axes"), "{err}");
        let (treatment, kind, _) = classify_one(
            "ReduceMean",
            &[1, 4, 2, 2],
            vec![Input::X, Input::I64(vec![2], vec![2, 3])],
            vec![attr::int("keepdims", 0)],
        )
        .unwrap();
        assert_eq!(kind, LayerKind::AvgPool);
        let Treatment::Pooling(PoolingStep::ReduceMean { axes, keepdims, .. }) = treatment else {
            panic!("not a mean: {treatment:?}")
        };
        assert_eq!((axes, keepdims), (vec![2, 3], false));
    }
}
