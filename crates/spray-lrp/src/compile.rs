//! The LRP compiler: model in, model out, whose outputs are the logits and the relevance of
//! the input for a per-sample target class.
//!
//! The forward graph is kept as it is (so ORT fuses and runs it as usual). Behind it, the
//! backward pass is appended node by node in reverse topological order: each relevance-path
//! node turns the relevance of its output into relevance of its data inputs, using the rule
//! its composite assigns. Linear layers run through ONNX's own Conv/ConvTranspose/Gemm/MatMul
//! with weights modified at compile time.

use std::collections::HashMap;

use spray_onnx::{attr, data_type, value_info, ModelProto, NodeExt, NodeProto, Tensor};

use crate::builder::{Builder, I64_MAX};
use crate::composite::{Composite, LayerKind};
use crate::graph::GraphFacts;
use crate::normalize;
use crate::rules::{InputMod, OutputMask, ParamMod, Rule};
use crate::{LrpError, UnsupportedNode};

/// Names of the compiled model's inputs and outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct LrpSignature {
    /// The image input (same name as in the original model).
    pub input: String,
    /// `int64 [N]`: class to explain per sample; a negative value means the predicted class.
    pub target: String,
    /// `float32 [N, K]`: pre-softmax logits.
    pub logits: String,
    /// float32, the input's shape: relevance per input element.
    pub relevance: String,
    /// The input's static shape where known (`None` = symbolic).
    pub input_shape: Vec<Option<i64>>,
    /// Whether a batch dimension fixed at export was freed.
    pub batch_relaxed: bool,
}

/// One relevance-path node and what the compiler does with it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    pub node: String,
    pub op_type: String,
    pub kind: LayerKind,
    pub rule: Rule,
    /// Nodes folded into this layer (BatchNormalization, bias Add).
    pub merged: Vec<String>,
    pub first: bool,
}

/// A compiled LRP model.
#[derive(Debug, Clone)]
pub struct LrpModel {
    pub model: ModelProto,
    pub signature: LrpSignature,
    pub layers: Vec<LayerPlan>,
}

impl LrpModel {
    pub fn to_bytes(&self) -> Vec<u8> {
        spray_onnx::encode_model(&self.model)
    }
}

/// Options for [`compile`].
#[derive(Debug, Clone)]
pub struct CompileOptions {
    pub composite: Composite,
    /// The image input's name, needed only when the graph has several non-constant inputs.
    pub input: Option<String>,
}

/// How a relevance-path node is handled.
#[derive(Debug, Clone)]
enum Treatment {
    Linear(Box<LinearLayer>),
    /// Folded into a linear layer; relevance is handled there.
    Merged,
    /// Relevance passes to the data input unchanged (shapes equal).
    PassThrough {
        input: String,
    },
    /// Relevance reshaped to the data input's shape.
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
    MaxPool {
        input: String,
    },
    AveragePool {
        input: String,
    },
    GlobalAveragePool {
        input: String,
    },
    /// Split along `axis`: the outputs' relevance is concatenated back (zeros for an output that
    /// received none).
    Split {
        input: String,
        axis: i64,
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
    Slice {
        input: String,
    },
    /// An op that only copies elements (Gather and GatherElements with input-independent
    /// indices, strided Slice, Tile, Expand): relevance goes back to
    /// the element each output was copied from, summed where one element was copied several times.
    Movement {
        input: String,
    },
    Sum,
    Gate {
        signal: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LinearOp {
    Conv,
    Gemm,
    MatMul,
}

#[derive(Debug, Clone)]
struct LinearLayer {
    op: LinearOp,
    input: String,
    /// The tensor the layer (with merged BN / bias) produces.
    output: String,
    /// Conv: [M, C/g, k...]; dense: [out, in].
    weight: Tensor,
    bias: Option<Vec<f32>>,
    conv_attrs: Vec<spray_onnx::AttributeProto>,
    spatial_rank: usize,
    strided: bool,
    merged: Vec<String>,
}

/// Compile `model` into an LRP model under `options.composite`.
pub fn compile(model: &ModelProto, options: &CompileOptions) -> Result<LrpModel, LrpError> {
    options.composite.validate()?;
    let mut model = model.clone();
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| LrpError::Model("the model has no graph".into()))?;
    if !model.functions.is_empty() {
        let names: Vec<&str> = model.functions.iter().map(|f| f.name.as_str()).collect();
        return Err(LrpError::Model(format!(
            "the model defines local functions ({}); inline them first (onnx.inliner.inline_local_functions)",
            names.join(", ")
        )));
    }
    let input = pick_input(graph, options.input.as_deref())?;
    let output = graph
        .output
        .first()
        .map(|o| o.name.clone())
        .ok_or_else(|| LrpError::Model("the model has no outputs".into()))?;

    normalize::upgrade_opset(&mut model)?;
    normalize::fit_ir_version(&mut model)?;
    let graph = model.graph.as_mut().expect("checked above");
    normalize::dropout_to_identity(graph)?;
    let logits_source = normalize::strip_output_softmax(graph, &output);
    let batch_relaxed = normalize::relax_fixed_batch(graph, &input);
    let input_shape = graph
        .input
        .iter()
        .find(|v| v.name == input)
        .and_then(spray_onnx::value_shape)
        .unwrap_or_default();
    let shape_of = |name: &str| {
        graph
            .output
            .iter()
            .chain(graph.value_info.iter())
            .find(|v| v.name == name)
            .and_then(spray_onnx::value_shape)
    };
    // A stripped softmax keeps the shape: the declared output speaks for the logits.
    let logits_shape = shape_of(&logits_source).or_else(|| shape_of(&output));
    check_logits_shape(&output, logits_shape.as_deref())?;
    let output_rank = shape_of(&logits_source).map(|s| s.len());

    let snapshot = graph.clone();
    let facts = GraphFacts::new(&snapshot, &input);
    if !facts.is_data(&logits_source) {
        return Err(LrpError::Model(format!(
            "the output '{logits_source}' does not depend on the input '{input}'"
        )));
    }
    let on_path = facts.nodes_reaching(&logits_source);
    let Plan {
        treatments,
        rules,
        layers,
    } = plan(&facts, &on_path, &options.composite)?;

    // MaxPool's backward needs the winning indices: ask the forward node for them.
    let mut builder = Builder::new();
    let mut maxpool_indices: HashMap<usize, String> = HashMap::new();
    for (i, t) in treatments.iter().enumerate() {
        if matches!(t, Some(Treatment::MaxPool { .. })) {
            let name = builder.fresh("maxpool_indices");
            let node = &mut graph.node[i];
            node.output.truncate(1);
            node.output.push(name.clone());
            maxpool_indices.insert(i, name);
        }
    }

    // Start: R = one_hot(target) ⊙ logits; a negative target selects the argmax.
    let target = unique_name(&snapshot, "target");
    // Keep the model's own name when it already calls its output "logits".
    let logits_out = if logits_source == "logits" && output_rank == Some(2) {
        logits_source.clone()
    } else {
        unique_name(&snapshot, "logits")
    };
    let relevance_out = unique_name(&snapshot, "relevance");
    let logits2d = if output_rank == Some(2) {
        logits_source.clone()
    } else {
        builder.op("Flatten", &[&logits_source], vec![attr::int("axis", 1)])
    };
    let zero_i = builder.constant("zero_i64", Tensor::i64(vec![], vec![0]));
    let wants_argmax = builder.op("Less", &[&target, &zero_i], vec![]);
    let argmax = builder.op(
        "ArgMax",
        &[&logits2d],
        vec![attr::int("axis", 1), attr::int("keepdims", 0)],
    );
    let chosen = builder.op("Where", &[&wants_argmax, &argmax, &target], vec![]);
    let logits_shape = builder.shape(&logits2d);
    let (one, two) = (builder.ints(&[1]), builder.ints(&[2]));
    let depth = builder.op("Slice", &[&logits_shape, &one, &two], vec![]);
    let on_off = builder.constant("one_hot_values", Tensor::f32(vec![2], vec![0.0, 1.0]));
    let one_hot = builder.op(
        "OneHot",
        &[&chosen, &depth, &on_off],
        vec![attr::int("axis", -1)],
    );
    let mut start = builder.op("Mul", &[&one_hot, &logits2d], vec![]);
    if logits2d != logits_source {
        start = builder.reshape_like(&start, &logits_source);
    }

    let mut relevance: HashMap<String, Vec<String>> = HashMap::new();
    relevance.insert(logits_source.clone(), vec![start]);

    for i in (0..snapshot.node.len()).rev() {
        let Some(treatment) = &treatments[i] else {
            continue;
        };
        let node = &snapshot.node[i];
        let emitted = emit_backward(
            &mut builder,
            &facts,
            node,
            treatment,
            rules[i].as_ref(),
            &mut relevance,
            maxpool_indices.get(&i),
        )?;
        for (tensor, r) in emitted {
            relevance.entry(tensor).or_default().push(r);
        }
    }
    let input_relevance = relevance
        .remove(&input)
        .and_then(|terms| builder.sum(&terms))
        .ok_or_else(|| LrpError::Model("no relevance reached the input".into()))?;

    // Outputs: logits and relevance under stable names.
    if logits_out != logits2d {
        let logits_node = builder.op("Identity", &[&logits2d], vec![]);
        rename_output(&mut builder, &logits_node, &logits_out);
    }
    let relevance_node = builder.op("Identity", &[&input_relevance], vec![]);
    rename_output(&mut builder, &relevance_node, &relevance_out);

    let graph = model.graph.as_mut().expect("checked above");
    graph.node.extend(builder.nodes);
    graph.initializer.extend(builder.initializers);
    graph
        .input
        .push(value_info(&target, data_type::INT64, &[Err("N")]));
    let input_dims: Vec<Result<i64, &str>> = input_shape
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Some(v) if i > 0 => Ok(*v),
            _ if i == 0 => Err("N"),
            _ => Err("?"),
        })
        .collect();
    graph.output = vec![
        value_info(&logits_out, data_type::FLOAT, &[Err("N"), Err("K")]),
        value_info(&relevance_out, data_type::FLOAT, &input_dims),
    ];
    // Keep recorded intermediate shapes only where they cannot contradict the rewrite.
    if batch_relaxed {
        graph.value_info.clear();
    }
    model.producer_name = format!(
        "spray-lrp ({}; from {})",
        options.composite.name, model.producer_name
    );

    Ok(LrpModel {
        model,
        signature: LrpSignature {
            input,
            target,
            logits: logits_out,
            relevance: relevance_out,
            input_shape,
            batch_relaxed,
        },
        layers,
    })
}

/// The model contract: the output is [N, K] with K ≥ 2 classes, or squeezable to it (e.g.
/// [N, K, 1, 1]). Anything else (an image-to-image graph, one logit) is refused with the shape
/// named, before any work. An undeclared shape is checked on the first batch instead
/// (`spray_engine` refuses K < 2).
fn check_logits_shape(output: &str, shape: Option<&[Option<i64>]>) -> Result<(), LrpError> {
    let Some(shape) = shape else {
        return Ok(());
    };
    let shown = || {
        let dims: Vec<String> = shape
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Some(v) => v.to_string(),
                None if i == 0 => "N".into(),
                None => "?".into(),
            })
            .collect();
        format!("[{}]", dims.join(", "))
    };
    let refuse = |why: &str| {
        Err(LrpError::Model(format!(
            "the output '{output}' has shape {}; {why}",
            shown()
        )))
    };
    if shape.len() < 2 {
        return refuse(
            "spray explains classifiers, whose output is [N, classes] (one logit per class)",
        );
    }
    let class_dims: Vec<Option<i64>> = shape[1..]
        .iter()
        .copied()
        .filter(|d| *d != Some(1))
        .collect();
    match class_dims.as_slice() {
        [] | [Some(0..=1)] => refuse(
            "spray needs at least 2 classes (a single-logit binary classifier can be \
             explained as [N, 2] by concatenating −z and z)",
        ),
        [_] => Ok(()),
        _ => refuse(
            "spray explains classifiers, whose output is [N, classes] (or [N, classes, 1, 1]); \
             this looks like an image-to-image or dense-prediction model",
        ),
    }
}

fn rename_output(builder: &mut Builder, from: &str, to: &str) {
    if let Some(n) = builder
        .nodes
        .iter_mut()
        .find(|n| n.output.first().map(String::as_str) == Some(from))
    {
        n.output[0] = to.to_owned();
    }
}

fn unique_name(graph: &spray_onnx::GraphProto, base: &str) -> String {
    let taken = |n: &str| {
        graph.input.iter().any(|v| v.name == n)
            || graph.initializer.iter().any(|t| t.name == n)
            || graph
                .node
                .iter()
                .any(|node| node.output.iter().any(|o| o == n))
    };
    if !taken(base) {
        return base.to_owned();
    }
    (1..)
        .map(|i| format!("{base}_{i}"))
        .find(|n| !taken(n))
        .expect("unbounded")
}

/// A stable key for a node: its name, or its first output when unnamed.
fn node_key(node: &NodeProto) -> String {
    if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    }
}

fn pick_input(graph: &spray_onnx::GraphProto, requested: Option<&str>) -> Result<String, LrpError> {
    let inits: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let candidates: Vec<&str> = graph
        .input
        .iter()
        .map(|v| v.name.as_str())
        .filter(|n| !inits.contains(n))
        .collect();
    match requested {
        Some(name) if candidates.contains(&name) => Ok(name.to_owned()),
        Some(name) => Err(LrpError::Model(format!(
            "the model has no input '{name}' (inputs: {})",
            candidates.join(", ")
        ))),
        None => match candidates.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => Err(LrpError::Model("the model has no inputs".into())),
            many => Err(LrpError::Model(format!(
                "the model has several inputs ({}); say which one is the image",
                many.join(", ")
            ))),
        },
    }
}

const ACTIVATIONS: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Celu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Softplus",
    "Softsign",
    "Clip",
    "Gelu",
    "Mish",
    "Erf",
];
const RESHAPES: &[&str] = &["Reshape", "Flatten", "Squeeze", "Unsqueeze"];
/// Ops that copy elements of their first input without arithmetic (see `Treatment::Movement`).
/// Each must run on int64 in ONNX Runtime (DepthToSpace and SpaceToDepth do not).
const MOVEMENTS: &[&str] = &["Gather", "GatherElements", "Tile", "Expand"];

/// What the compiler does with each node, indexed like the graph's nodes.
struct Plan {
    treatments: Vec<Option<Treatment>>,
    rules: Vec<Option<Rule>>,
    /// The relevance-path nodes in forward order, for `inspect`.
    layers: Vec<LayerPlan>,
}

/// Classify every relevance-path node and assign rules. All unsupported nodes are reported at once.
fn plan(facts: &GraphFacts<'_>, on_path: &[bool], composite: &Composite) -> Result<Plan, LrpError> {
    let nodes = &facts.graph.node;
    let mut treatments: Vec<Option<Treatment>> = vec![None; nodes.len()];
    let mut rules: Vec<Option<Rule>> = vec![None; nodes.len()];
    let mut unsupported = Vec::new();
    let mut first_assigned = false;
    let mut layers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if !on_path[i] || treatments[i].is_some() {
            continue;
        }
        let refuse = |reason: &str| UnsupportedNode {
            op_type: if node.domain.is_empty() {
                node.op_type.clone()
            } else {
                format!("{}:{}", node.domain, node.op_type)
            },
            name: node_key(node),
            reason: reason.to_owned(),
        };
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            unsupported.push(refuse("custom operator domain"));
            continue;
        }
        match classify(facts, i) {
            Ok((treatment, kind, absorbed)) => {
                let mut merged = Vec::new();
                for &j in &absorbed {
                    treatments[j] = Some(Treatment::Merged);
                    merged.push(node_key(&nodes[j]));
                }
                let is_linear = matches!(kind, LayerKind::Conv | LayerKind::Dense);
                let first = is_linear && !first_assigned && composite.first_layer_accepts(kind);
                if first {
                    first_assigned = true;
                }
                let rule = composite.rule_for(kind, &node_key(node), first);
                if is_linear && !rule.applies_to_linear() {
                    unsupported.push(refuse(&format!(
                        "rule {} cannot be applied to a linear layer",
                        rule.label()
                    )));
                }
                rules[i] = Some(rule.clone());
                layers.push(LayerPlan {
                    node: node_key(node),
                    op_type: node.op_type.clone(),
                    kind,
                    rule,
                    merged,
                    first,
                });
                treatments[i] = Some(treatment);
            }
            Err(reason) => unsupported.push(refuse(&reason)),
        }
    }
    if !unsupported.is_empty() {
        return Err(LrpError::Unsupported(unsupported));
    }
    Ok(Plan {
        treatments,
        rules,
        layers,
    })
}

type Classified = (Treatment, LayerKind, Vec<usize>);

fn classify(facts: &GraphFacts<'_>, i: usize) -> Result<Classified, String> {
    let node = &facts.graph.node[i];
    let data: Vec<&str> = node
        .input
        .iter()
        .filter(|n| facts.is_data(n))
        .map(String::as_str)
        .collect();
    let first_data = || {
        data.first()
            .map(|s| s.to_string())
            .ok_or_else(|| "no data input".to_string())
    };
    let op = node.op_type.as_str();
    let only_first_input_is_data = || {
        if data.len() == 1 && node.input.first().map(String::as_str) == data.first().copied() {
            Ok(())
        } else if data.len() >= 2 && matches!(op, "MatMul" | "Gemm" | "Einsum") {
            Err(format!(
                "{op} of two activations (attention): spray has no LRP rule for it yet"
            ))
        } else {
            Err(format!(
                "{op} is supported only with the activation as its first input"
            ))
        }
    };
    if let Some(signal) = facts.normalised_signal(node) {
        // x − mean, x / σ, x · γ/σ + (β − mean·γ/σ): the statistic is held constant.
        return Ok((
            Treatment::PassThrough {
                input: signal.to_owned(),
            },
            LayerKind::Normalization,
            vec![],
        ));
    }
    Ok(match op {
        "Conv" | "Gemm" | "MatMul" => {
            only_first_input_is_data()?;
            let (layer, absorbed) = linear_layer(facts, i)?;
            let kind = if op == "Conv" {
                LayerKind::Conv
            } else {
                LayerKind::Dense
            };
            (Treatment::Linear(Box::new(layer)), kind, absorbed)
        }
        _ if ACTIVATIONS.contains(&op) => {
            only_first_input_is_data()?;
            (
                Treatment::PassThrough {
                    input: first_data()?,
                },
                LayerKind::Activation,
                vec![],
            )
        }
        "BatchNormalization" => {
            only_first_input_is_data()?;
            (
                Treatment::PassThrough {
                    input: first_data()?,
                },
                LayerKind::BatchNorm,
                vec![],
            )
        }
        "LayerNormalization" | "LRN" => {
            only_first_input_is_data()?;
            (
                Treatment::PassThrough {
                    input: first_data()?,
                },
                LayerKind::Normalization,
                vec![],
            )
        }
        _ if MOVEMENTS.contains(&op) => {
            only_first_input_is_data()?;
            (
                Treatment::Movement {
                    input: first_data()?,
                },
                LayerKind::Structural,
                vec![],
            )
        }
        "Identity" => (
            Treatment::PassThrough {
                input: first_data()?,
            },
            LayerKind::Structural,
            vec![],
        ),
        "Cast" => {
            let to = node.attr_int("to").unwrap_or(0) as i32;
            if to != data_type::FLOAT {
                return Err("Cast on the relevance path must produce float32".into());
            }
            (
                Treatment::PassThrough {
                    input: first_data()?,
                },
                LayerKind::Structural,
                vec![],
            )
        }
        "Add" | "Sum" if data.len() >= 2 => {
            if data.len() != node.input.len() {
                return Err(format!("{op} mixes activations and constants"));
            }
            (Treatment::Sum, LayerKind::Sum, vec![])
        }
        "Add" | "Sub" | "Mul" | "Div" if data.len() == 1 => (
            Treatment::PassThrough {
                input: first_data()?,
            },
            LayerKind::Elementwise,
            vec![],
        ),
        "Mul" if data.len() == 2 => {
            let signal = if is_gate(facts, data[1], data[0]) {
                data[0]
            } else if is_gate(facts, data[0], data[1]) {
                data[1]
            } else {
                return Err("Mul of two activations is supported only when one is a gate: a Sigmoid/HardSigmoid output \
                            or an elementwise function of the other (SiLU, GELU, Mish)"
                    .into());
            };
            (
                Treatment::Gate {
                    signal: signal.to_owned(),
                },
                LayerKind::Gate,
                vec![],
            )
        }
        _ if RESHAPES.contains(&op) => {
            only_first_input_is_data()?;
            (
                Treatment::ReshapeBack {
                    input: first_data()?,
                },
                LayerKind::Structural,
                vec![],
            )
        }
        "Transpose" => {
            let perm = node.attr_ints("perm").map(<[i64]>::to_vec);
            let inverse = match perm {
                Some(p) => {
                    let mut inv = vec![0i64; p.len()];
                    for (to, &from) in p.iter().enumerate() {
                        let from = usize::try_from(from)
                            .ok()
                            .filter(|f| *f < p.len())
                            .ok_or("bad perm")?;
                        inv[from] = to as i64;
                    }
                    inv
                }
                None => vec![],
            };
            (
                Treatment::Transpose {
                    input: first_data()?,
                    inverse,
                },
                LayerKind::Structural,
                vec![],
            )
        }
        "Concat" => {
            let axis = node.attr_int("axis").ok_or("Concat without axis")?;
            (Treatment::Concat { axis }, LayerKind::Structural, vec![])
        }
        "Pad" => {
            only_first_input_is_data()?;
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
                .and_then(|p| facts.constant(p))
                .and_then(|t| t.as_i64().map(<[i64]>::to_vec))
                .ok_or("Pad whose pads are not constant")?;
            if pads.iter().any(|p| *p < 0) {
                return Err("Pad with negative pads (cropping)".into());
            }
            (
                Treatment::Pad {
                    input: first_data()?,
                    pads,
                },
                LayerKind::Structural,
                vec![],
            )
        }
        "MaxPool" => {
            only_first_input_is_data()?;
            (
                Treatment::MaxPool {
                    input: first_data()?,
                },
                LayerKind::MaxPool,
                vec![],
            )
        }
        "AveragePool" => {
            only_first_input_is_data()?;
            if node.attr_int("ceil_mode").unwrap_or(0) != 0
                && node.attr_int("count_include_pad").unwrap_or(0) != 0
            {
                // The divisor of a window that runs past the padding is defined differently by
                // different runtimes; without count_include_pad it is the count of real inputs.
                return Err("AveragePool with ceil_mode=1 and count_include_pad=1".into());
            }
            check_auto_pad(node)?;
            (
                Treatment::AveragePool {
                    input: first_data()?,
                },
                LayerKind::AvgPool,
                vec![],
            )
        }
        "ReduceMean" => {
            only_first_input_is_data()?;
            let axes = match node.attr_ints("axes") {
                Some(a) => a.to_vec(),
                None => node
                    .input
                    .get(1)
                    .filter(|n| !n.is_empty())
                    .and_then(|n| facts.constant(n))
                    .and_then(|t| t.as_i64().map(<[i64]>::to_vec))
                    .ok_or("ReduceMean over all axes or with non-constant axes")?,
            };
            let keepdims = node.attr_int("keepdims").unwrap_or(1) != 0;
            (
                Treatment::ReduceMean {
                    input: first_data()?,
                    axes,
                    keepdims,
                },
                LayerKind::AvgPool,
                vec![],
            )
        }
        "Slice" => {
            only_first_input_is_data()?;
            if node.input.len() < 3 {
                return Err("Slice with attributes (opset < 10)".into());
            }
            if let Some(steps) = node.input.get(4).filter(|n| !n.is_empty()) {
                let ones = facts
                    .constant(steps)
                    .and_then(|t| t.as_i64().map(|v| v.iter().all(|s| *s == 1)));
                if ones != Some(true) {
                    // Strided or reversed: move relevance back element by element.
                    return Ok((
                        Treatment::Movement {
                            input: first_data()?,
                        },
                        LayerKind::Structural,
                        vec![],
                    ));
                }
            }
            (
                Treatment::Slice {
                    input: first_data()?,
                },
                LayerKind::Structural,
                vec![],
            )
        }
        "GlobalAveragePool" => (
            Treatment::GlobalAveragePool {
                input: first_data()?,
            },
            LayerKind::AvgPool,
            vec![],
        ),
        "Split" => {
            only_first_input_is_data()?;
            (
                Treatment::Split {
                    input: first_data()?,
                    axis: node.attr_int("axis").unwrap_or(0),
                },
                LayerKind::Structural,
                vec![],
            )
        }
        "GlobalMaxPool" => (
            Treatment::GlobalMaxPool {
                input: first_data()?,
            },
            LayerKind::MaxPool,
            vec![],
        ),
        "Softmax" | "LogSoftmax" => {
            return Err(format!("{op} is supported only as the model's last op"))
        }
        _ => return Err("no LRP treatment for this op".into()),
    })
}

/// Ops that map a tensor elementwise (other inputs constant): a chain of them from `signal`
/// makes `gate` a function of `signal`, so `signal * gate` is an activation (SiLU, GELU, Mish).
const ELEMENTWISE_UNARY: &[&str] = &[
    "Sigmoid",
    "HardSigmoid",
    "Tanh",
    "Erf",
    "Softplus",
    "Relu",
    "Clip",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Exp",
    "Neg",
];

/// Whether `gate` gates `signal` in `signal * gate`: it is a Sigmoid/HardSigmoid output
/// (squeeze-and-excitation, SiLU) or an elementwise function of `signal` itself.
fn is_gate(facts: &GraphFacts<'_>, gate: &str, signal: &str) -> bool {
    let producer_op = |t: &str| facts.producer.get(t).map(|&p| &facts.graph.node[p]);
    if producer_op(gate).is_some_and(|n| matches!(n.op_type.as_str(), "Sigmoid" | "HardSigmoid")) {
        return true;
    }
    let mut current = gate.to_owned();
    for _ in 0..8 {
        let Some(node) = producer_op(&current) else {
            return false;
        };
        if !ELEMENTWISE_UNARY.contains(&node.op_type.as_str()) {
            return false;
        }
        let data: Vec<&String> = node.input.iter().filter(|i| facts.is_data(i)).collect();
        let [only] = data.as_slice() else {
            return false;
        };
        if only.as_str() == signal {
            return true;
        }
        current = (*only).clone();
    }
    false
}

fn check_auto_pad(node: &NodeProto) -> Result<(), String> {
    match node.attr_string("auto_pad").as_deref() {
        None | Some("NOTSET") | Some("VALID") | Some("") => Ok(()),
        Some(other) => Err(format!("auto_pad={other} (re-export with explicit pads)")),
    }
}

/// Build the linear layer for Conv/Gemm/MatMul at node `i`, folding a following bias Add
/// (MatMul) and BatchNormalization into it where they are the sole consumer.
fn linear_layer(facts: &GraphFacts<'_>, i: usize) -> Result<(LinearLayer, Vec<usize>), String> {
    let node = &facts.graph.node[i];
    let nodes = &facts.graph.node;
    let weight_name = node.input.get(1).ok_or("missing weight input")?;
    let weight = facts
        .constant(weight_name)
        .ok_or_else(|| format!("weight '{weight_name}' is not a constant"))?;
    let weight_values = weight
        .as_f32()
        .ok_or("weight is not floating point")?
        .to_vec();
    let bias_input = node.input.get(2).filter(|b| !b.is_empty());
    let bias_values = |name: &str| -> Result<Vec<f32>, String> {
        facts
            .constant(name)
            .and_then(|t| t.as_f32().map(<[f32]>::to_vec))
            .ok_or_else(|| format!("bias '{name}' is not a float constant"))
    };
    let mut absorbed = Vec::new();
    let mut output = node.output[0].clone();
    let mut layer = match node.op_type.as_str() {
        "Conv" => {
            check_auto_pad(node)?;
            if weight.dims.len() < 3 {
                return Err("Conv weight must have rank >= 3".into());
            }
            let bias = bias_input.map(|b| bias_values(b)).transpose()?;
            let strides = node.attr_ints("strides").unwrap_or(&[]);
            LinearLayer {
                op: LinearOp::Conv,
                input: node.input[0].clone(),
                output: output.clone(),
                spatial_rank: weight.dims.len() - 2,
                strided: strides.iter().any(|s| *s != 1),
                weight: Tensor::f32(weight.dims.clone(), weight_values),
                bias,
                conv_attrs: node
                    .attribute
                    .iter()
                    .filter(|a| a.name != "auto_pad")
                    .cloned()
                    .collect(),
                merged: vec![],
            }
        }
        "Gemm" => {
            if node.attr_int("transA").unwrap_or(0) != 0 {
                return Err("Gemm with transA=1".into());
            }
            if weight.dims.len() != 2 {
                return Err("Gemm weight must be 2-D".into());
            }
            let alpha = node.attr_float("alpha").unwrap_or(1.0);
            let beta = node.attr_float("beta").unwrap_or(1.0);
            let trans_b = node.attr_int("transB").unwrap_or(0) != 0;
            let (w_oi, out_features) = to_out_in(&weight_values, &weight.dims, trans_b, alpha);
            let bias = bias_input
                .map(|b| bias_values(b).and_then(|v| broadcast_bias(&v, out_features)))
                .transpose()?
                .map(|v| v.into_iter().map(|x| x * beta).collect());
            dense(node, w_oi, bias)
        }
        "MatMul" => {
            if weight.dims.len() != 2 {
                return Err("MatMul with a constant right-hand side of rank != 2".into());
            }
            let (w_oi, out_features) = to_out_in(&weight_values, &weight.dims, false, 1.0);
            let mut layer = dense(node, w_oi, None);
            if let Some(j) = facts.sole_consumer(&output) {
                let add = &nodes[j];
                if add.op_type == "Add" {
                    if let Some(other) = add.input.iter().find(|n| **n != output) {
                        if let Some(b) = facts
                            .constant(other)
                            .and_then(|t| t.as_f32().map(<[f32]>::to_vec))
                        {
                            if let Ok(b) = broadcast_bias(&b, out_features) {
                                layer.bias = Some(b);
                                output = add.output[0].clone();
                                absorbed.push(j);
                            }
                        }
                    }
                }
            }
            layer
        }
        other => unreachable!("linear_layer called for {other}"),
    };
    // Fold a BatchNormalization that consumes only this layer's output (zennit's
    // SequentialMergeBatchNorm): W' = W·s, b' = (b − μ)·s + β with s = γ/√(σ² + ε).
    if let Some(j) = facts.sole_consumer(&output) {
        let bn = &nodes[j];
        if bn.op_type == "BatchNormalization" && bn.input.len() >= 5 {
            let params: Option<Vec<Vec<f32>>> = bn.input[1..5]
                .iter()
                .map(|n| {
                    facts
                        .constant(n)
                        .and_then(|t| t.as_f32().map(<[f32]>::to_vec))
                })
                .collect();
            let out_channels = layer.weight.dims[0] as usize;
            if let Some(p) = params.filter(|p| p.iter().all(|v| v.len() == out_channels)) {
                let eps = bn.attr_float("epsilon").unwrap_or(1e-5);
                let (gamma, beta, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
                let scale: Vec<f32> = (0..out_channels)
                    .map(|c| gamma[c] / (var[c] + eps).sqrt())
                    .collect();
                let per_channel = layer.weight.numel() / out_channels;
                if let spray_onnx::TensorData::F32(w) = &mut layer.weight.data {
                    for (c, chunk) in w.chunks_mut(per_channel).enumerate() {
                        chunk.iter_mut().for_each(|x| *x *= scale[c]);
                    }
                }
                let bias = layer.bias.take().unwrap_or_else(|| vec![0.0; out_channels]);
                layer.bias = Some(
                    (0..out_channels)
                        .map(|c| (bias[c] - mean[c]) * scale[c] + beta[c])
                        .collect(),
                );
                output = bn.output[0].clone();
                absorbed.push(j);
            }
        }
    }
    layer.output = output;
    layer.merged = absorbed.iter().map(|&j| node_key(&nodes[j])).collect();
    Ok((layer, absorbed))
}

fn dense(node: &NodeProto, w_oi: Tensor, bias: Option<Vec<f32>>) -> LinearLayer {
    LinearLayer {
        op: if node.op_type == "Gemm" {
            LinearOp::Gemm
        } else {
            LinearOp::MatMul
        },
        input: node.input[0].clone(),
        output: node.output[0].clone(),
        weight: w_oi,
        bias,
        conv_attrs: vec![],
        spatial_rank: 0,
        strided: false,
        merged: vec![],
    }
}

/// Weight as [out, in], scaled by `alpha`.
fn to_out_in(values: &[f32], dims: &[i64], transposed: bool, alpha: f32) -> (Tensor, usize) {
    let (rows, cols) = (dims[0] as usize, dims[1] as usize);
    if transposed {
        let w = values.iter().map(|x| x * alpha).collect();
        (Tensor::f32(vec![rows as i64, cols as i64], w), rows)
    } else {
        let mut w = vec![0.0; values.len()];
        for r in 0..rows {
            for c in 0..cols {
                w[c * rows + r] = values[r * cols + c] * alpha;
            }
        }
        (Tensor::f32(vec![cols as i64, rows as i64], w), cols)
    }
}

fn broadcast_bias(values: &[f32], out_features: usize) -> Result<Vec<f32>, String> {
    match values.len() {
        1 => Ok(vec![values[0]; out_features]),
        n if n == out_features => Ok(values.to_vec()),
        n => Err(format!("bias of {n} values for {out_features} outputs")),
    }
}

fn take_relevance(
    builder: &mut Builder,
    relevance: &mut HashMap<String, Vec<String>>,
    tensor: &str,
) -> Option<String> {
    let terms = relevance.remove(tensor)?;
    builder.sum(&terms)
}

/// Emit the backward step of one node. Returns (input tensor, relevance contribution) pairs.
fn emit_backward(
    b: &mut Builder,
    facts: &GraphFacts<'_>,
    node: &NodeProto,
    treatment: &Treatment,
    rule: Option<&Rule>,
    relevance: &mut HashMap<String, Vec<String>>,
    maxpool_indices: Option<&String>,
) -> Result<Vec<(String, String)>, LrpError> {
    if matches!(treatment, Treatment::Merged) {
        return Ok(vec![]);
    }
    if let Treatment::Split { input, axis } = treatment {
        // Several outputs: gather what each received, zeros where an output received nothing.
        let parts: Vec<Option<String>> = node
            .output
            .iter()
            .map(|o| take_relevance(b, relevance, o))
            .collect();
        if parts.iter().all(Option::is_none) {
            return Ok(vec![]);
        }
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
        let joined = b.op("Concat", &refs, vec![attr::int("axis", *axis)]);
        return Ok(vec![(input.clone(), joined)]);
    }
    let out_name = match treatment {
        Treatment::Linear(layer) => layer.output.clone(),
        _ => node.output[0].clone(),
    };
    let Some(r) = take_relevance(b, relevance, &out_name) else {
        return Ok(vec![]);
    };
    let rule = rule.cloned().unwrap_or(Rule::Pass);
    Ok(match treatment {
        Treatment::Merged => unreachable!(),
        Treatment::Linear(layer) => vec![(
            layer.input.clone(),
            linear_backward(b, facts, layer, &rule, &r),
        )],
        Treatment::PassThrough { input } | Treatment::Gate { signal: input } => {
            vec![(input.clone(), r)]
        }
        Treatment::ReshapeBack { input } => vec![(input.clone(), b.reshape_like(&r, input))],
        Treatment::Transpose { input, inverse } => {
            let attrs = if inverse.is_empty() {
                vec![]
            } else {
                vec![attr::ints("perm", inverse)]
            };
            vec![(input.clone(), b.op("Transpose", &[&r], attrs))]
        }
        Treatment::Concat { axis } => {
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
                .filter(|(inp, _)| facts.is_data(inp))
                .map(|(inp, part)| (inp.clone(), part))
                .collect()
        }
        Treatment::Pad { input, pads } => {
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
        Treatment::MaxPool { input } => {
            // Winner takes all, summed where overlapping windows share a winner: scatter-add of
            // the output relevance onto the flat input at the indices MaxPool reports.
            let indices = maxpool_indices.expect("MaxPool indices output added");
            vec![(input.clone(), scatter_add_like(b, &r, indices, input))]
        }
        Treatment::Split { .. } => unreachable!("handled above"),
        Treatment::GlobalMaxPool { input } => {
            // Each channel's relevance goes to its (first) maximum over the spatial positions.
            let per_channel = b.ints(&[0, 0, -1]);
            let flat = b.op("Reshape", &[input, &per_channel], vec![]);
            let winner = b.op(
                "ArgMax",
                &[&flat],
                vec![attr::int("axis", 2), attr::int("keepdims", 1)],
            );
            let r_flat = b.op("Reshape", &[&r, &per_channel], vec![]);
            let shape = b.shape(&flat);
            let zeros = b.filled(&shape, Tensor::f32(vec![1], vec![0.0]));
            let placed = b.op(
                "ScatterElements",
                &[&zeros, &winner, &r_flat],
                vec![attr::int("axis", 2)],
            );
            vec![(input.clone(), b.reshape_like(&placed, input))]
        }
        Treatment::Movement { input } => {
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
        Treatment::GlobalAveragePool { input } => {
            let s = proportional(b, &r, &node.output[0], &rule);
            let spatial = b.spatial_dims(input);
            let spread = b.divide_by_count(&s, &spatial);
            vec![(input.clone(), times_input(b, &rule, input, &spread))]
        }
        Treatment::ReduceMean {
            input,
            axes,
            keepdims,
        } => {
            let mut s = proportional(b, &r, &node.output[0], &rule);
            let axes_const = b.ints(axes);
            if !keepdims {
                s = b.op("Unsqueeze", &[&s, &axes_const], vec![]);
            }
            let shape = b.shape(input);
            let dims = b.op("Gather", &[&shape, &axes_const], vec![attr::int("axis", 0)]);
            let spread = b.divide_by_count(&s, &dims);
            vec![(input.clone(), times_input(b, &rule, input, &spread))]
        }
        Treatment::Slice { input } => vec![(input.clone(), slice_backward(b, node, input, &r))],
        Treatment::AveragePool { input } => {
            vec![(
                input.clone(),
                average_pool_backward(b, node, input, &r, &rule),
            )]
        }
        Treatment::Sum => {
            let s = proportional(b, &r, &node.output[0], &rule);
            node.input
                .iter()
                .filter(|inp| facts.is_data(inp))
                .map(|inp| (inp.clone(), times_input(b, &rule, inp, &s)))
                .collect()
        }
    })
}

/// Relevance `r` added onto a zero tensor shaped like `input` at the flat positions `indices`
/// (same shape as `r`).
fn scatter_add_like(b: &mut Builder, r: &str, indices: &str, input: &str) -> String {
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

/// R / stab(z) for proportional rules (norm, epsilon); R itself for the gradient.
fn proportional(b: &mut Builder, r: &str, z: &str, rule: &Rule) -> String {
    match rule {
        Rule::Norm { stabilizer } => b.divide_stabilized(r, z, *stabilizer),
        Rule::Epsilon { epsilon } => b.divide_stabilized(r, z, *epsilon),
        _ => r.to_owned(),
    }
}

fn times_input(b: &mut Builder, rule: &Rule, input: &str, s: &str) -> String {
    match rule {
        Rule::Gradient => s.to_owned(),
        _ => b.op("Mul", &[input, s], vec![]),
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

/// The linear-rule scheme of [`crate::rules`] on one Conv/Gemm/MatMul layer.
///
/// Terms are regrouped for speed without changing the result: a group whose terms share one
/// coefficient scales its (output-sized) quotient once, and the transposed maps of all terms
/// with the same input modifier are summed before the single (input-sized) multiplication.
fn linear_backward(
    b: &mut Builder,
    facts: &GraphFacts<'_>,
    layer: &LinearLayer,
    rule: &Rule,
    r: &str,
) -> String {
    let groups = rule.linear_terms().expect("linear rule checked in plan");
    let x = layer.input.as_str();
    let nonnegative = facts.nonnegative.contains(x);
    let mut weights: HashMap<String, (String, Option<String>)> = HashMap::new();
    // Per input modifier (in first-seen order): the transposed maps to be summed.
    let mut by_input: Vec<(InputMod, Vec<String>)> = Vec::new();
    for group in &groups {
        // Drop terms on the negative part of an input known to be non-negative: they are exactly zero.
        let terms: Vec<_> = group
            .terms
            .iter()
            .filter(|t| !(nonnegative && t.input == InputMod::Negative))
            .collect();
        if terms.is_empty() {
            continue;
        }
        let mut s = if group.is_gradient() {
            r.to_owned()
        } else {
            let reuse_output = terms.len() == 1
                && terms[0].input == InputMod::Identity
                && terms[0].weight == ParamMod::Identity
                && terms[0].bias == ParamMod::Identity;
            let z = if reuse_output {
                layer.output.clone()
            } else {
                let mut z: Option<String> = None;
                for t in &terms {
                    let input = modified_input(b, x, t.input, rule, layer, nonnegative);
                    let (w, bias) = modified_params(b, layer, t.weight, t.bias, &mut weights);
                    let out = linear_forward(b, layer, &input, &w, bias.as_deref());
                    z = Some(match (z, t.z_sign < 0.0) {
                        (None, false) => out,
                        (None, true) => b.op("Neg", &[&out], vec![]),
                        (Some(acc), false) => b.op("Add", &[&acc, &out], vec![]),
                        (Some(acc), true) => b.op("Sub", &[&acc, &out], vec![]),
                    });
                }
                z.expect("non-empty group")
            };
            let mut s = b.divide_stabilized_signed(r, &z, group.stabilizer, group.known_sign());
            if group.mask != OutputMask::All {
                let zero = b.scalar(0.0);
                let cmp = if group.mask == OutputMask::PositiveOutput {
                    "Greater"
                } else {
                    "Less"
                };
                let keep = b.op(cmp, &[&layer.output, &zero], vec![]);
                s = b.op("Where", &[&keep, &s, &zero], vec![]);
            }
            s
        };
        let shared = terms[0].coefficient;
        let uniform = terms.iter().all(|t| t.coefficient == shared);
        if uniform && shared != 1.0 {
            let k = b.scalar(shared);
            s = b.op("Mul", &[&s, &k], vec![]);
        }
        for t in &terms {
            let mut g = match flipped_conv_attrs(layer) {
                // Stride-1 convolution: its transpose is a convolution with the kernel flipped and
                // its channel axes swapped, which runs on ONNX Runtime's faster Conv kernels.
                Some(attrs) => {
                    let key = format!("flipped|{:?}", t.weight);
                    let w = match weights.get(&key) {
                        Some((w, _)) => w.clone(),
                        None => {
                            let values =
                                t.weight.apply(layer.weight.as_f32().expect("float weight"));
                            let w = b.constant(
                                "w_flipped",
                                flip_conv_weight(&layer.weight.dims, &values),
                            );
                            weights.insert(key, (w.clone(), None));
                            w
                        }
                    };
                    b.op("Conv", &[&s, &w], attrs)
                }
                None => {
                    let (w, _) = modified_params(b, layer, t.weight, ParamMod::Zero, &mut weights);
                    linear_transpose(b, layer, &s, &w)
                }
            };
            if !uniform && t.coefficient != 1.0 {
                let k = b.scalar(t.coefficient);
                g = b.op("Mul", &[&g, &k], vec![]);
            }
            match by_input.iter_mut().find(|(m, _)| *m == t.input) {
                Some((_, gs)) => gs.push(g),
                None => by_input.push((t.input, vec![g])),
            }
        }
    }
    let mut contributions = Vec::new();
    for (input_mod, gs) in by_input {
        let g = b.sum(&gs).expect("non-empty");
        contributions.push(match input_mod {
            InputMod::Ones => g,
            InputMod::Low | InputMod::High => {
                let bound = bound_constant(b, rule, input_mod, layer);
                b.op("Mul", &[&bound, &g], vec![])
            }
            other => {
                let input = modified_input(b, x, other, rule, layer, nonnegative);
                b.op("Mul", &[&input, &g], vec![])
            }
        });
    }
    b.sum(&contributions).unwrap_or_else(|| {
        let zero = b.scalar(0.0);
        b.op("Mul", &[x, &zero], vec![])
    })
}

fn modified_input(
    b: &mut Builder,
    x: &str,
    m: InputMod,
    rule: &Rule,
    layer: &LinearLayer,
    nonnegative: bool,
) -> String {
    match m {
        InputMod::Identity => x.to_owned(),
        InputMod::Positive if nonnegative => x.to_owned(),
        InputMod::Positive => b.positive_part(x),
        InputMod::Negative => b.negative_part(x),
        InputMod::Ones => b.ones_like_sample(x),
        InputMod::Low | InputMod::High => {
            let bound = bound_constant(b, rule, m, layer);
            let shape = b.single_sample_shape(x);
            b.op("Expand", &[&bound, &shape], vec![])
        }
    }
}

/// The z-box bound as a constant broadcastable against the layer input: a scalar, or one value
/// per channel shaped [1, C, 1, …] (conv) / [C] (dense).
fn bound_constant(b: &mut Builder, rule: &Rule, m: InputMod, layer: &LinearLayer) -> String {
    let Rule::ZBox { low, high, .. } = rule else {
        unreachable!("bounds only for z-box")
    };
    let values = if m == InputMod::Low { low } else { high };
    let dims: Vec<i64> = if values.len() == 1 {
        vec![]
    } else if layer.op == LinearOp::Conv {
        [1, values.len() as i64]
            .into_iter()
            .chain(std::iter::repeat_n(1, layer.spatial_rank))
            .collect()
    } else {
        vec![values.len() as i64]
    };
    b.constant("zbox_bound", Tensor::f32(dims, values.clone()))
}

/// Initializers for modified weight (and bias), cached per modification.
fn modified_params(
    b: &mut Builder,
    layer: &LinearLayer,
    weight_mod: ParamMod,
    bias_mod: ParamMod,
    cache: &mut HashMap<String, (String, Option<String>)>,
) -> (String, Option<String>) {
    let key = format!("{weight_mod:?}|{bias_mod:?}");
    if let Some(v) = cache.get(&key) {
        return v.clone();
    }
    let weight_values = layer.weight.as_f32().expect("float weight");
    let w = b.constant(
        "w",
        Tensor::f32(layer.weight.dims.clone(), weight_mod.apply(weight_values)),
    );
    let bias = match (&layer.bias, bias_mod) {
        (_, ParamMod::Zero) | (None, _) => None,
        (Some(values), m) => {
            Some(b.constant("b", Tensor::f32(vec![values.len() as i64], m.apply(values))))
        }
    };
    cache.insert(key, (w.clone(), bias.clone()));
    (w, bias)
}

/// L(x; W, b): the layer run forward with the given parameters.
fn linear_forward(
    b: &mut Builder,
    layer: &LinearLayer,
    x: &str,
    w: &str,
    bias: Option<&str>,
) -> String {
    match layer.op {
        LinearOp::Conv => {
            let mut inputs = vec![x, w];
            if let Some(bias) = bias {
                inputs.push(bias);
            }
            b.op("Conv", &inputs, layer.conv_attrs.clone())
        }
        LinearOp::Gemm => {
            let mut inputs = vec![x, w];
            if let Some(bias) = bias {
                inputs.push(bias);
            }
            b.op("Gemm", &inputs, vec![attr::int("transB", 1)])
        }
        LinearOp::MatMul => {
            let perm = b.op("Transpose", &[w], vec![attr::ints("perm", &[1, 0])]);
            let y = b.op("MatMul", &[x, &perm], vec![]);
            match bias {
                Some(bias) => b.op("Add", &[&y, bias], vec![]),
                None => y,
            }
        }
    }
}

/// Lᵀ(s): the transposed linear map (the gradient of L with respect to its input, applied to s).
fn linear_transpose(b: &mut Builder, layer: &LinearLayer, s: &str, w: &str) -> String {
    match layer.op {
        LinearOp::Conv => {
            let attrs: Vec<_> = layer
                .conv_attrs
                .iter()
                .filter(|a| {
                    matches!(
                        a.name.as_str(),
                        "strides" | "pads" | "dilations" | "group" | "kernel_shape"
                    )
                })
                .cloned()
                .collect();
            if !layer.strided {
                // Stride 1: the transposed convolution reproduces the input extent exactly.
                return b.op("ConvTranspose", &[s, w], attrs);
            }
            let attrs = attrs.into_iter().map(crop_start_only).collect();
            let y = b.op("ConvTranspose", &[s, w], attrs);
            b.fit_spatial(&y, &layer.input, layer.spatial_rank)
        }
        LinearOp::Gemm | LinearOp::MatMul => b.op("MatMul", &[s, w], vec![]),
    }
}

/// Attributes of the convolution that computes the transpose of a stride-1, ungrouped Conv layer:
/// padding d·(k−1) − p on each side. `None` where that does not apply (strides, groups, or
/// padding wider than the dilated kernel).
fn flipped_conv_attrs(layer: &LinearLayer) -> Option<Vec<spray_onnx::AttributeProto>> {
    if layer.op != LinearOp::Conv || layer.strided {
        return None;
    }
    let get = |name: &str| layer.conv_attrs.iter().find(|a| a.name == name);
    if get("group").is_some_and(|a| a.i != 1) {
        return None;
    }
    let nd = layer.spatial_rank;
    let kernel: Vec<i64> = layer.weight.dims[2..].to_vec();
    let dilations: Vec<i64> = get("dilations")
        .map(|a| a.ints.clone())
        .unwrap_or_else(|| vec![1; nd]);
    let pads: Vec<i64> = get("pads")
        .map(|a| a.ints.clone())
        .unwrap_or_else(|| vec![0; 2 * nd]);
    if dilations.len() != nd || pads.len() != 2 * nd {
        return None;
    }
    let flipped: Vec<i64> = (0..2 * nd)
        .map(|i| dilations[i % nd] * (kernel[i % nd] - 1) - pads[i])
        .collect();
    if flipped.iter().any(|p| *p < 0) {
        return None;
    }
    Some(vec![
        attr::ints("kernel_shape", &kernel),
        attr::ints("dilations", &dilations),
        attr::ints("pads", &flipped),
    ])
}

/// [M, C, k…] → [C, M, k…] with every spatial axis reversed (reversing all spatial axes is
/// reversing the row-major order of the flattened kernel).
fn flip_conv_weight(dims: &[i64], values: &[f32]) -> Tensor {
    let (m, c) = (dims[0] as usize, dims[1] as usize);
    let k: usize = dims[2..].iter().product::<i64>() as usize;
    let mut out = vec![0.0; values.len()];
    for mi in 0..m {
        for ci in 0..c {
            for t in 0..k {
                out[(ci * m + mi) * k + (k - 1 - t)] = values[(mi * c + ci) * k + t];
            }
        }
    }
    let mut new_dims = dims.to_vec();
    new_dims.swap(0, 1);
    Tensor::f32(new_dims, out)
}

/// With a stride that does not divide the padded extent, the last windows stop short of the end
/// padding, and ConvTranspose's end cropping would cut real input positions instead of padding.
/// So crop only the start padding here and let [`Builder::fit_spatial`] crop or zero-pad the end
/// to the input's extent.
fn crop_start_only(a: spray_onnx::AttributeProto) -> spray_onnx::AttributeProto {
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
