//! Static shapes: the batch symbol, shape entries, reshapes, Swin's multiples.

use spray_onnx::attr;

use super::*;

fn node(op: &str, attrs: Vec<spray_onnx::AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        attribute: attrs,
        output: vec!["y".into()],
        ..Default::default()
    }
}

fn n_hw(h: i64, w: i64) -> Shape {
    vec![
        Dim::Symbol("N".into()),
        Dim::Known(16),
        Dim::Known(h),
        Dim::Known(w),
    ]
}

#[test]
fn convolution_and_pad_shapes_keep_the_batch_symbol() {
    let x = n_hw(27, 32);
    let w = known_shape(&[16, 16, 3, 3]);
    let conv = node(
        "Conv",
        vec![
            attr::ints("strides", &[2, 2]),
            attr::ints("pads", &[0, 0, 0, 0]),
        ],
    );
    let out = infer(&conv, &[Known::Shaped(Some(&x)), Known::Shaped(Some(&w))]);
    assert_eq!(out[0], Some(n_hw(13, 15)));
    let pads = Value::i64s(vec![8], &[0, 0, 1, 0, 0, 0, 1, 1]);
    let padded = infer(
        &node("Pad", vec![]),
        &[Known::Shaped(Some(&x)), Known::Value(&pads)],
    );
    assert_eq!(padded[0], Some(n_hw(29, 33)));
    let same = node(
        "Conv",
        vec![
            attr::string("auto_pad", "SAME_UPPER"),
            attr::ints("strides", &[2, 2]),
        ],
    );
    let out = infer(&same, &[Known::Shaped(Some(&x)), Known::Shaped(Some(&w))]);
    assert_eq!(out[0], Some(n_hw(14, 16)));
}

#[test]
fn shape_entries_that_are_known_become_constants() {
    let x = n_hw(14, 16);
    let Some(Derived::Partial(shape)) = derive(&node("Shape", vec![]), &[Known::Shaped(Some(&x))])
    else {
        panic!("the batch dimension is symbolic");
    };
    let two = Value::i64s(vec![], &[2]);
    let Some(Derived::Value(h)) = derive(
        &node("Gather", vec![attr::int("axis", 0)]),
        &[Known::Partial(&shape), Known::Value(&two)],
    ) else {
        panic!("H is static");
    };
    assert_eq!(h.ints(), Some(vec![14]));
    let zero = Value::i64s(vec![], &[0]);
    assert!(matches!(
        derive(
            &node("Gather", vec![]),
            &[Known::Partial(&shape), Known::Value(&zero)]
        ),
        Some(Derived::Partial(_))
    ));
    // Size counts the batch too: not static here, static for a fixed shape.
    assert!(derive(&node("Size", vec![]), &[Known::Shaped(Some(&x))]).is_none());
    let fixed = known_shape(&[2, 3]);
    assert!(matches!(
        derive(&node("Size", vec![]), &[Known::Shaped(Some(&fixed))]),
        Some(Derived::Value(v)) if v.ints() == Some(vec![6])
    ));
    let tail = node("Shape", vec![attr::int("start", 1)]);
    assert!(matches!(
        derive(&tail, &[Known::Shaped(Some(&x))]),
        Some(Derived::Value(v)) if v.ints() == Some(vec![16, 14, 16])
    ));
}

#[test]
fn reshape_infers_minus_one_through_the_batch_symbol() {
    let x = n_hw(2, 3);
    let target = vec![Dim::Symbol("N".into()), Dim::Known(-1)];
    assert_eq!(
        reshape(&x, &target, false),
        Some(vec![Dim::Symbol("N".into()), Dim::Known(96)])
    );
    let unknown_batch = vec![Dim::Known(4), Dim::Known(-1)];
    assert_eq!(reshape(&x, &unknown_batch, false).unwrap()[1], Dim::Unknown);
}

#[test]
fn broadcasting_and_unmodelled_ops() {
    let x = n_hw(4, 4);
    let bias = known_shape(&[16, 1, 1]);
    assert_eq!(broadcast(&[x.clone(), bias]), Some(x.clone()));
    assert_eq!(broadcast(&[known_shape(&[3]), known_shape(&[4])]), None);
    let custom = node("NonZero", vec![]);
    assert_eq!(infer(&custom, &[Known::Shaped(Some(&x))]), vec![None]);
}

#[test]
fn swins_windows_of_a_batch_are_a_multiple_of_it_and_divide_back() {
    // torchvision's Swin: x.view(B·nW, ws², C) … attn.view(x.size(0) // nW, nW, …).
    let n = || Dim::Symbol("N".into());
    let batch = Partial {
        dims: vec![],
        values: vec![n()],
    };
    let nw = Value::i64s(vec![], &[64]);
    let Some(Derived::Partial(windows)) = derive(
        &node("Mul", vec![]),
        &[Known::Partial(&batch), Known::Value(&nw)],
    ) else {
        panic!("B · nW is symbolic");
    };
    assert_eq!(windows.values, vec![Dim::Multiple("N".into(), 64)]);
    let Some(Derived::Partial(back)) = derive(
        &node("Div", vec![]),
        &[Known::Partial(&windows), Known::Value(&nw)],
    ) else {
        panic!("B · nW // nW is B");
    };
    assert_eq!(back.values, vec![n()]);
    let seven = Value::i64s(vec![1], &[7]);
    let Some(Derived::Partial(inexact)) = derive(
        &node("Div", vec![]),
        &[Known::Partial(&windows), Known::Value(&seven)],
    ) else {
        panic!("still a shape vector");
    };
    assert_eq!(
        (inexact.dims, inexact.values),
        (vec![1], vec![Dim::Unknown])
    );
    // Reshapes through the multiple: [N, 56, 56, 96] → [64N, 49, −1] → [N, −1, 96].
    let x = vec![n(), Dim::Known(56), Dim::Known(56), Dim::Known(96)];
    let per_window = reshape(
        &x,
        &[
            Dim::Multiple("N".into(), 64),
            Dim::Known(49),
            Dim::Known(-1),
        ],
        false,
    )
    .unwrap();
    assert_eq!(per_window[2], Dim::Known(96));
    let merged = reshape(&per_window, &[n(), Dim::Known(-1), Dim::Known(96)], false).unwrap();
    assert_eq!(merged[1], Dim::Known(3136));
}
