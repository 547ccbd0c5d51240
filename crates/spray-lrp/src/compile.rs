//! The LRP compiler: model in, model out, whose outputs are the logits and the relevance of
//! the input for a per-sample target class.
//!
//! The forward graph is kept as it is (so ORT fuses and runs it as usual). Behind it, the
//! backward pass is appended node by node in reverse topological order: each relevance-path
//! node turns the relevance of its output into relevance of its data inputs, using the rule
//! its composite assigns. Linear layers run through ONNX's own Conv/ConvTranspose/Gemm/MatMul
//! with weights modified at compile time.

use std::sync::Arc;

use spray_onnx::{attr, data_type, value_info, GraphProto, ModelProto, Tensor};

use crate::builder::Builder;
use crate::composite::{Composite, CompositeError, CompositeOptions, CompositeSpec};
use crate::concept::{self, ConceptLayer, ConceptOutput, ConceptTensor};
use crate::contract;
use crate::fold::{self, ConstantEvaluator};
use crate::graph::GraphFacts;
use crate::normalize;
use crate::ops::{pooling::PoolingStep, Backward, Treatment};
use crate::plan::{plan, LayerPlan, NodeStep, Plan};
use crate::LrpError;

/// Names of the compiled model's inputs and outputs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// Evaluates the constants the compiler does not evaluate itself (see
    /// [`ConstantEvaluator`]); without one only element moves and integer arithmetic fold.
    pub constant_evaluator: Option<Arc<dyn ConstantEvaluator>>,
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
            constant_evaluator: None,
        })
    }
}

/// Compile `model` into an LRP model under `options.composite`.
pub fn compile(model: &ModelProto, options: &CompileOptions) -> Result<LrpModel, LrpError> {
    compile_owned(model.clone(), options)
}

/// [`compile`] of a model the caller no longer needs: its graph is rewritten in place rather
/// than copied (vgg16's weights are 528 MB).
pub fn compile_owned(
    mut model: ModelProto,
    options: &CompileOptions,
) -> Result<LrpModel, LrpError> {
    options.composite.validate()?;
    let (input, output) = contract::entry_points(&model, options.input.as_deref())?;

    normalize::upgrade_opset(&mut model)?;
    normalize::fit_ir_version(&mut model)?;
    let graph = model.graph.as_mut().expect("checked above");
    normalize::dropout_to_identity(graph)?;
    let logits_source = normalize::strip_output_softmax(graph, &output);
    let batch_relaxed = normalize::relax_fixed_batch(graph, &input);
    let shapes = contract::declared_shapes(graph, &input, &output, &logits_source)?;
    fold::fold_constants(
        graph,
        &model.opset_import,
        model.ir_version,
        &input,
        &logits_source,
        options.constant_evaluator.as_deref(),
    )?;
    normalize::absorb_zero_pads(graph);

    // The walk reads the graph as it was while the rewrite grows it. The weights move into the
    // snapshot rather than being copied, and move back before the new ones are appended.
    let mut snapshot = GraphProto {
        initializer: std::mem::take(&mut graph.initializer),
        ..graph.clone()
    };
    let facts = GraphFacts::new(&snapshot, &input);
    if !facts.is_data(&logits_source) {
        return Err(LrpError::Model(format!(
            "the output '{logits_source}' does not depend on the input '{input}'"
        )));
    }
    let on_path = facts.nodes_reaching(&logits_source);
    let Plan { mut steps, layers } = plan(&facts, &on_path, &options.composite)?;

    let mut builder = Builder::new();
    request_maxpool_indices(&mut builder, &mut steps, graph);
    let names = InterfaceNames::choose(&snapshot, &logits_source, shapes.output_rank);
    let seed = seed_relevance(
        &mut builder,
        &names.target,
        &logits_source,
        shapes.output_rank,
    );

    // The backward pass, node by node in reverse topological order.
    let concept_at = concept::locate(&snapshot, &steps, &options.concept)?;
    let walked = walk_backward(
        Backward::new(builder, &facts),
        &snapshot,
        &steps,
        &concept_at,
        (&logits_source, seed.start),
        &input,
    )?;
    let mut builder = walked.builder;

    // Outputs: logits and relevance under stable names.
    if names.logits != seed.logits2d {
        let logits_node = builder.op("Identity", &[&seed.logits2d], vec![]);
        rename_output(&mut builder, &logits_node, &names.logits);
    }
    let relevance_node = builder.op("Identity", &[&walked.input_relevance], vec![]);
    rename_output(&mut builder, &relevance_node, &names.relevance);
    let concept = if concept_at.is_empty() {
        None
    } else {
        let name = unique_name(&snapshot, "concept_relevance");
        Some(concept::emit(
            &mut builder,
            concept_at,
            &walked.concept_relevance,
            name,
        )?)
    };
    let graph = model.graph.as_mut().expect("checked above");
    graph.initializer = std::mem::take(&mut snapshot.initializer);
    graph.node.extend(builder.nodes);
    graph.initializer.extend(builder.initializers);
    declare_interface(graph, &names, &shapes.input, concept.as_ref());
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
            target: names.target,
            logits: names.logits,
            relevance: names.relevance,
            input_shape: shapes.input,
            batch_relaxed,
            concept,
        },
        layers,
    })
}

/// MaxPool's backward needs the winning indices: ask each planned forward MaxPool for them.
fn request_maxpool_indices(
    builder: &mut Builder,
    steps: &mut [Option<NodeStep>],
    graph: &mut GraphProto,
) {
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
}

/// The compiled model's new input and output names, none colliding with a name in the model.
struct InterfaceNames {
    target: String,
    logits: String,
    relevance: String,
}

impl InterfaceNames {
    fn choose(graph: &GraphProto, logits_source: &str, output_rank: Option<usize>) -> Self {
        let target = unique_name(graph, "target");
        // Keep the model's own name when it already calls its output "logits".
        let logits = if logits_source == "logits" && output_rank == Some(2) {
            logits_source.to_owned()
        } else {
            unique_name(graph, "logits")
        };
        let relevance = unique_name(graph, "relevance");
        InterfaceNames {
            target,
            logits,
            relevance,
        }
    }
}

/// Where the backward pass starts.
struct Seed {
    /// The logits as `[N, K]` (the source itself when it has rank 2).
    logits2d: String,
    /// `one_hot(target) ⊙ logits`, shaped like the logits' source.
    start: String,
}

/// Start: R = one_hot(target) ⊙ logits; a negative target selects the argmax.
fn seed_relevance(
    builder: &mut Builder,
    target: &str,
    logits_source: &str,
    output_rank: Option<usize>,
) -> Seed {
    let logits2d = if output_rank == Some(2) {
        logits_source.to_owned()
    } else {
        builder.op("Flatten", &[logits_source], vec![attr::int("axis", 1)])
    };
    let zero_i = builder.constant("zero_i64", Tensor::i64(vec![], vec![0]));
    let wants_argmax = builder.op("Less", &[target, &zero_i], vec![]);
    let argmax = builder.op(
        "ArgMax",
        &[&logits2d],
        vec![attr::int("axis", 1), attr::int("keepdims", 0)],
    );
    let chosen = builder.op("Where", &[&wants_argmax, &argmax, target], vec![]);
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
        start = builder.reshape_like(&start, logits_source);
    }
    Seed { logits2d, start }
}

/// What the reverse walk leaves behind.
struct Walked {
    builder: Builder,
    /// The relevance of the image input.
    input_relevance: String,
    /// Per located concept layer, the relevance its tensor received.
    concept_relevance: Vec<Option<String>>,
}

/// Walk the planned nodes in reverse topological order from `seed` (the logits' source and its
/// relevance), emitting each node's backward step and keeping the relevance of the concept
/// tensors as the walk passes them.
fn walk_backward(
    mut backward: Backward<'_, '_>,
    graph: &GraphProto,
    steps: &[Option<NodeStep>],
    concept_at: &[(usize, ConceptTensor)],
    seed: (&str, String),
    input: &str,
) -> Result<Walked, LrpError> {
    backward.send(seed.0.to_owned(), seed.1);
    let mut concept_relevance: Vec<Option<String>> = vec![None; concept_at.len()];
    for (i, (node, step)) in graph.node.iter().zip(steps).enumerate().rev() {
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
        .take(input)
        .ok_or_else(|| LrpError::Model("no relevance reached the input".into()))?;
    Ok(Walked {
        builder: backward.b,
        input_relevance,
        concept_relevance,
    })
}

/// Declare the compiled model's inputs and outputs: the `target` input beside the image, and
/// the logits, relevance (shaped like the image input) and concept relevance outputs.
fn declare_interface(
    graph: &mut GraphProto,
    names: &InterfaceNames,
    input_shape: &[Option<i64>],
    concept: Option<&ConceptOutput>,
) {
    graph
        .input
        .push(value_info(&names.target, data_type::INT64, &[Err("N")]));
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
        value_info(&names.logits, data_type::FLOAT, &[Err("N"), Err("K")]),
        value_info(&names.relevance, data_type::FLOAT, &input_dims),
    ];
    if let Some(c) = concept {
        let channels = c.channels() as i64;
        graph.output.push(value_info(
            &c.name,
            data_type::FLOAT,
            &[Err("N"), Ok(channels)],
        ));
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

fn unique_name(graph: &GraphProto, base: &str) -> String {
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
