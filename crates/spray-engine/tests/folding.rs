//! Constant folding with ONNX Runtime as the evaluator: exporters' pad and shape arithmetic
//! becomes constants, the logits stay bit-identical to plain inference of the original model,
//! and the relevance is the one of the same model with its constants folded by hand.

mod common;

use common::*;
use spray_engine::{LrpEngine, Predictor, SessionConfig};
use spray_lrp::{compile, CompileOptions, Composite, CompositeOptions};
use spray_onnx::{attr, ModelProto, Tensor};

fn options(evaluator: bool) -> CompileOptions {
    CompileOptions {
        composite: Composite::builtin("epsilon-plus", &CompositeOptions::default()).unwrap(),
        input: None,
        concept: Vec::new(),
        constant_evaluator: evaluator.then(ort_constants),
    }
}

fn ints(b: &mut GraphBuilder, values: &[i64]) -> String {
    b.node(
        "Constant",
        &[],
        vec![attr::tensor(
            "value",
            Tensor::i64(vec![values.len() as i64], values.to_vec()).to_proto(""),
        )],
    )
}

/// torch.onnx.export's chain for `F.pad(x, [0, 1, 1, 1])` (opset 17, constant folding on):
/// Constant → ConstantOfShape → Concat → Reshape → Slice → Transpose → Reshape → Cast.
fn torch_pads(b: &mut GraphBuilder) -> String {
    let four = ints(b, &[4]);
    let given = ints(b, &[0, 1, 1, 1]);
    let zeros = b.node(
        "ConstantOfShape",
        &[&four],
        vec![attr::tensor(
            "value",
            Tensor::i64(vec![1], vec![0]).to_proto(""),
        )],
    );
    let all = b.node("Concat", &[&given, &zeros], vec![attr::int("axis", 0)]);
    let pairs_shape = ints(b, &[-1, 2]);
    let pairs = b.node("Reshape", &[&all, &pairs_shape], vec![]);
    let start = ints(b, &[-1]);
    let end = ints(b, &[-9223372036854775807]);
    let axis = ints(b, &[0]);
    let step = ints(b, &[-1]);
    let reversed = b.node("Slice", &[&pairs, &start, &end, &axis, &step], vec![]);
    let t = b.node("Transpose", &[&reversed], vec![attr::ints("perm", &[1, 0])]);
    let flat_shape = ints(b, &[-1]);
    let flat = b.node("Reshape", &[&t, &flat_shape], vec![]);
    b.node("Cast", &[&flat], vec![attr::int("to", 7)])
}

/// The width pads of a TF-style "same" 3×3 convolution computed at run time from the
/// activation's width the way torch traces `x.size(3)` arithmetic, in floating point:
/// pad = Cast(Ceil((10 − W) / 2.0)) — left to ONNX Runtime.
fn traced_same_pads(b: &mut GraphBuilder, x: &str) -> String {
    let shape = b.node("Shape", &[x], vec![]);
    let three = ints(b, &[3]);
    let width = b.node("Gather", &[&shape, &three], vec![attr::int("axis", 0)]);
    let ten = ints(b, &[10]);
    let missing = b.node("Sub", &[&ten, &width], vec![]);
    let as_float = b.node("Cast", &[&missing], vec![attr::int("to", 1)]);
    let two = b.node(
        "Constant",
        &[],
        vec![attr::tensor(
            "value",
            Tensor::f32(vec![1], vec![2.0]).to_proto(""),
        )],
    );
    let half = b.node("Div", &[&as_float, &two], vec![]);
    let up = b.node("Ceil", &[&half], vec![]);
    let each = b.node("Cast", &[&up], vec![attr::int("to", 7)]);
    let zeros = ints(b, &[0, 0, 0]);
    let zeros_end = ints(b, &[0, 0, 0]);
    b.node(
        "Concat",
        &[&zeros, &each, &zeros_end, &each],
        vec![attr::int("axis", 0)],
    )
}

/// conv → Pad(torch chain) → conv → ReLU → Pad(traced) → conv → Reshape(Shape arithmetic) → GAP
/// → dense. Input [N, 3, 8, 8].
fn exported_style_net() -> ModelProto {
    let mut b = GraphBuilder::new("image", &[1, 3, 8, 8], 31);
    let c1 = b.conv("image", 3, 6, 3, 1, true);
    let r1 = b.node("Relu", &[&c1], vec![]);
    let pads = torch_pads(&mut b);
    let p1 = b.node("Pad", &[&r1, &pads], vec![attr::string("mode", "constant")]);
    // 3×3 without padding of the padded 10×9 map: 8×7.
    let w2 = b.init(&[6, 6, 3, 3], 0.2);
    let c2 = b.node(
        "Conv",
        &[&p1, &w2],
        vec![attr::ints("kernel_shape", &[3, 3])],
    );
    let r2 = b.node("Relu", &[&c2], vec![]);
    let pads2 = traced_same_pads(&mut b, &r2);
    let p2 = b.node("Pad", &[&r2, &pads2], vec![]);
    let w3 = b.init(&[4, 6, 3, 3], 0.2);
    let c3 = b.node(
        "Conv",
        &[&p2, &w3],
        vec![attr::ints("kernel_shape", &[3, 3])],
    );
    // Reshape to [N, 4, H·W] with the channel count read from the shape.
    let shape = b.node("Shape", &[&c3], vec![]);
    let one = ints(&mut b, &[1]);
    let channels = b.node("Gather", &[&shape, &one], vec![attr::int("axis", 0)]);
    let batch_free = ints(&mut b, &[0]);
    let rest = ints(&mut b, &[-1]);
    let target = b.node(
        "Concat",
        &[&batch_free, &channels, &rest],
        vec![attr::int("axis", 0)],
    );
    let flat = b.node("Reshape", &[&c3, &target], vec![]);
    let r3 = b.node("Relu", &[&flat], vec![]);
    let pooled = b.node(
        "ReduceMean",
        &[&r3],
        vec![attr::ints("axes", &[2]), attr::int("keepdims", 0)],
    );
    let head = b.init(&[5, 4], 0.5);
    let logits = b.node("Gemm", &[&pooled, &head], vec![attr::int("transB", 1)]);
    b.finish(&logits, 17)
}

#[test]
fn pads_and_shapes_fold_and_the_forward_pass_is_bit_identical() {
    let model = exported_style_net();
    // Without the evaluator the float pad chain stays, and the planner names it.
    let err = compile(&model, &options(false)).unwrap_err().to_string();
    assert!(err.contains("Pad whose pads are not constant"), "{err}");

    let compiled = compile(&model, &options(true)).unwrap();
    let graph = compiled.model.graph.as_ref().unwrap();
    // The forward graph's nodes are the ones GraphBuilder named.
    let folded = |op: &str| {
        graph
            .node
            .iter()
            .filter(|n| n.name.starts_with("node/") && n.op_type == op)
            .count()
    };
    // The torch chain, the traced arithmetic and the Shape reads are gone from the forward graph.
    for op in ["ConstantOfShape", "Ceil", "Sub", "Shape"] {
        assert_eq!(folded(op), 0, "{op} left in the graph");
    }
    let pads = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == spray_onnx::data_type::INT64 && t.dims == [8])
        .map(|t| Tensor::from_proto(t).unwrap().as_i64().unwrap().to_vec())
        .collect::<Vec<_>>();
    assert!(pads.contains(&vec![0, 0, 1, 0, 0, 0, 1, 1]), "{pads:?}");
    // W = 7 after the second convolution: (10 − 7) / 2 = 1.5, rounded up by Ceil.
    assert!(pads.contains(&vec![0, 0, 0, 2, 0, 0, 0, 2]), "{pads:?}");

    let input = random_input(3, &[3, 8, 8], 17);
    let mut engine = LrpEngine::new(&compiled, SessionConfig::default()).unwrap();
    let out = engine.explain(input.view(), &[0, 3, -1]).unwrap();
    let plain = Predictor::new(&spray_onnx::encode_model(&model), SessionConfig::default())
        .unwrap()
        .predict(input.view())
        .unwrap();
    assert_eq!(
        out.logits.as_slice().unwrap(),
        plain.as_slice().unwrap(),
        "the logits of the folded graph equal plain inference bit for bit"
    );
    assert!(out.relevance.iter().all(|v| v.is_finite()));
}

#[test]
fn folding_equals_folding_by_hand() {
    let model = exported_style_net();
    let folded = compile(&model, &options(true)).unwrap();
    let folded_graph = folded.model.graph.as_ref().unwrap();
    let original = model.graph.as_ref().unwrap();
    // The initializers folding added, after the model's own (the compiler's are named lrp/…).
    let added: Vec<(String, Vec<i64>)> = folded_graph.initializer[original.initializer.len()..]
        .iter()
        .filter(|t| !t.name.starts_with("lrp/"))
        .map(|t| {
            let v = Tensor::from_proto(t).unwrap().as_i64().unwrap().to_vec();
            (t.name.clone(), v)
        })
        .collect();
    // The values a person computes for this net: both pads and the reshape target.
    let values: Vec<&[i64]> = added.iter().map(|(_, v)| v.as_slice()).collect();
    assert_eq!(
        values,
        vec![
            &[0, 0, 1, 0, 0, 0, 1, 1][..],
            &[0, 0, 0, 2, 0, 0, 0, 2][..],
            &[0, 4, -1][..]
        ]
    );
    // The same model folded by hand: the nodes that computed them deleted, the values written
    // as initializers under the same names. (The Pads themselves stay: with their amounts
    // constant the compiler merges them into the convolutions after them, in both models.)
    let kept: std::collections::HashSet<&str> =
        folded_graph.node.iter().map(|n| n.name.as_str()).collect();
    assert!(folded_graph.node.iter().all(|n| n.op_type != "Pad"));
    let mut by_hand = model.clone();
    let graph = by_hand.graph.as_mut().unwrap();
    graph
        .node
        .retain(|n| kept.contains(n.name.as_str()) || n.op_type == "Pad");
    for (name, v) in &added {
        graph
            .initializer
            .push(Tensor::i64(vec![v.len() as i64], v.clone()).to_proto(name));
    }
    let compiled_by_hand = compile(&by_hand, &options(true)).unwrap();
    assert!(
        compiled_by_hand.to_bytes() == folded.to_bytes(),
        "compiling the hand-folded model gives the same bytes"
    );
}

#[test]
fn the_exported_efficientnet_like_fixture_folds_every_pad() {
    let dir = fixture_set("lrp-folding").join("efficientnet_lite_small");
    let model = spray_onnx::load_model(&dir.join("model.onnx")).unwrap();
    let input = read_npy::<f32>(&dir.join("input.npy"));
    let compiled = compile(&model, &options(true)).unwrap();
    let graph = compiled.model.graph.as_ref().unwrap();
    let names: std::collections::HashSet<&str> = model
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    let forward: Vec<&spray_onnx::NodeProto> = graph
        .node
        .iter()
        .filter(|n| names.contains(n.name.as_str()))
        .collect();
    let count = |op: &str| forward.iter().filter(|n| n.op_type == op).count();
    // The six F.pad (the stem's and each block's depthwise "same" convolution) folded, then
    // merged into their convolutions' pads.
    let exported_pads = model
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .filter(|n| n.op_type == "Pad")
        .count();
    assert_eq!(exported_pads, 6);
    assert_eq!(count("Pad"), 0);
    for op in [
        "Shape",
        "Gather",
        "ConstantOfShape",
        "Div",
        "Sub",
        "Unsqueeze",
    ] {
        assert_eq!(count(op), 0, "{op} left in the forward graph");
    }
    // The forward graph as compiled (folded), alone: the same logits as the exported model,
    // bit for bit.
    let mut folded_forward = compiled.model.clone();
    let g = folded_forward.graph.as_mut().unwrap();
    g.node.retain(|n| names.contains(n.name.as_str()));
    g.input.retain(|i| i.name == compiled.signature.input);
    g.output = model.graph.as_ref().unwrap().output.clone();
    let predict = |m: &ModelProto| {
        Predictor::new(&spray_onnx::encode_model(m), SessionConfig::default())
            .unwrap()
            .predict(input.view())
            .unwrap()
    };
    let plain = predict(&model);
    assert_eq!(
        predict(&folded_forward).as_slice().unwrap(),
        plain.as_slice().unwrap()
    );
    // Inside the LRP model ORT fuses the forward ops differently (the backward pass reads
    // intermediate activations), which moves the last bits only.
    let out = LrpEngine::new(&compiled, SessionConfig::default())
        .unwrap()
        .explain(input.view(), &[-1; 4])
        .unwrap();
    let gap = (&out.logits.view().into_dyn() - &plain.view())
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()));
    assert!(gap < 1e-6, "{gap}");
}
