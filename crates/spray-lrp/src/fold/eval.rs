//! The ops the folder evaluates itself: those that only move elements (Reshape, Transpose,
//! Concat, Slice, Gather, Expand, …), ConstantOfShape, and integer arithmetic and comparisons —
//! exporters' shape and pad arithmetic. Each is exact, so the value is the one ONNX Runtime
//! computes, bit for bit. Floating-point arithmetic and every other op are left to the
//! [`super::ConstantEvaluator`] (ONNX Runtime itself), so no rounding of ours can differ from
//! the runtime's.

use spray_onnx::{data_type, NodeExt, NodeProto};

use super::value::{self, strides, udims, Value};

/// The outputs of `node` on constant `inputs` (one per node input; `None` for an omitted
/// optional input), or `None` where the op, its element type or its arguments are not
/// evaluated here.
pub(crate) fn evaluate(node: &NodeProto, inputs: &[Option<&Value>]) -> Option<Vec<Value>> {
    let x = || inputs.first().copied().flatten();
    let arg = |i: usize| inputs.get(i).copied().flatten();
    let one = |v: Option<Value>| v.map(|v| vec![v]);
    match node.op_type.as_str() {
        "Identity" => one(x().cloned()),
        "Cast" => one(cast(x()?, node.attr_int("to")? as i32)),
        "Reshape" => {
            let shape = arg(1)?.ints()?;
            let allow_zero = node.attr_int("allowzero").unwrap_or(0) != 0;
            let dims = reshape_dims(&x()?.dims, &shape, allow_zero)?;
            one(Some(x()?.clone().with_dims(dims)))
        }
        "Flatten" => {
            let v = x()?;
            let axis = normalize_axis(node.attr_int("axis").unwrap_or(1), v.dims.len() + 1)?;
            let outer: i64 = v.dims[..axis].iter().product();
            let inner: i64 = v.dims[axis..].iter().product();
            one(Some(v.clone().with_dims(vec![outer, inner])))
        }
        "Squeeze" => {
            let v = x()?;
            let axes = match arg(1) {
                Some(a) => Some(a.ints()?),
                None => None,
            };
            let dims = squeeze_dims(&v.dims, axes.as_deref())?;
            one(Some(v.clone().with_dims(dims)))
        }
        "Unsqueeze" => {
            let v = x()?;
            let dims = unsqueeze_dims(&v.dims, &arg(1)?.ints()?)?;
            one(Some(v.clone().with_dims(dims)))
        }
        "Transpose" => one(transpose(x()?, node.attr_ints("perm"))),
        "Concat" => {
            let parts: Option<Vec<&Value>> = inputs.iter().copied().collect();
            one(concat(&parts?, node.attr_int("axis")?))
        }
        "Slice" => one(slice(x()?, arg(1)?, arg(2)?, arg(3), arg(4))),
        "Gather" => one(gather(x()?, arg(1)?, node.attr_int("axis").unwrap_or(0))),
        "Expand" => {
            let v = x()?;
            let target = arg(1)?.ints()?;
            let out = broadcast_dims(&[&v.dims, &target])?;
            let order = broadcast_order(&udims(&v.dims)?, &udims(&out)?);
            one(Some(v.gathered(out, &order)))
        }
        "ConstantOfShape" => {
            let dims = arg(0)?.ints()?;
            let fill = match node.attr_tensor("value") {
                Some(t) => Value::from_proto(t)?,
                None => Value {
                    elem_type: data_type::FLOAT,
                    dims: vec![1],
                    bytes: 0f32.to_le_bytes().to_vec(),
                },
            };
            if fill.numel() != 1 || dims.iter().any(|d| *d < 0) {
                return None;
            }
            let n = dims.iter().product::<i64>() as usize;
            one(Some(fill.gathered(dims, &vec![0; n])))
        }
        "Shape" => {
            let dims = &x()?.dims;
            let (start, end) = shape_range(node, dims.len());
            let picked = &dims[start..end.max(start)];
            one(Some(Value::i64s(vec![picked.len() as i64], picked)))
        }
        "Size" => one(Some(Value::i64s(vec![], &[x()?.numel() as i64]))),
        "Range" => one(range(x()?, arg(1)?, arg(2)?)),
        "Where" => {
            let (c, a, b) = (x()?, arg(1)?, arg(2)?);
            if c.elem_type != data_type::BOOL || a.elem_type != b.elem_type {
                return None;
            }
            let out = broadcast_dims(&[&c.dims, &a.dims, &b.dims])?;
            let od = udims(&out)?;
            let (oc, oa, ob) = (
                broadcast_order(&udims(&c.dims)?, &od),
                broadcast_order(&udims(&a.dims)?, &od),
                broadcast_order(&udims(&b.dims)?, &od),
            );
            let size = a.element_size();
            let mut bytes = Vec::with_capacity(oc.len() * size);
            for i in 0..oc.len() {
                let (src, j) = if c.bytes[oc[i]] != 0 {
                    (a, oa[i])
                } else {
                    (b, ob[i])
                };
                bytes.extend_from_slice(&src.bytes[j * size..(j + 1) * size]);
            }
            one(Some(Value {
                elem_type: a.elem_type,
                dims: out,
                bytes,
            }))
        }
        op => one(integer_arithmetic(op, inputs)),
    }
}

/// The `[start, end)` range of dimensions `Shape` reports (opset 15's attributes, clamped).
pub(crate) fn shape_range(node: &NodeProto, rank: usize) -> (usize, usize) {
    let clamp = |v: i64| -> usize {
        let v = if v < 0 { v + rank as i64 } else { v };
        v.clamp(0, rank as i64) as usize
    };
    (
        clamp(node.attr_int("start").unwrap_or(0)),
        node.attr_int("end").map_or(rank, clamp),
    )
}

fn cast(v: &Value, to: i32) -> Option<Value> {
    if v.elem_type == to {
        return Some(v.clone());
    }
    // Integer to integer only: a cast that involves floating point is ONNX Runtime's to round.
    if !(value::is_integer(v.elem_type) || v.elem_type == data_type::BOOL)
        || !(value::is_integer(to) || to == data_type::BOOL)
    {
        return None;
    }
    Value::from_ints(to, v.dims.clone(), &v.ints()?)
}

/// Elementwise integer arithmetic and comparisons, broadcast like numpy; `None` for anything
/// else (floats included) and for division by zero.
fn integer_arithmetic(op: &str, inputs: &[Option<&Value>]) -> Option<Value> {
    let values: Vec<&Value> = inputs.iter().copied().collect::<Option<_>>()?;
    let first = values.first()?;
    let elem_type = first.elem_type;
    if values.iter().any(|v| v.elem_type != elem_type) {
        return None;
    }
    let integer = value::is_integer(elem_type);
    let boolean = elem_type == data_type::BOOL;
    let binary: Option<fn(i64, i64) -> Option<i64>> = match op {
        "Add" if integer => Some(|a, b| Some(a.wrapping_add(b))),
        "Sub" if integer => Some(|a, b| Some(a.wrapping_sub(b))),
        "Mul" if integer => Some(|a, b| Some(a.wrapping_mul(b))),
        // C++ integer division truncates toward zero, as Rust's does.
        "Div" if integer => Some(|a, b| a.checked_div(b)),
        "Max" if integer => Some(|a, b| Some(a.max(b))),
        "Min" if integer => Some(|a, b| Some(a.min(b))),
        "Equal" if integer || boolean => Some(|a, b| Some(i64::from(a == b))),
        "Less" if integer => Some(|a, b| Some(i64::from(a < b))),
        "LessOrEqual" if integer => Some(|a, b| Some(i64::from(a <= b))),
        "Greater" if integer => Some(|a, b| Some(i64::from(a > b))),
        "GreaterOrEqual" if integer => Some(|a, b| Some(i64::from(a >= b))),
        "And" if boolean => Some(|a, b| Some(i64::from(a != 0 && b != 0))),
        "Or" if boolean => Some(|a, b| Some(i64::from(a != 0 || b != 0))),
        _ => None,
    };
    let compares = matches!(
        op,
        "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual"
    );
    let out_type = if compares { data_type::BOOL } else { elem_type };
    if let Some(f) = binary {
        let variadic = matches!(op, "Max" | "Min");
        let arity = values.len() == 2 || (variadic && !values.is_empty());
        if !arity {
            return None;
        }
        let dims: Vec<&[i64]> = values.iter().map(|v| v.dims.as_slice()).collect();
        let out = broadcast_dims(&dims)?;
        let od = udims(&out)?;
        let n: usize = od.iter().product();
        let mut acc: Vec<i64> = {
            let order = broadcast_order(&udims(&first.dims)?, &od);
            let ints = first.ints()?;
            order.iter().map(|&i| ints[i]).collect()
        };
        if values.len() == 1 {
            return Value::from_ints(out_type, out, &acc);
        }
        for v in &values[1..] {
            let order = broadcast_order(&udims(&v.dims)?, &od);
            let ints = v.ints()?;
            for i in 0..n {
                acc[i] = f(acc[i], ints[order[i]])?;
            }
        }
        return Value::from_ints(out_type, out, &acc);
    }
    let unary: fn(i64) -> i64 = match op {
        "Neg" if integer => |a| a.wrapping_neg(),
        "Abs" if integer => |a| a.wrapping_abs(),
        "Not" if boolean => |a| i64::from(a == 0),
        _ => return None,
    };
    if values.len() != 1 {
        return None;
    }
    let ints: Vec<i64> = first.ints()?.into_iter().map(unary).collect();
    Value::from_ints(elem_type, first.dims.clone(), &ints)
}

fn range(start: &Value, limit: &Value, delta: &Value) -> Option<Value> {
    let scalar = |v: &Value| -> Option<i64> {
        (v.numel() == 1 && value::is_integer(v.elem_type)).then(|| v.ints()?.first().copied())?
    };
    let (s, l, d) = (scalar(start)?, scalar(limit)?, scalar(delta)?);
    if d == 0 || start.elem_type != limit.elem_type || start.elem_type != delta.elem_type {
        return None;
    }
    let span = l.checked_sub(s)?;
    let count = if (span > 0) == (d > 0) && span != 0 {
        (span.abs() + d.abs() - 1) / d.abs()
    } else {
        0
    };
    let values: Vec<i64> = (0..count).map(|i| s + i * d).collect();
    Value::from_ints(start.elem_type, vec![count], &values)
}

/// `axis` in `[-rank, rank)` as an index.
pub(crate) fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

/// Reshape's output dimensions: 0 copies the input's (unless `allow_zero`), −1 is inferred.
pub(crate) fn reshape_dims(input: &[i64], shape: &[i64], allow_zero: bool) -> Option<Vec<i64>> {
    let total: i64 = input.iter().product();
    let mut dims: Vec<i64> = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| match d {
            0 if !allow_zero => input.get(i).copied(),
            d if d >= -1 => Some(d),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let inferred: Vec<usize> = (0..dims.len()).filter(|&i| dims[i] == -1).collect();
    match inferred.as_slice() {
        [] => {}
        [pos] => {
            let known: i64 = dims.iter().filter(|&&d| d != -1).product();
            if known == 0 || total % known != 0 {
                return None;
            }
            dims[*pos] = total / known;
        }
        _ => return None,
    }
    (dims.iter().product::<i64>() == total).then_some(dims)
}

pub(crate) fn squeeze_dims(dims: &[i64], axes: Option<&[i64]>) -> Option<Vec<i64>> {
    match axes {
        None => Some(dims.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let drop: Vec<usize> = axes
                .iter()
                .map(|&a| normalize_axis(a, dims.len()))
                .collect::<Option<_>>()?;
            if drop.iter().any(|&a| dims[a] != 1) {
                return None;
            }
            Some(
                (0..dims.len())
                    .filter(|i| !drop.contains(i))
                    .map(|i| dims[i])
                    .collect(),
            )
        }
    }
}

pub(crate) fn unsqueeze_dims<T: Clone + From<i64>>(dims: &[T], axes: &[i64]) -> Option<Vec<T>> {
    let rank = dims.len() + axes.len();
    let mut at: Vec<usize> = axes
        .iter()
        .map(|&a| normalize_axis(a, rank))
        .collect::<Option<_>>()?;
    at.sort_unstable();
    at.dedup();
    if at.len() != axes.len() {
        return None;
    }
    let mut rest = dims.iter().cloned();
    (0..rank)
        .map(|i| {
            if at.contains(&i) {
                Some(T::from(1))
            } else {
                rest.next()
            }
        })
        .collect()
}

/// numpy broadcasting of several shapes; `None` where they do not broadcast.
pub(crate) fn broadcast_dims(shapes: &[&[i64]]) -> Option<Vec<i64>> {
    let rank = shapes.iter().map(|s| s.len()).max()?;
    (0..rank)
        .map(|i| {
            let mut out = 1;
            for s in shapes {
                let d = if i + s.len() >= rank {
                    s[i + s.len() - rank]
                } else {
                    1
                };
                if d != 1 {
                    if out != 1 && out != d {
                        return None;
                    }
                    out = d;
                }
            }
            Some(out)
        })
        .collect()
}

/// For each element of a tensor of dimensions `out`, the element of a tensor of dimensions
/// `input` that broadcasting reads.
pub(crate) fn broadcast_order(input: &[usize], out: &[usize]) -> Vec<usize> {
    let offset = out.len() - input.len();
    let in_strides = strides(input);
    let n: usize = out.iter().product();
    let mut order = Vec::with_capacity(n);
    let mut index = vec![0usize; out.len()];
    for _ in 0..n {
        order.push(
            (0..input.len())
                .filter(|&a| input[a] != 1)
                .map(|a| index[a + offset] * in_strides[a])
                .sum(),
        );
        advance(&mut index, out);
    }
    order
}

/// Step a row-major multi-index.
fn advance(index: &mut [usize], dims: &[usize]) {
    for axis in (0..index.len()).rev() {
        index[axis] += 1;
        if index[axis] < dims[axis] {
            return;
        }
        index[axis] = 0;
    }
}

fn transpose(v: &Value, perm: Option<&[i64]>) -> Option<Value> {
    let dims = udims(&v.dims)?;
    let perm: Vec<usize> = match perm {
        Some(p) => p
            .iter()
            .map(|&a| normalize_axis(a, dims.len()))
            .collect::<Option<_>>()?,
        None => (0..dims.len()).rev().collect(),
    };
    if perm.len() != dims.len() {
        return None;
    }
    let out: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let in_strides = strides(&dims);
    let n: usize = dims.iter().product();
    let mut order = Vec::with_capacity(n);
    let mut index = vec![0usize; dims.len()];
    for _ in 0..n {
        order.push(
            perm.iter()
                .zip(&index)
                .map(|(&p, &i)| i * in_strides[p])
                .sum(),
        );
        advance(&mut index, &out);
    }
    Some(v.gathered(out.iter().map(|&d| d as i64).collect(), &order))
}

fn concat(parts: &[&Value], axis: i64) -> Option<Value> {
    let first = parts.first()?;
    let rank = first.dims.len();
    let axis = normalize_axis(axis, rank)?;
    let same_elsewhere = |v: &&&Value| {
        v.elem_type == first.elem_type
            && v.dims.len() == rank
            && (0..rank).all(|a| a == axis || v.dims[a] == first.dims[a])
    };
    if !parts.iter().all(|v| same_elsewhere(&v)) {
        return None;
    }
    let outer: usize = udims(&first.dims[..axis])?.iter().product();
    let inner: usize = udims(&first.dims[axis + 1..])?.iter().product();
    let size = first.element_size();
    let mut bytes = Vec::new();
    for o in 0..outer {
        for v in parts {
            let chunk = v.dims[axis] as usize * inner * size;
            bytes.extend_from_slice(&v.bytes[o * chunk..(o + 1) * chunk]);
        }
    }
    let mut dims = first.dims.clone();
    dims[axis] = parts.iter().map(|v| v.dims[axis]).sum();
    Some(Value {
        elem_type: first.elem_type,
        dims,
        bytes,
    })
}

/// One axis of a slice: the first index, the step and the number of elements taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AxisSlice {
    pub start: i64,
    pub step: i64,
    pub count: i64,
}

/// ONNX Slice's clamping rules for one axis of length `dim`.
pub(crate) fn slice_axis(dim: i64, start: i64, end: i64, step: i64) -> Option<AxisSlice> {
    if step == 0 {
        return None;
    }
    let wrap = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
    let (start, end) = (wrap(start), wrap(end));
    let (start, end) = if step > 0 {
        (start.clamp(0, dim), end.clamp(0, dim))
    } else {
        (start.clamp(0, dim - 1), end.clamp(-1, dim - 1))
    };
    let span = if step > 0 { end - start } else { start - end };
    let count = if span <= 0 {
        0
    } else {
        (span + step.abs() - 1) / step.abs()
    };
    Some(AxisSlice { start, step, count })
}

/// Slice's per-axis plan for a tensor of dimensions `dims` from its constant inputs.
pub(crate) fn slice_plan(
    dims: &[i64],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Option<Vec<AxisSlice>> {
    let mut plan: Vec<AxisSlice> = dims
        .iter()
        .map(|&d| AxisSlice {
            start: 0,
            step: 1,
            count: d,
        })
        .collect();
    if starts.len() != ends.len() {
        return None;
    }
    for i in 0..starts.len() {
        let axis = match axes {
            Some(a) => normalize_axis(*a.get(i)?, dims.len())?,
            None => i,
        };
        let step = match steps {
            Some(s) => *s.get(i)?,
            None => 1,
        };
        plan[axis] = slice_axis(*dims.get(axis)?, starts[i], ends[i], step)?;
    }
    Some(plan)
}

fn slice(
    v: &Value,
    starts: &Value,
    ends: &Value,
    axes: Option<&Value>,
    steps: Option<&Value>,
) -> Option<Value> {
    let ints = |v: Option<&Value>| -> Option<Option<Vec<i64>>> {
        match v {
            Some(v) => Some(Some(v.ints()?)),
            None => Some(None),
        }
    };
    let (axes, steps) = (ints(axes)?, ints(steps)?);
    let plan = slice_plan(
        &v.dims,
        &starts.ints()?,
        &ends.ints()?,
        axes.as_deref(),
        steps.as_deref(),
    )?;
    let dims = udims(&v.dims)?;
    let in_strides = strides(&dims);
    let out: Vec<usize> = plan.iter().map(|p| p.count as usize).collect();
    let n: usize = out.iter().product();
    let mut order = Vec::with_capacity(n);
    let mut index = vec![0usize; out.len()];
    for _ in 0..n {
        order.push(
            plan.iter()
                .zip(&index)
                .zip(&in_strides)
                .map(|((p, &i), &s)| (p.start + i as i64 * p.step) as usize * s)
                .sum(),
        );
        advance(&mut index, &out);
    }
    Some(v.gathered(out.iter().map(|&d| d as i64).collect(), &order))
}

fn gather(v: &Value, indices: &Value, axis: i64) -> Option<Value> {
    let axis = normalize_axis(axis, v.dims.len())?;
    let dims = udims(&v.dims)?;
    let len = dims[axis] as i64;
    let picks: Vec<usize> = indices
        .ints()?
        .into_iter()
        .map(|i| {
            let i = if i < 0 { i + len } else { i };
            (0..len).contains(&i).then_some(i as usize)
        })
        .collect::<Option<_>>()?;
    if !value::is_integer(indices.elem_type) {
        return None;
    }
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let mut order = Vec::with_capacity(outer * picks.len() * inner);
    for o in 0..outer {
        for &p in &picks {
            for i in 0..inner {
                order.push((o * dims[axis] + p) * inner + i);
            }
        }
    }
    let mut out = v.dims[..axis].to_vec();
    out.extend_from_slice(&indices.dims);
    out.extend_from_slice(&v.dims[axis + 1..]);
    Some(v.gathered(out, &order))
}

#[cfg(test)]
mod tests {
    use spray_onnx::attr;

    use super::*;

    fn node(op: &str, attrs: Vec<spray_onnx::AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        }
    }

    fn ints(dims: &[i64], v: &[i64]) -> Value {
        Value::i64s(dims.to_vec(), v)
    }

    fn run(op: &str, attrs: Vec<spray_onnx::AttributeProto>, inputs: &[Option<&Value>]) -> Value {
        evaluate(&node(op, attrs), inputs)
            .unwrap_or_else(|| panic!("{op} not evaluated"))
            .remove(0)
    }

    #[test]
    fn transpose_of_a_matrix_and_a_3d_tensor() {
        let m = ints(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let t = run("Transpose", vec![attr::ints("perm", &[1, 0])], &[Some(&m)]);
        assert_eq!(t.dims, vec![3, 2]);
        assert_eq!(t.ints().unwrap(), vec![1, 4, 2, 5, 3, 6]);
        let c = ints(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
        let t = run(
            "Transpose",
            vec![attr::ints("perm", &[2, 0, 1])],
            &[Some(&c)],
        );
        // out[i][j][k] = in[j][k][i]
        assert_eq!(t.ints().unwrap(), vec![0, 2, 4, 6, 1, 3, 5, 7]);
        // No perm: the axes reversed.
        let t = run("Transpose", vec![], &[Some(&m)]);
        assert_eq!(t.ints().unwrap(), vec![1, 4, 2, 5, 3, 6]);
    }

    #[test]
    fn reshape_infers_and_copies_dims() {
        assert_eq!(reshape_dims(&[2, 3, 4], &[0, -1], false), Some(vec![2, 12]));
        assert_eq!(reshape_dims(&[2, 3, 4], &[5, -1], false), None);
        assert_eq!(reshape_dims(&[2, 3], &[0, 4], true), None);
        assert_eq!(reshape_dims(&[0, 4], &[0, 4], true), Some(vec![0, 4]));
    }

    #[test]
    fn slice_follows_onnx_clamping_and_negative_steps() {
        let v = ints(&[5], &[10, 11, 12, 13, 14]);
        let s = |start: i64, end: i64, step: i64| {
            run(
                "Slice",
                vec![],
                &[
                    Some(&v),
                    Some(&ints(&[1], &[start])),
                    Some(&ints(&[1], &[end])),
                    Some(&ints(&[1], &[0])),
                    Some(&ints(&[1], &[step])),
                ],
            )
            .ints()
            .unwrap()
        };
        assert_eq!(s(1, 3, 1), vec![11, 12]);
        assert_eq!(s(-1, i64::MIN + 1, -1), vec![14, 13, 12, 11, 10]);
        assert_eq!(s(0, i64::MAX, 2), vec![10, 12, 14]);
        assert_eq!(s(3, 1, 1), Vec::<i64>::new());
        assert_eq!(s(-100, 100, 1), vec![10, 11, 12, 13, 14]);
    }

    #[test]
    fn gather_concat_and_constant_of_shape() {
        let shape = ints(&[4], &[1, 16, 14, 16]);
        let h = run(
            "Gather",
            vec![attr::int("axis", 0)],
            &[Some(&shape), Some(&ints(&[], &[-2]))],
        );
        assert_eq!((h.dims.clone(), h.ints().unwrap()), (vec![], vec![14]));
        let zeros = run(
            "ConstantOfShape",
            vec![attr::tensor(
                "value",
                spray_onnx::Tensor::i64(vec![1], vec![0]).to_proto(""),
            )],
            &[Some(&ints(&[1], &[4]))],
        );
        assert_eq!(zeros.ints().unwrap(), vec![0; 4]);
        let joined = run(
            "Concat",
            vec![attr::int("axis", 0)],
            &[Some(&ints(&[2], &[1, 2])), Some(&zeros)],
        );
        assert_eq!(joined.ints().unwrap(), vec![1, 2, 0, 0, 0, 0]);
        let grid = run(
            "Concat",
            vec![attr::int("axis", 1)],
            &[
                Some(&ints(&[2, 1], &[1, 2])),
                Some(&ints(&[2, 2], &[3, 4, 5, 6])),
            ],
        );
        assert_eq!(grid.ints().unwrap(), vec![1, 3, 4, 2, 5, 6]);
    }

    #[test]
    fn integer_arithmetic_broadcasts_and_truncates_like_cpp() {
        let a = ints(&[2], &[7, -7]);
        let two = ints(&[], &[2]);
        assert_eq!(
            run("Div", vec![], &[Some(&a), Some(&two)]).ints().unwrap(),
            vec![3, -3]
        );
        assert_eq!(
            run("Sub", vec![], &[Some(&two), Some(&a)]).ints().unwrap(),
            vec![-5, 9]
        );
        assert_eq!(
            run(
                "Max",
                vec![],
                &[Some(&a), Some(&two), Some(&ints(&[1], &[0]))]
            )
            .ints()
            .unwrap(),
            vec![7, 2]
        );
        let less = run("Less", vec![], &[Some(&a), Some(&two)]);
        assert_eq!(less.elem_type, data_type::BOOL);
        assert_eq!(less.bytes, vec![0, 1]);
        let picked = run("Where", vec![], &[Some(&less), Some(&a), Some(&two)]);
        assert_eq!(picked.ints().unwrap(), vec![2, -7]);
        // Division by zero and floating point are left to the runtime.
        let zero = ints(&[], &[0]);
        assert!(evaluate(&node("Div", vec![]), &[Some(&a), Some(&zero)]).is_none());
        let f = Value {
            elem_type: data_type::FLOAT,
            dims: vec![],
            bytes: 2f32.to_le_bytes().to_vec(),
        };
        assert!(evaluate(&node("Add", vec![]), &[Some(&f), Some(&f)]).is_none());
        assert!(evaluate(&node("Cast", vec![attr::int("to", 1)]), &[Some(&a)]).is_none());
    }

    #[test]
    fn casts_between_integer_types_and_ranges() {
        let a = ints(&[2], &[300, -1]);
        let narrowed = run(
            "Cast",
            vec![attr::int("to", data_type::INT32 as i64)],
            &[Some(&a)],
        );
        assert_eq!(narrowed.elem_type, data_type::INT32);
        assert_eq!(narrowed.ints().unwrap(), vec![300, -1]);
        let r = run(
            "Range",
            vec![],
            &[
                Some(&ints(&[], &[5])),
                Some(&ints(&[], &[0])),
                Some(&ints(&[], &[-2])),
            ],
        );
        assert_eq!(r.ints().unwrap(), vec![5, 3, 1]);
        let expanded = run(
            "Expand",
            vec![],
            &[Some(&ints(&[2, 1], &[1, 2])), Some(&ints(&[2], &[2, 3]))],
        );
        assert_eq!(expanded.ints().unwrap(), vec![1, 1, 1, 2, 2, 2]);
    }
}
