//! The op table: every ONNX op the compiler knows, with everything the compiler needs to know
//! about it in one row. The relevance family says which file under `ops/` recognises the op and
//! emits its backward step; the other columns replace what used to be separate lists (sign
//! propagation in `graph`, the opset-upgrade list in `normalize`, gate chains, statistics).
//!
//! An op that is not in the table has no LRP treatment and is refused by name. `spray inspect
//! --ops` prints this table; ARCHITECTURE.md points here.

/// How relevance passes through an op on the path from the input to the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpFamily {
    /// Conv, Gemm, MatMul with constant weights: the LRP rules proper (`ops/linear.rs`).
    Linear,
    /// Activations, normalisations, casts, sums and gates: relevance passes on, or is split in
    /// proportion to the inputs' contributions (`ops/elementwise.rs`).
    Elementwise,
    /// Reshapes, transposes, concatenation, splits, pads, slices and element movements:
    /// relevance follows the elements (`ops/layout.rs`).
    Layout,
    /// Max, average and global pooling, mean reductions (`ops/pooling.rs`).
    Pooling,
    /// Attention: Softmax inside the network and the MatMul of two activations
    /// (`ops/attention.rs`; a MatMul with a constant operand stays linear).
    Attention,
    /// Allowed only as the model's last op, where it is stripped (Softmax, LogSoftmax).
    OutputOnly,
    /// Its output describes a shape, not values: relevance never flows through it.
    Shape,
    /// Seen only off the relevance path (shape arithmetic, constants, statistics, masks).
    Support,
}

impl OpFamily {
    pub fn name(self) -> &'static str {
        match self {
            OpFamily::Linear => "linear",
            OpFamily::Elementwise => "elementwise",
            OpFamily::Layout => "layout",
            OpFamily::Pooling => "pooling",
            OpFamily::Attention => "attention",
            OpFamily::OutputOnly => "output only",
            OpFamily::Shape => "shape",
            OpFamily::Support => "off path",
        }
    }

    /// Whether the compiler propagates relevance through this family.
    pub fn on_relevance_path(self) -> bool {
        matches!(
            self,
            OpFamily::Linear
                | OpFamily::Elementwise
                | OpFamily::Layout
                | OpFamily::Pooling
                | OpFamily::Attention
        )
    }
}

/// What an op does to the sign of its values: lets the linear rules drop terms on the negative
/// part of an input that cannot be negative (they are exactly zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignRule {
    /// The output is ≥ 0 whatever the input (Relu, Sigmoid, Softmax, Abs).
    NonNegative,
    /// The output is ≥ 0 when every data input is (pooling, reshapes, concatenation).
    KeepsNonNegative,
    Any,
}

/// Whether a model exported at an old opset may simply be declared at the compiler's opset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsetHistory {
    /// Same semantics for the inputs spray sees from opset 7 to 17.
    Stable,
    /// Attributes became inputs on the way; `normalize::upgrade_opset` converts the node.
    Converted,
    /// Changed or introduced after opset 7: an older model using it is refused.
    Changed,
}

/// The op's part in a normalisation statistic (`mean`, `1/√(var + ε)`), which the compiler
/// holds constant (see `GraphFacts::is_statistic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatisticRole {
    /// Reduces a tensor to a statistic of itself.
    Reduction,
    /// Elementwise or shape arithmetic allowed around the reductions.
    Arithmetic,
    None,
}

/// One row of the op table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpInfo {
    pub name: &'static str,
    pub family: OpFamily,
    pub sign: SignRule,
    pub opset: OpsetHistory,
    /// Elementwise in its single data input: a chain of such ops from `x` makes `g(x)`, so
    /// `x · g(x)` is an activation (SiLU, GELU, Mish), not a product of two activations.
    pub elementwise_unary: bool,
    pub statistic: StatisticRole,
}

impl OpInfo {
    const fn new(name: &'static str, family: OpFamily, opset: OpsetHistory) -> Self {
        OpInfo {
            name,
            family,
            sign: SignRule::Any,
            opset,
            elementwise_unary: false,
            statistic: StatisticRole::None,
        }
    }
    const fn sign(mut self, sign: SignRule) -> Self {
        self.sign = sign;
        self
    }
    const fn unary(mut self) -> Self {
        self.elementwise_unary = true;
        self
    }
    const fn statistic(mut self, role: StatisticRole) -> Self {
        self.statistic = role;
        self
    }
}

use OpFamily::{Attention, Elementwise, Layout, Linear, OutputOnly, Pooling, Shape, Support};
use OpsetHistory::{Changed, Converted, Stable};
use SignRule::{KeepsNonNegative, NonNegative};
use StatisticRole::{Arithmetic, Reduction};

const fn op(name: &'static str, family: OpFamily, opset: OpsetHistory) -> OpInfo {
    OpInfo::new(name, family, opset)
}

/// The table, grouped by family.
pub const OPS: &[OpInfo] = &[
    // Linear layers.
    op("Conv", Linear, Stable),
    op("Gemm", Linear, Stable),
    op("MatMul", Linear, Stable),
    // Activations: relevance passes to the input unchanged.
    op("Relu", Elementwise, Stable).sign(NonNegative).unary(),
    op("LeakyRelu", Elementwise, Stable),
    op("PRelu", Elementwise, Stable),
    op("Elu", Elementwise, Stable),
    op("Selu", Elementwise, Stable),
    op("Celu", Elementwise, Stable),
    op("Sigmoid", Elementwise, Stable).sign(NonNegative).unary(),
    op("HardSigmoid", Elementwise, Stable).unary(),
    op("HardSwish", Elementwise, Stable),
    op("Tanh", Elementwise, Stable).unary(),
    op("Softplus", Elementwise, Stable).unary(),
    op("Softsign", Elementwise, Stable),
    // Also clamps a norm from below (F.normalize: x / max(‖x‖, ε), Swin V2's cosine attention).
    op("Clip", Elementwise, Converted)
        .unary()
        .statistic(Arithmetic),
    op("Gelu", Elementwise, Stable),
    op("Mish", Elementwise, Stable),
    op("Erf", Elementwise, Stable).unary(),
    // Normalisations (a BatchNormalization after a linear layer is merged into it).
    op("BatchNormalization", Elementwise, Converted),
    op("LayerNormalization", Elementwise, Changed),
    op("LRN", Elementwise, Stable),
    op("Identity", Elementwise, Stable)
        .sign(KeepsNonNegative)
        .statistic(Arithmetic),
    op("Cast", Elementwise, Stable).statistic(Arithmetic),
    // Arithmetic: with one constant operand relevance passes; two activations are a sum or a gate.
    op("Add", Elementwise, Stable).unary().statistic(Arithmetic),
    op("Sum", Elementwise, Stable),
    op("Sub", Elementwise, Stable).unary().statistic(Arithmetic),
    op("Mul", Elementwise, Stable).unary().statistic(Arithmetic),
    op("Div", Elementwise, Stable).unary().statistic(Arithmetic),
    // Layout.
    op("Reshape", Layout, Stable)
        .sign(KeepsNonNegative)
        .statistic(Arithmetic),
    op("Flatten", Layout, Stable).sign(KeepsNonNegative),
    op("Squeeze", Layout, Converted)
        .sign(KeepsNonNegative)
        .statistic(Arithmetic),
    op("Unsqueeze", Layout, Converted)
        .sign(KeepsNonNegative)
        .statistic(Arithmetic),
    op("Transpose", Layout, Stable)
        .sign(KeepsNonNegative)
        .statistic(Arithmetic),
    op("Concat", Layout, Stable).sign(KeepsNonNegative),
    op("Split", Layout, Converted),
    op("Pad", Layout, Converted),
    op("Slice", Layout, Converted),
    op("Gather", Layout, Stable),
    op("GatherElements", Layout, Changed),
    op("Tile", Layout, Stable),
    op("Expand", Layout, Stable).statistic(Arithmetic),
    // Pooling.
    op("MaxPool", Pooling, Stable).sign(KeepsNonNegative),
    op("AveragePool", Pooling, Stable).sign(KeepsNonNegative),
    op("GlobalAveragePool", Pooling, Stable).sign(KeepsNonNegative),
    op("GlobalMaxPool", Pooling, Stable).sign(KeepsNonNegative),
    op("ReduceMean", Pooling, Stable).statistic(Reduction),
    // Attention (a MatMul of two activations is routed here from the linear row above).
    op("Softmax", Attention, Converted).sign(NonNegative),
    op("Einsum", Attention, Changed),
    // Stripped at the output.
    op("LogSoftmax", OutputOnly, Converted),
    // Shapes.
    op("Shape", Shape, Stable),
    op("Size", Shape, Stable),
    // Off the relevance path: constants, shape arithmetic, statistics, masks.
    op("Constant", Support, Stable),
    op("ConstantOfShape", Support, Stable),
    op("ConvTranspose", Support, Stable),
    op("Dropout", Support, Converted).sign(KeepsNonNegative),
    op("Sqrt", Support, Stable).statistic(Arithmetic),
    op("Pow", Support, Stable).statistic(Arithmetic),
    op("Reciprocal", Support, Stable).statistic(Arithmetic),
    op("Exp", Support, Stable).unary(),
    op("Log", Support, Stable),
    op("Neg", Support, Stable).unary().statistic(Arithmetic),
    op("Abs", Support, Stable)
        .sign(NonNegative)
        .statistic(Arithmetic),
    op("Equal", Support, Stable),
    op("Less", Support, Stable),
    op("Greater", Support, Stable),
    op("Where", Support, Stable),
    op("Not", Support, Stable),
    op("And", Support, Stable),
    op("Or", Support, Stable),
    op("Floor", Support, Stable),
    op("Ceil", Support, Stable),
    op("Min", Support, Stable).statistic(Arithmetic),
    op("Max", Support, Stable).statistic(Arithmetic),
    op("Range", Support, Stable),
    op("ArgMax", Support, Stable),
    op("ReduceSum", Support, Converted).statistic(Reduction),
    op("ReduceMax", Support, Stable).statistic(Reduction),
    op("ReduceMin", Support, Stable).statistic(Reduction),
    op("ReduceProd", Support, Stable),
    op("ReduceSumSquare", Support, Changed).statistic(Reduction),
    op("ReduceL1", Support, Changed).statistic(Reduction),
    op("ReduceL2", Support, Changed).statistic(Reduction),
];

/// The row of a default-domain op, if the compiler knows it.
pub fn lookup(op_type: &str) -> Option<&'static OpInfo> {
    OPS.iter().find(|info| info.name == op_type)
}

pub(crate) fn family(op_type: &str) -> Option<OpFamily> {
    lookup(op_type).map(|info| info.family)
}

pub(crate) fn sign(op_type: &str) -> SignRule {
    lookup(op_type).map_or(SignRule::Any, |info| info.sign)
}

pub(crate) fn is_elementwise_unary(op_type: &str) -> bool {
    lookup(op_type).is_some_and(|info| info.elementwise_unary)
}

pub(crate) fn statistic_role(op_type: &str) -> StatisticRole {
    lookup(op_type).map_or(StatisticRole::None, |info| info.statistic)
}

/// Whether an old-opset model using `op_type` may be declared at the compiler's opset.
pub(crate) fn survives_opset_upgrade(op_type: &str) -> bool {
    lookup(op_type).is_some_and(|info| info.opset != OpsetHistory::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_one_row() {
        for (i, a) in OPS.iter().enumerate() {
            assert!(
                OPS[i + 1..].iter().all(|b| b.name != a.name),
                "{} appears twice",
                a.name
            );
        }
    }

    #[test]
    fn the_columns_agree_with_each_other() {
        for info in OPS {
            // Only ops that really pass a tensor through can keep its sign.
            if info.sign == SignRule::KeepsNonNegative {
                assert!(
                    matches!(info.family, Layout | Pooling | Elementwise | Support),
                    "{}",
                    info.name
                );
            }
            // Statistic reductions are reductions.
            if info.statistic == StatisticRole::Reduction {
                assert!(info.name.starts_with("Reduce"), "{}", info.name);
            }
        }
        assert_eq!(lookup("Relu").map(|i| i.family), Some(Elementwise));
        assert_eq!(lookup("Einsum").map(|i| i.family), Some(Attention));
        assert!(lookup("NonMaxSuppression").is_none());
    }
}
