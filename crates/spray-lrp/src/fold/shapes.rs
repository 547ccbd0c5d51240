//! Static shapes of the tensors that depend on the input, as far as the graph fixes them:
//! what `Shape` of an activation reports without running the model. A dimension is known (a
//! number), a named symbol (the free batch dimension `N`, equal wherever it appears), or
//! unknown. Whatever an op does that is not modelled here makes its outputs unknown, so a
//! shape is only ever folded where the graph alone determines it.
//!
//! Exporters turn `x.size(2)` into `Gather(Shape(x), 2)`: [`Partial`] holds such a shape
//! vector with some entries symbolic, so the entries that are known become constants even when
//! the batch dimension is free.

use spray_onnx::{NodeExt, NodeProto};

use super::eval::{normalize_axis, shape_range, slice_plan, squeeze_dims, unsqueeze_dims};
use super::value::Value;

/// One dimension of a static shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dim {
    Known(i64),
    /// A dimension the graph names (`dim_param`): unknown, but equal to others of its name.
    Symbol(String),
    /// A named dimension times a constant (≥ 2): Swin's windows of a batch, `B · nW`, which
    /// its graph divides back by `nW` and reshapes to `B`.
    Multiple(String, i64),
    Unknown,
}

impl From<i64> for Dim {
    fn from(v: i64) -> Self {
        Dim::Known(v)
    }
}

impl Dim {
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            _ => None,
        }
    }

    /// The dimension as `factor · symbol` (symbol `None` for a known size).
    fn monomial(&self) -> Option<(i64, Option<&str>)> {
        match self {
            Dim::Known(v) => Some((*v, None)),
            Dim::Symbol(s) => Some((1, Some(s))),
            Dim::Multiple(s, k) => Some((*k, Some(s))),
            Dim::Unknown => None,
        }
    }

    fn from_monomial(factor: i64, symbol: Option<&str>) -> Dim {
        match symbol {
            None => Dim::Known(factor),
            Some(s) if factor == 1 => Dim::Symbol(s.to_owned()),
            Some(s) if factor > 1 => Dim::Multiple(s.to_owned(), factor),
            Some(_) => Dim::Unknown,
        }
    }

    /// This shape entry times (`Mul`) or over (`Div`, integer) a constant; unknown where the
    /// quotient of a symbolic entry is not exact.
    fn scaled(&self, op: &str, c: i64) -> Dim {
        let Some((factor, symbol)) = self.monomial() else {
            return Dim::Unknown;
        };
        match op {
            "Mul" => Dim::from_monomial(factor * c, symbol),
            "Div" if c != 0 && (symbol.is_none() || factor % c == 0) => {
                Dim::from_monomial(factor / c, symbol)
            }
            _ => Dim::Unknown,
        }
    }
}

pub(crate) type Shape = Vec<Dim>;

pub(crate) fn known_shape(dims: &[i64]) -> Shape {
    dims.iter().map(|&d| Dim::Known(d)).collect()
}

/// An int64 shape vector (rank 0 or 1) of which some entries are symbolic.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Partial {
    pub dims: Vec<i64>,
    pub values: Vec<Dim>,
}

/// What an input of a node is known to be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Known<'a> {
    Value(&'a Value),
    Partial(&'a Partial),
    /// A tensor whose values are not known here (an activation, or a large constant): its
    /// static shape, where any.
    Shaped(Option<&'a Shape>),
    Nothing,
}

impl<'a> Known<'a> {
    fn value(self) -> Option<&'a Value> {
        match self {
            Known::Value(v) => Some(v),
            _ => None,
        }
    }
    fn ints(self) -> Option<Vec<i64>> {
        self.value()?.ints()
    }
    /// Entries of a shape-like int vector: constant or partial.
    fn entries(self) -> Option<(Vec<i64>, Vec<Dim>)> {
        match self {
            Known::Value(v) if v.elem_type == spray_onnx::data_type::INT64 => Some((
                v.dims.clone(),
                v.ints()?.into_iter().map(Dim::Known).collect(),
            )),
            Known::Partial(p) => Some((p.dims.clone(), p.values.clone())),
            _ => None,
        }
    }
    /// The tensor's static shape: a constant's dimensions or an activation's inferred shape.
    fn shape(self) -> Option<Shape> {
        match self {
            Known::Value(v) => Some(known_shape(&v.dims)),
            Known::Partial(p) => Some(known_shape(&p.dims)),
            Known::Shaped(s) => s.cloned(),
            Known::Nothing => None,
        }
    }
}

/// A shape vector or shape entry derived from `Shape` of an activation: a constant once every
/// entry is known.
pub(crate) enum Derived {
    Value(Value),
    Partial(Partial),
}

impl Derived {
    fn of(dims: Vec<i64>, values: Vec<Dim>) -> Derived {
        match values.iter().map(Dim::known).collect::<Option<Vec<i64>>>() {
            Some(ints) => Derived::Value(Value::i64s(dims, &ints)),
            None => Derived::Partial(Partial { dims, values }),
        }
    }
}

/// `Shape` and `Size` of an activation and the ops exporters apply to a shape (Gather, Slice, Concat,
/// Unsqueeze, Squeeze, Identity, Cast to int64), where at least one input is partial or an
/// activation's shape; `None` for anything else.
pub(crate) fn derive(node: &NodeProto, inputs: &[Known<'_>]) -> Option<Derived> {
    let first = *inputs.first()?;
    match node.op_type.as_str() {
        "Shape" => {
            let shape = match first {
                Known::Shaped(s) => s?,
                _ => return None,
            };
            let (start, end) = shape_range(node, shape.len());
            let picked = shape[start..end.max(start)].to_vec();
            Some(Derived::of(vec![picked.len() as i64], picked))
        }
        "Size" => {
            let shape = match first {
                Known::Shaped(s) => s?,
                _ => return None,
            };
            let n: Option<i64> = shape.iter().map(Dim::known).product();
            Some(Derived::Value(Value::i64s(vec![], &[n?])))
        }
        "Identity" => Some(Derived::Partial(partial(first)?.clone())),
        "Cast" if node.attr_int("to") == Some(spray_onnx::data_type::INT64 as i64) => {
            Some(Derived::Partial(partial(first)?.clone()))
        }
        "Gather" => {
            let p = partial(first)?;
            let indices = inputs.get(1)?.value()?;
            if p.dims.len() != 1 || normalize_axis(node.attr_int("axis").unwrap_or(0), 1) != Some(0)
            {
                return None;
            }
            let len = p.values.len() as i64;
            let picked: Vec<Dim> = indices
                .ints()?
                .into_iter()
                .map(|i| {
                    let i = if i < 0 { i + len } else { i };
                    (0..len).contains(&i).then(|| p.values[i as usize].clone())
                })
                .collect::<Option<_>>()?;
            Some(Derived::of(indices.dims.clone(), picked))
        }
        "Slice" => {
            let p = partial(first)?;
            let get = |i: usize| inputs.get(i).and_then(|k| k.ints());
            let plan = slice_plan(
                &p.dims,
                &get(1)?,
                &get(2)?,
                get(3).as_deref(),
                get(4).as_deref(),
            )?;
            let [axis] = plan.as_slice() else {
                return None;
            };
            let picked = (0..axis.count)
                .map(|i| p.values[(axis.start + i * axis.step) as usize].clone())
                .collect();
            Some(Derived::of(vec![axis.count], picked))
        }
        "Concat" => {
            if !inputs.iter().any(|k| matches!(k, Known::Partial(_))) {
                return None;
            }
            let mut values = Vec::new();
            for k in inputs {
                let (dims, entries) = k.entries()?;
                if dims.len() != 1 {
                    return None;
                }
                values.extend(entries);
            }
            Some(Derived::of(vec![values.len() as i64], values))
        }
        "Unsqueeze" => {
            let p = partial(first)?;
            let axes = inputs.get(1)?.ints()?;
            (p.dims.is_empty() && matches!(axes.as_slice(), [0] | [-1]))
                .then(|| Derived::of(vec![1], p.values.clone()))
        }
        "Squeeze" => {
            let p = partial(first)?;
            (p.dims == [1]).then(|| Derived::of(vec![], p.values.clone()))
        }
        // Shape arithmetic with a constant: `B · nW`, `x.size(0) // nW`.
        "Mul" | "Div" => {
            let (p, c) = match (first, *inputs.get(1)?) {
                (Known::Partial(p), Known::Value(c)) => (p, c),
                (Known::Value(c), Known::Partial(p)) if node.op_type == "Mul" => (p, c),
                _ => return None,
            };
            let [c] = c.ints()?[..] else {
                return None;
            };
            let dims = if p.dims.len() >= c_rank(inputs) {
                p.dims.clone()
            } else {
                vec![1]
            };
            let values = p
                .values
                .iter()
                .map(|d| d.scaled(&node.op_type, c))
                .collect();
            Some(Derived::of(dims, values))
        }
        _ => None,
    }
}

/// The rank of the constant operand of a binary shape op (0 or 1).
fn c_rank(inputs: &[Known<'_>]) -> usize {
    inputs
        .iter()
        .filter_map(|k| k.value())
        .map(|v| v.dims.len())
        .max()
        .unwrap_or(0)
}

fn partial<'a>(k: Known<'a>) -> Option<&'a Partial> {
    match k {
        Known::Partial(p) => Some(p),
        _ => None,
    }
}

/// The static shapes of an activation-producing node's outputs, from its inputs' shapes and
/// constant arguments; `None` for each output whose shape the graph does not fix (or that is
/// not modelled here).
pub(crate) fn infer(node: &NodeProto, inputs: &[Known<'_>]) -> Vec<Option<Shape>> {
    let mut out = vec![None; node.output.len()];
    if !node.domain.is_empty() {
        return out;
    }
    if node.op_type == "Split" {
        if let Some(parts) = split(node, inputs) {
            for (slot, shape) in out.iter_mut().zip(parts) {
                *slot = Some(shape);
            }
        }
        return out;
    }
    if let Some(first) = out.first_mut() {
        *first = infer_first(node, inputs);
    }
    out
}

/// Ops whose (first) output has the first input's shape.
const SAME_SHAPE: &[&str] = &[
    "Relu",
    "LeakyRelu",
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
    "BatchNormalization",
    "LayerNormalization",
    "LRN",
    "Identity",
    "Cast",
    "Dropout",
    "Softmax",
    "LogSoftmax",
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "Floor",
    "Ceil",
    "Not",
    "Sin",
    "Cos",
];

/// Ops whose output is the multidirectional broadcast of all inputs.
const BROADCAST: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "PRelu",
    "Sum",
    "Max",
    "Min",
    "Mean",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Where",
];

fn infer_first(node: &NodeProto, inputs: &[Known<'_>]) -> Option<Shape> {
    let op = node.op_type.as_str();
    let shape = |i: usize| inputs.get(i).and_then(|k| k.shape());
    let ints = |i: usize| inputs.get(i).and_then(|k| k.ints());
    if SAME_SHAPE.contains(&op) {
        return shape(0);
    }
    if BROADCAST.contains(&op) {
        let shapes: Vec<Shape> = inputs.iter().map(|k| k.shape()).collect::<Option<_>>()?;
        return broadcast(&shapes);
    }
    match op {
        "Conv" => conv(node, &shape(0)?, &shape(1)?),
        "MaxPool" | "AveragePool" => pool(node, &shape(0)?),
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let x = shape(0)?;
            (x.len() >= 2).then(|| {
                let mut out = x[..2].to_vec();
                out.resize(x.len(), Dim::Known(1));
                out
            })
        }
        "Gemm" => {
            let (a, b) = (shape(0)?, shape(1)?);
            let [a0, a1] = a.as_slice() else { return None };
            let [b0, b1] = b.as_slice() else { return None };
            let m = if node.attr_int("transA").unwrap_or(0) != 0 {
                a1
            } else {
                a0
            };
            let n = if node.attr_int("transB").unwrap_or(0) != 0 {
                b0
            } else {
                b1
            };
            Some(vec![m.clone(), n.clone()])
        }
        "MatMul" => matmul(&shape(0)?, &shape(1)?),
        "Flatten" => {
            let x = shape(0)?;
            let axis = normalize_axis(node.attr_int("axis").unwrap_or(1), x.len() + 1)?;
            Some(vec![product(&x[..axis]), product(&x[axis..])])
        }
        "Reshape" => {
            let (_, target) = inputs.get(1)?.entries()?;
            reshape(
                &shape(0)?,
                &target,
                node.attr_int("allowzero").unwrap_or(0) != 0,
            )
        }
        "Squeeze" => squeeze(&shape(0)?, ints(1)),
        "Unsqueeze" => unsqueeze_dims(&shape(0)?, &ints(1)?),
        "Transpose" => {
            let x = shape(0)?;
            match node.attr_ints("perm") {
                Some(perm) => perm
                    .iter()
                    .map(|&p| Some(x.get(normalize_axis(p, x.len())?)?.clone()))
                    .collect(),
                None => Some(x.iter().rev().cloned().collect()),
            }
        }
        "Concat" => {
            let shapes: Vec<Shape> = inputs.iter().map(|k| k.shape()).collect::<Option<_>>()?;
            let first = shapes.first()?;
            let axis = normalize_axis(node.attr_int("axis")?, first.len())?;
            let mut out = first.clone();
            out[axis] = shapes
                .iter()
                .map(|s| s.get(axis).and_then(Dim::known))
                .sum::<Option<i64>>()
                .map_or(Dim::Unknown, Dim::Known);
            Some(out)
        }
        "Pad" => pad(&shape(0)?, &ints(1)?, ints(3)),
        "Slice" => slice(&shape(0)?, &ints(1)?, &ints(2)?, ints(3), ints(4)),
        "Gather" => {
            let x = shape(0)?;
            let indices = shape(1)?;
            let axis = normalize_axis(node.attr_int("axis").unwrap_or(0), x.len())?;
            let mut out = x[..axis].to_vec();
            out.extend(indices);
            out.extend_from_slice(&x[axis + 1..]);
            Some(out)
        }
        "Expand" => {
            let (_, target) = inputs.get(1)?.entries()?;
            broadcast(&[shape(0)?, target])
        }
        "Tile" => {
            let x = shape(0)?;
            let repeats = ints(1)?;
            (repeats.len() == x.len()).then(|| {
                x.iter()
                    .zip(&repeats)
                    .map(|(d, &r)| match d {
                        Dim::Known(v) => Dim::Known(v * r),
                        _ if r == 1 => d.clone(),
                        _ => Dim::Unknown,
                    })
                    .collect()
            })
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd"
        | "ReduceSumSquare" | "ReduceL1" | "ReduceL2" | "ArgMax" | "ArgMin" => {
            reduce(node, &shape(0)?, inputs.get(1).and_then(|k| k.ints()))
        }
        _ => None,
    }
}

fn squeeze(x: &Shape, axes: Option<Vec<i64>>) -> Option<Shape> {
    match axes {
        Some(axes) => {
            let drop: Vec<usize> = axes
                .iter()
                .map(|&a| normalize_axis(a, x.len()))
                .collect::<Option<_>>()?;
            Some(
                (0..x.len())
                    .filter(|i| !drop.contains(i))
                    .map(|i| x[i].clone())
                    .collect(),
            )
        }
        None => {
            let dims: Vec<i64> = x.iter().map(Dim::known).collect::<Option<_>>()?;
            Some(known_shape(&squeeze_dims(&dims, None)?))
        }
    }
}

fn pad(x: &Shape, pads: &[i64], axes: Option<Vec<i64>>) -> Option<Shape> {
    let axes: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| normalize_axis(a, x.len()))
            .collect::<Option<_>>()?,
        None => (0..x.len()).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return None;
    }
    let mut out = x.clone();
    for (i, &axis) in axes.iter().enumerate() {
        let (begin, end) = (pads[i], pads[i + axes.len()]);
        out[axis] = match &x[axis] {
            Dim::Known(d) => Dim::Known(d + begin + end),
            _ if begin == 0 && end == 0 => x[axis].clone(),
            _ => Dim::Unknown,
        };
    }
    Some(out)
}

fn slice(
    x: &Shape,
    starts: &[i64],
    ends: &[i64],
    axes: Option<Vec<i64>>,
    steps: Option<Vec<i64>>,
) -> Option<Shape> {
    let mut out = x.clone();
    for (i, &start) in starts.iter().enumerate() {
        let axis = match &axes {
            Some(a) => normalize_axis(*a.get(i)?, x.len())?,
            None => i,
        };
        let step = steps.as_ref().map_or(Some(1), |s| s.get(i).copied())?;
        let end = *ends.get(i)?;
        let whole = start == 0 && end >= i64::from(i32::MAX) && step == 1;
        out[axis] = match x.get(axis)? {
            Dim::Known(d) => Dim::Known(super::eval::slice_axis(*d, start, end, step)?.count),
            other if whole => other.clone(),
            _ => Dim::Unknown,
        };
    }
    Some(out)
}

/// The product of dimensions: known when all are, else unknown.
fn product(dims: &[Dim]) -> Dim {
    dims.iter()
        .map(Dim::known)
        .product::<Option<i64>>()
        .map_or(Dim::Unknown, Dim::Known)
}

fn broadcast(shapes: &[Shape]) -> Option<Shape> {
    let rank = shapes.iter().map(Vec::len).max()?;
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let dims: Vec<&Dim> = shapes
            .iter()
            .filter(|s| i + s.len() >= rank)
            .map(|s| &s[i + s.len() - rank])
            .collect();
        // A known size above 1 decides (the others are 1 or equal); otherwise all must agree.
        let sizes: Vec<i64> = dims
            .iter()
            .filter_map(|d| d.known())
            .filter(|&v| v != 1)
            .collect();
        let dim = match sizes.first() {
            Some(&v) if sizes.iter().all(|&s| s == v) => Dim::Known(v),
            Some(_) => return None,
            None => {
                let others: Vec<&&Dim> = dims.iter().filter(|d| **d != &Dim::Known(1)).collect();
                match others.first() {
                    None => Dim::Known(1),
                    Some(d) if others.iter().all(|o| o == d) => (**d).clone(),
                    Some(_) => Dim::Unknown,
                }
            }
        };
        out.push(dim);
    }
    Some(out)
}

fn reshape(x: &Shape, target: &[Dim], allow_zero: bool) -> Option<Shape> {
    let mut out: Vec<Dim> = target
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Known(0) if !allow_zero => x.get(i).cloned().unwrap_or(Dim::Unknown),
            other => other.clone(),
        })
        .collect();
    let Some(pos) = out.iter().position(|d| *d == Dim::Known(-1)) else {
        return Some(out);
    };
    // −1: the input's size over the other target sizes, where the symbols cancel.
    let (mut total, mut symbols) = (1i64, Vec::new());
    for d in x {
        match d.monomial() {
            Some((factor, symbol)) => {
                total *= factor;
                symbols.extend(symbol.map(str::to_owned));
            }
            None => {
                out[pos] = Dim::Unknown;
                return Some(out);
            }
        }
    }
    let mut known = 1i64;
    for (i, d) in out.iter().enumerate() {
        if i == pos {
            continue;
        }
        let Some((factor, symbol)) = d.monomial() else {
            out[pos] = Dim::Unknown;
            return Some(out);
        };
        known *= factor;
        if let Some(s) = symbol {
            match symbols.iter().position(|t| t == s) {
                Some(j) => {
                    symbols.remove(j);
                }
                None => {
                    out[pos] = Dim::Unknown;
                    return Some(out);
                }
            }
        }
    }
    out[pos] = if symbols.is_empty() && known != 0 && total % known == 0 {
        Dim::Known(total / known)
    } else {
        Dim::Unknown
    };
    Some(out)
}

fn conv(node: &NodeProto, x: &Shape, w: &Shape) -> Option<Shape> {
    let spatial = x.len().checked_sub(2)?;
    if w.len() != x.len() {
        return None;
    }
    let kernel: Vec<i64> = match node.attr_ints("kernel_shape") {
        Some(k) => k.to_vec(),
        None => w[2..].iter().map(Dim::known).collect::<Option<_>>()?,
    };
    let mut out = vec![x[0].clone(), w[0].clone()];
    out.extend(windows(node, &x[2..], &kernel, spatial, false)?);
    Some(out)
}

fn pool(node: &NodeProto, x: &Shape) -> Option<Shape> {
    let spatial = x.len().checked_sub(2)?;
    let kernel = node.attr_ints("kernel_shape")?.to_vec();
    // ceil_mode's last-window rule differs between ONNX versions: not folded.
    if node.attr_int("ceil_mode").unwrap_or(0) != 0 {
        return None;
    }
    let mut out = x[..2].to_vec();
    out.extend(windows(node, &x[2..], &kernel, spatial, true)?);
    Some(out)
}

/// Output sizes of a sliding window (Conv, pooling) over `sizes`.
fn windows(
    node: &NodeProto,
    sizes: &[Dim],
    kernel: &[i64],
    spatial: usize,
    pooling: bool,
) -> Option<Vec<Dim>> {
    if kernel.len() != spatial {
        return None;
    }
    let attr = |name: &str, default: i64, n: usize| -> Vec<i64> {
        node.attr_ints(name)
            .map(<[i64]>::to_vec)
            .unwrap_or_else(|| vec![default; n])
    };
    let strides = attr("strides", 1, spatial);
    let dilations = attr("dilations", 1, spatial);
    let pads = attr("pads", 0, 2 * spatial);
    if strides.len() != spatial || dilations.len() != spatial || pads.len() != 2 * spatial {
        return None;
    }
    let auto_pad = node.attr_string("auto_pad").unwrap_or_default();
    // MaxPool has dilations; AveragePool ignores them (always 1).
    let dilation = |i: usize| {
        if pooling && node.op_type == "AveragePool" {
            1
        } else {
            dilations[i]
        }
    };
    (0..spatial)
        .map(|i| {
            let Dim::Known(n) = sizes[i] else {
                return Some(Dim::Unknown);
            };
            let extent = (kernel[i] - 1) * dilation(i) + 1;
            let s = strides[i];
            if s <= 0 {
                return None;
            }
            let size = match auto_pad.as_str() {
                "" | "NOTSET" => (n + pads[i] + pads[i + spatial] - extent).div_euclid(s) + 1,
                "VALID" => (n - extent).div_euclid(s) + 1,
                "SAME_UPPER" | "SAME_LOWER" => (n + s - 1) / s,
                _ => return None,
            };
            (size >= 0).then_some(Dim::Known(size))
        })
        .collect()
}

fn matmul(a: &Shape, b: &Shape) -> Option<Shape> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let a2 = if a.len() == 1 {
        vec![Dim::Known(1), a[0].clone()]
    } else {
        a.clone()
    };
    let b2 = if b.len() == 1 {
        vec![b[0].clone(), Dim::Known(1)]
    } else {
        b.clone()
    };
    let batch = broadcast(&[a2[..a2.len() - 2].to_vec(), b2[..b2.len() - 2].to_vec()])?;
    let mut out = batch;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1].clone());
    }
    Some(out)
}

fn reduce(node: &NodeProto, x: &Shape, axes_input: Option<Vec<i64>>) -> Option<Shape> {
    let keep = node.attr_int("keepdims").unwrap_or(1) != 0;
    let axes: Vec<i64> = if matches!(node.op_type.as_str(), "ArgMax" | "ArgMin") {
        vec![node.attr_int("axis").unwrap_or(0)]
    } else {
        match node.attr_ints("axes").map(<[i64]>::to_vec).or(axes_input) {
            Some(a) if !a.is_empty() => a,
            // No axes given: every axis, unless noop_with_empty_axes (then the identity).
            _ if node.input.get(1).is_some_and(|n| !n.is_empty()) => return None,
            _ if node.attr_int("noop_with_empty_axes").unwrap_or(0) != 0 => return Some(x.clone()),
            _ => (0..x.len() as i64).collect(),
        }
    };
    let axes: Vec<usize> = axes
        .iter()
        .map(|&a| normalize_axis(a, x.len()))
        .collect::<Option<_>>()?;
    Some(
        (0..x.len())
            .filter_map(|i| match (axes.contains(&i), keep) {
                (true, true) => Some(Dim::Known(1)),
                (true, false) => None,
                (false, _) => Some(x[i].clone()),
            })
            .collect(),
    )
}

fn split(node: &NodeProto, inputs: &[Known<'_>]) -> Option<Vec<Shape>> {
    let x = inputs.first()?.shape()?;
    let axis = normalize_axis(node.attr_int("axis").unwrap_or(0), x.len())?;
    let n = node.output.len();
    let sizes: Vec<i64> = match inputs.get(1).and_then(|k| k.ints()) {
        Some(s) => s,
        None => {
            let total = x[axis].known()?;
            let parts = node.attr_int("num_outputs").unwrap_or(n as i64).max(1);
            let each = (total + parts - 1) / parts;
            (0..n as i64)
                .map(|i| (total - i * each).clamp(0, each))
                .collect()
        }
    };
    (sizes.len() == n).then(|| {
        sizes
            .iter()
            .map(|&s| {
                let mut shape = x.clone();
                shape[axis] = Dim::Known(s);
                shape
            })
            .collect()
    })
}

#[cfg(test)]
#[path = "shapes_tests.rs"]
mod tests;
