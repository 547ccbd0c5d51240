//! Concept relevance: besides the relevance of the input, the compiled model can output how
//! much of the explained logit flows through each channel of chosen intermediate layers — the
//! relevance that reached the layer's output, summed over every axis after the channel axis.
//!
//! Why: a shortcut that is not at a fixed place (a mark anywhere in the image, a colour cast
//! over all of it) gives no common region in the input-relevance maps, but it is carried by
//! the same feature maps wherever it is, so its images share a channel profile. Channel-wise
//! ops between a layer and the next linear one (ReLU, pooling, BatchNorm) move relevance
//! within a channel, so the per-channel sums are the same at any of them.
//!
//! In a vision transformer the features are the residual stream's channels, the last axis of
//! `[N, tokens, D]`: the defaults there are the stream after the middle block and after the last
//! one (the inputs of the LayerNorms that open a block and close the encoder), summed over tokens.

use spray_onnx::{attr, GraphProto};

use crate::builder::Builder;
use crate::compile::rename_output;
use crate::ops::elementwise::ElementwiseStep;
use crate::ops::Treatment;
use crate::plan::NodeStep;
use crate::LrpError;

/// Which intermediate layer's relevance to output per channel. Written in files as
/// `"last-conv"`, `"middle-conv"` or a node's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConceptLayer {
    /// The output of the last convolution on the relevance path (after a merged BatchNorm):
    /// the deepest feature maps that still have channels. In a transformer (a model with
    /// attention), the residual stream entering the last LayerNorm.
    LastConv,
    /// The middle one of the relevance path's convolutions (index ⌊n/2⌋ of n in graph order):
    /// mid-level features, which see small marks and textures that the last layer has
    /// already pooled into object parts. In a transformer, the residual stream entering the
    /// middle one of its LayerNorms (⌊n/2⌋ of n: the stream after the middle block).
    MiddleConv,
    /// A node by name (or the tensor it produces): a Conv or Gemm, or any node whose output's
    /// declared shape gives the channel count on axis 1.
    Node(String),
}

impl ConceptLayer {
    /// The default for `spray run`: mid-level and top-level features. Measured on the
    /// scenario suite (benches/RESULTS.md): neither layer alone isolates every artifact.
    pub fn defaults() -> Vec<ConceptLayer> {
        vec![ConceptLayer::MiddleConv, ConceptLayer::LastConv]
    }
}

impl std::fmt::Display for ConceptLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConceptLayer::LastConv => f.write_str("last-conv"),
            ConceptLayer::MiddleConv => f.write_str("middle-conv"),
            ConceptLayer::Node(name) => f.write_str(name),
        }
    }
}

impl std::str::FromStr for ConceptLayer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Err("a concept layer is \"last-conv\", \"middle-conv\" or a node's name".into()),
            "last-conv" => Ok(ConceptLayer::LastConv),
            "middle-conv" => Ok(ConceptLayer::MiddleConv),
            name => Ok(ConceptLayer::Node(name.to_owned())),
        }
    }
}

impl serde::Serialize for ConceptLayer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for ConceptLayer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a concept tensor keeps its channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelAxis {
    /// `[N, C, …]`: feature maps.
    #[default]
    Second,
    /// `[N, …, C]`: a transformer's tokens.
    Last,
}

impl ChannelAxis {
    fn is_second(&self) -> bool {
        *self == ChannelAxis::Second
    }
}

/// One layer of the concept output.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConceptTensor {
    /// The node whose output it is.
    pub node: String,
    /// The tensor whose relevance is summed.
    pub tensor: String,
    /// C, from the layer's weight, the tensor's declared shape or the LayerNorm's scale.
    pub channels: usize,
    /// Serialised only for tokens, so feature-map layers keep their bytes.
    #[serde(default, skip_serializing_if = "ChannelAxis::is_second")]
    pub channel_axis: ChannelAxis,
}

/// The compiled model's concept output: `float32 [N, ΣC]`, the layers' per-channel relevance
/// side by side in `layers` order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConceptOutput {
    pub name: String,
    pub layers: Vec<ConceptTensor>,
}

impl ConceptOutput {
    pub fn channels(&self) -> usize {
        self.layers.iter().map(|l| l.channels).sum()
    }
}

/// Find the requested layers: per layer its node index and tensor, in request order, each
/// layer once. `LastConv`/`MiddleConv` find nothing in a model without convolutions (then
/// there is no concept output); a named node that is not on the relevance path, or whose
/// channel count is unknown, is refused, naming the model's convolutions.
pub(crate) fn locate(
    graph: &GraphProto,
    steps: &[Option<NodeStep>],
    layers: &[ConceptLayer],
) -> Result<Vec<(usize, ConceptTensor)>, LrpError> {
    let declared_channels = |tensor: &str| {
        graph
            .value_info
            .iter()
            .chain(&graph.output)
            .find(|v| v.name == tensor)
            .and_then(spray_onnx::value_shape)
            .and_then(|s| s.get(1).copied().flatten())
            .and_then(|c| usize::try_from(c).ok())
    };
    let candidate = |i: usize| -> Option<(usize, ConceptTensor)> {
        let (tensor, channels) = match &steps[i].as_ref()?.treatment {
            Treatment::Linear(layer) => (layer.output.clone(), layer.out_channels()),
            Treatment::Merged | Treatment::Split { .. } => return None,
            _ => (graph.node[i].output.first()?.clone(), None),
        };
        let channels = channels.or_else(|| declared_channels(&tensor))?;
        Some((
            i,
            ConceptTensor {
                node: graph.node[i].name.clone(),
                tensor,
                channels,
                channel_axis: ChannelAxis::Second,
            },
        ))
    };
    let convs: Vec<usize> = (0..graph.node.len())
        .filter(|&i| graph.node[i].op_type == "Conv" && steps[i].is_some())
        .collect();
    let streams = residual_streams(graph, steps);
    let transformer = steps
        .iter()
        .flatten()
        .any(|s| matches!(s.treatment, Treatment::Attention(_)));
    let mut found: Vec<(usize, ConceptTensor)> = Vec::new();
    for layer in layers {
        let hit = match layer {
            ConceptLayer::LastConv if transformer => streams.last().cloned(),
            ConceptLayer::MiddleConv if transformer => streams.get(streams.len() / 2).cloned(),
            ConceptLayer::LastConv => convs.iter().rev().find_map(|&i| candidate(i)),
            ConceptLayer::MiddleConv => convs.get(convs.len() / 2).and_then(|&i| candidate(i)),
            ConceptLayer::Node(name) => {
                let at = (0..graph.node.len()).find(|&i| {
                    let node = &graph.node[i];
                    node.name == *name || node.output.iter().any(|o| o == name)
                });
                match at.and_then(candidate) {
                    Some(hit) => Some(hit),
                    None => {
                        let names: Vec<&str> =
                            convs.iter().map(|&i| graph.node[i].name.as_str()).collect();
                        return Err(LrpError::Model(format!(
                            "the concept layer '{name}' is not a relevance-path node with a \
                             known channel count{}",
                            if names.is_empty() {
                                String::new()
                            } else {
                                format!(" (the model's convolutions: {})", names.join(", "))
                            }
                        )));
                    }
                }
            }
        };
        if let Some(hit) = hit {
            if !found.iter().any(|(at, _)| *at == hit.0) {
                found.push(hit);
            }
        }
    }
    Ok(found)
}

/// The tensors entering the relevance path's LayerNorms, in graph order, as token concept
/// tensors (channels last, from the LayerNorm's scale): a transformer's residual stream.
fn residual_streams(graph: &GraphProto, steps: &[Option<NodeStep>]) -> Vec<(usize, ConceptTensor)> {
    let mut streams: Vec<(usize, ConceptTensor)> = Vec::new();
    for step in steps.iter().flatten() {
        let Treatment::Elementwise(ElementwiseStep::LayerNorm { input, scale, .. }) =
            &step.treatment
        else {
            continue;
        };
        let Some(producer) = graph
            .node
            .iter()
            .position(|n| n.output.first() == Some(input))
            .filter(|&p| matches!(&steps[p], Some(s) if !matches!(s.treatment, Treatment::Merged)))
        else {
            continue;
        };
        let Some(channels) = graph
            .initializer
            .iter()
            .find(|t| &t.name == scale)
            .and_then(|t| t.dims.iter().product::<i64>().try_into().ok())
        else {
            continue;
        };
        if streams.iter().any(|(at, _)| *at == producer) {
            continue;
        }
        streams.push((
            producer,
            ConceptTensor {
                node: graph.node[producer].name.clone(),
                tensor: input.clone(),
                channels,
                channel_axis: ChannelAxis::Last,
            },
        ));
    }
    streams.sort_by_key(|(at, _)| *at);
    streams
}

/// Emit the concept output: each layer's relevance `[N, C, ...]` → `[N, C, rest]` → Σ over
/// rest → `[N, C]` (tokens `[N, ..., C]` → `[N, rest, C]` → Σ over rest), concatenated along
/// axis 1, under `name`.
pub(crate) fn emit(
    builder: &mut Builder,
    located: Vec<(usize, ConceptTensor)>,
    relevance: &[Option<String>],
    name: String,
) -> Result<ConceptOutput, LrpError> {
    let mut sums = Vec::new();
    for ((_, layer), r) in located.iter().zip(relevance) {
        let Some(r) = r else {
            return Err(LrpError::Model(format!(
                "no relevance reached the concept layer '{}'",
                layer.node
            )));
        };
        let (shape, axis) = match layer.channel_axis {
            ChannelAxis::Second => (builder.ints(&[0, 0, -1]), 2),
            ChannelAxis::Last => (builder.ints(&[0, -1, layer.channels as i64]), 1),
        };
        let flat = builder.op("Reshape", &[r, &shape], vec![]);
        let axes = builder.ints(&[axis]);
        sums.push(builder.op("ReduceSum", &[&flat, &axes], vec![attr::int("keepdims", 0)]));
    }
    let refs: Vec<&str> = sums.iter().map(String::as_str).collect();
    let joined = builder.op("Concat", &refs, vec![attr::int("axis", 1)]);
    rename_output(builder, &joined, &name);
    Ok(ConceptOutput {
        name,
        layers: located.into_iter().map(|(_, l)| l).collect(),
    })
}
