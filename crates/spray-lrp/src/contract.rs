//! The model contract, checked before anything is rewritten: which input is the image, which
//! output holds the logits, and that the logits are `[N, K]` with `K ≥ 2` classes.

use spray_onnx::{GraphProto, ModelProto};

use crate::LrpError;

/// The image input and the classifier's output of `model`: the model must have a graph and no
/// local functions; the image input is `requested` or the only non-constant input.
pub(crate) fn entry_points(
    model: &ModelProto,
    requested: Option<&str>,
) -> Result<(String, String), LrpError> {
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
    let input = pick_input(graph, requested)?;
    let output = graph
        .output
        .first()
        .map(|o| o.name.clone())
        .ok_or_else(|| LrpError::Model("the model has no outputs".into()))?;
    Ok((input, output))
}

/// What the normalised graph declares about the shapes at its two ends.
pub(crate) struct DeclaredShapes {
    /// The image input's shape (`None` per symbolic dimension; empty when undeclared).
    pub input: Vec<Option<i64>>,
    /// The rank of the tensor the logits come from, where declared.
    pub output_rank: Option<usize>,
}

/// Read the declared shapes of `graph` (normalised: `logits_source` is `output` without a
/// trailing softmax) and check the logits against the model contract.
pub(crate) fn declared_shapes(
    graph: &GraphProto,
    input: &str,
    output: &str,
    logits_source: &str,
) -> Result<DeclaredShapes, LrpError> {
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
    let logits_shape = shape_of(logits_source).or_else(|| shape_of(output));
    check_logits_shape(output, logits_shape.as_deref())?;
    Ok(DeclaredShapes {
        input: input_shape,
        output_rank: shape_of(logits_source).map(|s| s.len()),
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

fn pick_input(graph: &GraphProto, requested: Option<&str>) -> Result<String, LrpError> {
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
