//! A readable account of a model: its ops, and the rule the compiler gives each layer.

use std::collections::BTreeMap;
use std::fmt::Write;

use spray_onnx::ModelProto;

use crate::compile::{compile, CompileOptions, LrpModel};
use crate::ops::table::{OpsetHistory, SignRule, OPS};
use crate::LrpError;

/// Summary of a model for `spray inspect`.
pub struct Inspection {
    pub op_counts: BTreeMap<String, usize>,
    pub opset: Option<i64>,
    pub producer: String,
    pub compiled: Result<LrpModel, LrpError>,
}

pub fn inspect(model: &ModelProto, options: &CompileOptions) -> Inspection {
    let mut op_counts = BTreeMap::new();
    if let Some(g) = &model.graph {
        for n in &g.node {
            *op_counts.entry(n.op_type.clone()).or_insert(0) += 1;
        }
    }
    Inspection {
        op_counts,
        opset: spray_onnx::default_opset(model),
        producer: format!("{} {}", model.producer_name, model.producer_version),
        compiled: compile(model, options),
    }
}

impl Inspection {
    /// Render as plain text. `shapes` maps tensor names to known shapes for the layer table.
    pub fn render(&self, composite: &str, shapes: &BTreeMap<String, String>) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "producer: {}", self.producer.trim());
        let _ = writeln!(
            s,
            "opset:    {}",
            self.opset.map_or("?".into(), |v| v.to_string())
        );
        let ops: Vec<String> = self
            .op_counts
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect();
        let _ = writeln!(s, "ops:      {}", ops.join(", "));
        match &self.compiled {
            Err(e) => {
                let _ = writeln!(s, "\nLRP: not supported\n{e}");
            }
            Ok(m) => {
                let sig = &m.signature;
                let dims: Vec<String> = sig
                    .input_shape
                    .iter()
                    .map(|d| d.map_or("?".into(), |v| v.to_string()))
                    .collect();
                let _ = writeln!(s, "input:    {} [{}]", sig.input, dims.join(", "));
                if sig.batch_relaxed {
                    let _ = writeln!(
                        s,
                        "          (batch size fixed at export; freed for batching)"
                    );
                }
                let _ = writeln!(
                    s,
                    "\nLRP plan under composite '{composite}' ({} layers on the relevance path):",
                    m.layers.len()
                );
                let _ = writeln!(
                    s,
                    "  {:<4} {:<20} {:<13} {:<22} node",
                    "#", "op", "kind", "rule"
                );
                for (i, l) in m.layers.iter().enumerate() {
                    let mut extra = String::new();
                    if l.first {
                        extra.push_str(" [first layer]");
                    }
                    if !l.merged.is_empty() {
                        let _ = write!(extra, " [merged: {}]", l.merged.join(", "));
                    }
                    if let Some(shape) = shapes.get(&l.node) {
                        let _ = write!(extra, " -> {shape}");
                    }
                    let _ = writeln!(
                        s,
                        "  {:<4} {:<20} {:<13} {:<22} {}{}",
                        i,
                        l.op_type,
                        l.kind.name(),
                        l.rule.label(),
                        l.node,
                        extra
                    );
                }
            }
        }
        s
    }
}

/// The op table ([`crate::ops::table`]) as text, for `spray inspect --ops`.
pub fn render_op_table() -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<12} {:<20} {:<10} notes",
        "op", "family", "sign", "opset 7→17"
    );
    for info in OPS {
        let sign = match info.sign {
            SignRule::NonNegative => "output ≥ 0",
            SignRule::KeepsNonNegative => "keeps ≥ 0",
            SignRule::Any => "",
        };
        let opset = match info.opset {
            OpsetHistory::Stable => "stable",
            OpsetHistory::Converted => "converted",
            OpsetHistory::Changed => "refused",
        };
        let mut notes = Vec::new();
        if info.elementwise_unary {
            notes.push("gate chain");
        }
        match info.statistic {
            crate::ops::table::StatisticRole::Reduction => notes.push("statistic reduction"),
            crate::ops::table::StatisticRole::Arithmetic => notes.push("statistic arithmetic"),
            crate::ops::table::StatisticRole::None => {}
        }
        let _ = writeln!(
            s,
            "{:<20} {:<12} {:<20} {:<10} {}",
            info.name,
            info.family.name(),
            sign,
            opset,
            notes.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\nAn op not listed has no LRP treatment and is refused by name. Families linear, \
         elementwise, layout and pooling carry relevance; 'output only' is stripped at the \
         output; 'shape' and 'off path' never carry relevance."
    );
    s
}
