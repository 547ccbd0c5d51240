//! The LRP compiler: model in, model out, whose outputs are the logits and the relevance of
//! the input for a per-sample target class.
//!
//! The forward graph is kept as it is (so ORT fuses and runs it as usual). Behind it, the
//! backward pass is appended node by node in reverse topological order: each relevance-path
//! node turns the relevance of its output into relevance of its data inputs, using the rule
//! its composite assigns. Linear layers run through ONNX's own Conv/ConvTranspose/Gemm/MatMul
//! with weights modified at compile time.

use spray_onnx::{attr, data_type, value_info, ModelProto, Tensor};

use crate::builder::Builder;
use crate::composite::{Composite, CompositeError, CompositeOptions, CompositeSpec};
use crate::concept::{self, ConceptLayer, ConceptOutput};
use crate::graph::GraphFacts;
use crate::normalize;
use crate::ops::{pooling::PoolingStep, Backward, Treatment};
use crate::plan::{plan, LayerPlan, Plan};
use crate::LrpError;

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
    /// The concept-relevance output, when layers were asked for and the model has them.
    pub concept: Option<ConceptOutput>,
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
    /// Also output the per-channel relevance of these layers (empty: the two outputs
    /// `spray lrp compile` has always emitted).
    pub concept: Vec<ConceptLayer>,
}

impl CompileOptions {
    /// The options for a composite spec with optional z-box bounds (one value, or one per
    /// channel; by default inputs in [0, 1]) and the image input's name: the one way the CLI and
    /// the pipeline turn what a user wrote into compiler options.
    pub fn for_spec(
        spec: &CompositeSpec,
        zbox_low: Option<&[f32]>,
        zbox_high: Option<&[f32]>,
        input: Option<String>,
    ) -> Result<Self, CompositeError> {
        let mut options = CompositeOptions::default();
        if let Some(low) = zbox_low {
            options.zbox_low = low.to_vec();
        }
        if let Some(high) = zbox_high {
            options.zbox_high = high.to_vec();
        }
        Ok(CompileOptions {
            composite: spec.resolve(&options)?,
            input,
            concept: Vec::new(),
        })
    }
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
    let Plan { mut steps, layers } = plan(&facts, &on_path, &options.composite)?;

    // MaxPool's backward needs the winning indices: ask the forward node for them.
    let mut builder = Builder::new();
    for (i, step) in steps.iter_mut().enumerate() {
        if let Some(step) = step {
            if let Treatment::Pooling(PoolingStep::MaxPool { indices, .. }) = &mut step.treatment {
                *indices = builder.fresh("maxpool_indices");
                let node = &mut graph.node[i];
                node.output.truncate(1);
                node.output.push(indices.clone());
            }
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

    // The backward pass, node by node in reverse topological order.
    let concept_at = concept::locate(&snapshot, &steps, &options.concept)?;
    let mut backward = Backward::new(builder, &facts);
    backward.send(logits_source.clone(), start);
    let mut concept_relevance: Vec<Option<String>> = vec![None; concept_at.len()];
    for (i, (node, step)) in snapshot.node.iter().zip(&steps).enumerate().rev() {
        if let Some(step) = step {
            // A concept tensor's relevance is complete here (all its consumers are behind
            // us): sum it once, keep it, and hand the sum on to its producer.
            for (slot, (_, tensor)) in concept_at
                .iter()
                .enumerate()
                .filter(|(_, (at, _))| *at == i)
            {
                if let Some(r) = backward.take(&tensor.tensor) {
                    backward.send(tensor.tensor.clone(), r.clone());
                    concept_relevance[slot] = Some(r);
                }
            }
            backward.step(node, &step.treatment, step.rule.as_ref());
        }
    }
    let input_relevance = backward
        .take(&input)
        .ok_or_else(|| LrpError::Model("no relevance reached the input".into()))?;
    let mut builder = backward.b;

    // Outputs: logits and relevance under stable names.
    if logits_out != logits2d {
        let logits_node = builder.op("Identity", &[&logits2d], vec![]);
        rename_output(&mut builder, &logits_node, &logits_out);
    }
    let relevance_node = builder.op("Identity", &[&input_relevance], vec![]);
    rename_output(&mut builder, &relevance_node, &relevance_out);
    let concept = if concept_at.is_empty() {
        None
    } else {
        let name = unique_name(&snapshot, "concept_relevance");
        Some(concept::emit(
            &mut builder,
            concept_at,
            &concept_relevance,
            name,
        )?)
    };
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
    if let Some(c) = &concept {
        let channels = c.channels() as i64;
        graph.output.push(value_info(
            &c.name,
            data_type::FLOAT,
            &[Err("N"), Ok(channels)],
        ));
    }
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
            concept,
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

pub(crate) fn rename_output(builder: &mut Builder, from: &str, to: &str) {
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
