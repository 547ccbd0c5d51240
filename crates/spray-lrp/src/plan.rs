//! The plan: which relevance-path node gets which treatment and which rule, decided for the
//! whole graph before any backward node is emitted, so every unsupported node is reported at
//! once and `spray inspect` shows the plan without running anything.

use crate::composite::{Composite, LayerKind};
use crate::graph::GraphFacts;
use crate::ops::{self, node_key, Treatment};
use crate::rules::Rule;
use crate::{LrpError, UnsupportedNode};

/// One relevance-path node and what the compiler does with it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerPlan {
    pub node: String,
    pub op_type: String,
    pub kind: LayerKind,
    pub rule: Rule,
    /// Nodes folded into this layer (BatchNormalization, bias Add).
    pub merged: Vec<String>,
    pub first: bool,
}

/// What the backward pass does at one node: its treatment and the rule of its layer (none for
/// a node merged into a linear layer).
#[derive(Debug, Clone)]
pub(crate) struct NodeStep {
    pub treatment: Treatment,
    pub rule: Option<Rule>,
}

/// What the compiler does with each node, indexed like the graph's nodes.
pub(crate) struct Plan {
    /// `None` for nodes off the relevance path.
    pub steps: Vec<Option<NodeStep>>,
    /// The relevance-path nodes in forward order, for `inspect`.
    pub layers: Vec<LayerPlan>,
}

/// Classify every relevance-path node and assign rules. All unsupported nodes are reported at once.
pub(crate) fn plan(
    facts: &GraphFacts<'_>,
    on_path: &[bool],
    composite: &Composite,
) -> Result<Plan, LrpError> {
    let nodes = &facts.graph.node;
    let mut steps: Vec<Option<NodeStep>> = vec![None; nodes.len()];
    let mut unsupported = Vec::new();
    let mut first_assigned = false;
    let mut layers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if !on_path[i] || steps[i].is_some() {
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
        match ops::classify(facts, i) {
            Ok((mut treatment, kind, absorbed)) => {
                // Classification does not see the composite; its attention rule shapes the
                // step here (the LayerNorm rule arrives as the layer's rule).
                if let Treatment::Attention(step) = treatment {
                    treatment = Treatment::Attention(step.under(composite.attention));
                }
                let mut merged = Vec::new();
                for &j in &absorbed {
                    steps[j] = Some(NodeStep {
                        treatment: Treatment::Merged,
                        rule: None,
                    });
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
                layers.push(LayerPlan {
                    node: node_key(node),
                    op_type: node.op_type.clone(),
                    kind,
                    rule: rule.clone(),
                    merged,
                    first,
                });
                steps[i] = Some(NodeStep {
                    treatment,
                    rule: Some(rule),
                });
            }
            Err(reason) => unsupported.push(refuse(&reason)),
        }
    }
    if !unsupported.is_empty() {
        return Err(LrpError::Unsupported(unsupported));
    }
    Ok(Plan { steps, layers })
}
