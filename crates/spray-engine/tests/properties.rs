//! Properties every LRP model must have, on the committed fixtures and on networks built here.

mod common;

use common::*;
use ndarray::{s, Axis};
use spray_engine::{LrpEngine, Predictor, SessionConfig};
use spray_lrp::{compile, CompileOptions, Composite, CompositeOptions, LrpError, Rule};

fn compile_with(
    model: &spray_onnx::ModelProto,
    composite: Composite,
) -> Result<spray_lrp::LrpModel, LrpError> {
    compile(
        model,
        &CompileOptions {
            composite,
            input: None,
        },
    )
}

fn epsilon(eps: f32) -> Composite {
    let mut c = Composite::builtin("epsilon", &CompositeOptions::default()).unwrap();
    c.conv = Rule::epsilon(eps);
    c.dense = Rule::epsilon(eps);
    c
}

#[test]
fn relevance_is_conserved_on_bias_free_networks_under_epsilon() {
    for seed in [1, 2, 3] {
        let model = bias_free_residual_net(seed);
        let compiled = compile_with(&model, epsilon(1e-9)).unwrap();
        let mut engine = LrpEngine::new(&compiled, SessionConfig::default()).unwrap();
        let input = random_input(6, &[3, 16, 16], seed + 100);
        let out = engine.explain(input.view(), &[-1; 6]).unwrap();
        for (i, row) in out.relevance.axis_iter(Axis(0)).enumerate() {
            let total: f64 = row.iter().map(|v| *v as f64).sum();
            let logit = out.logits[[i, out.targets[i] as usize]] as f64;
            let rel = (total - logit).abs() / logit.abs().max(1e-12);
            assert!(
                rel < 1e-4,
                "seed {seed} sample {i}: sum of relevance {total} vs logit {logit} ({rel:.2e})"
            );
        }
    }
}

#[test]
fn relevance_has_the_input_shape_for_every_fixture_and_composite() {
    for model in FIXTURE_MODELS {
        let input = read_npy::<f32>(&fixtures().join(model).join("input.npy"));
        for composite in spray_lrp::BUILTIN_COMPOSITES {
            let compiled = compile_fixture(model, "model.onnx", composite);
            let mut engine = LrpEngine::new(&compiled, SessionConfig::default()).unwrap();
            let out = engine
                .explain(input.view(), &vec![-1; input.shape()[0]])
                .unwrap();
            assert_eq!(out.relevance.shape(), input.shape(), "{model}/{composite}");
            assert!(
                out.relevance.iter().all(|v| v.is_finite()),
                "{model}/{composite}: non-finite relevance"
            );
        }
    }
}

#[test]
fn a_batch_of_one_gives_the_same_rows_as_a_batch_of_eight() {
    // model_fixed_batch.onnx was exported without dynamic axes: its batch dimension is freed.
    for (model, file) in [
        ("vgg_small", "model_fixed_batch.onnx"),
        ("resnet_small", "model.onnx"),
        ("densenet_small", "model.onnx"),
    ] {
        let base = read_npy::<f32>(&fixtures().join(model).join("input.npy"));
        let shifted = base.mapv(|v| v * 0.5 + 0.1);
        let input = ndarray::concatenate(Axis(0), &[base.view(), shifted.view()]).unwrap();
        let targets: Vec<i64> = (0..8)
            .map(|i| if i % 3 == 0 { -1 } else { i % 10 })
            .collect();
        let compiled = compile_fixture(model, file, "epsilon-plus-flat");
        assert_eq!(compiled.signature.batch_relaxed, file.contains("fixed"));
        let mut engine = LrpEngine::new(&compiled, SessionConfig::default()).unwrap();
        let batched = engine.explain(input.view(), &targets).unwrap();
        for i in 0..8 {
            let single = engine
                .explain(
                    input.slice_axis(Axis(0), (i..i + 1).into()),
                    &targets[i..i + 1],
                )
                .unwrap();
            let a = batched.relevance.index_axis(Axis(0), i);
            let b = single.relevance.index_axis(Axis(0), 0);
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = a
                .iter()
                .zip(b.iter())
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                err <= 1e-5 * scale,
                "{model} row {i}: batch vs single differ by {err}"
            );
            assert_eq!(batched.targets[i], single.targets[0]);
        }
        // explain_batched splits into uneven batches and must agree too.
        let split = engine.explain_batched(input.view(), &targets, 3).unwrap();
        let err = (&split.relevance - &batched.relevance)
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        let scale = batched.relevance.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(err <= 1e-5 * scale);
    }
}

#[test]
fn logits_equal_plain_inference_on_the_original_model() {
    for model in FIXTURE_MODELS {
        let dir = fixtures().join(model);
        let input = read_npy::<f32>(&dir.join("input.npy"));
        let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
        let mut plain = Predictor::new(&bytes, SessionConfig::default()).unwrap();
        let expected = plain.predict(input.view()).unwrap();
        let compiled = compile_fixture(model, "model.onnx", "epsilon-alpha2-beta1");
        let mut engine = LrpEngine::new(&compiled, SessionConfig::default()).unwrap();
        let out = engine.explain(input.view(), &[-1, -1, -1, -1]).unwrap();
        let err = (&out.logits.view().into_dyn() - &expected.view())
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        assert!(err < 1e-5, "{model}: logits differ from plain ORT by {err}");
        // argmax targets resolve to the predicted class.
        for i in 0..4 {
            let row = expected.slice(s![i, ..]);
            assert_eq!(
                out.targets[i] as usize,
                spray_engine::argmax(row.iter().copied())
            );
        }
    }
}

#[test]
fn unsupported_ops_are_named_before_any_work() {
    use spray_onnx::attr;
    let mut b = GraphBuilder::new("image", &[1, 3, 8, 8], 7);
    let c = b.conv("image", 3, 4, 3, 1, true);
    let r = b.node("Relu", &[&c], vec![]);
    let idx = b.init_i64(&[0, 2]);
    let g = b.node("Gather", &[&r, &idx], vec![attr::int("axis", 1)]);
    let sq = b.node("Mul", &[&g, &g], vec![]);
    let gap = b.node("GlobalAveragePool", &[&sq], vec![]);
    let flat = b.node("Flatten", &[&gap], vec![]);
    let model = b.finish(&flat, 17);
    let err = compile_with(&model, epsilon(1e-6)).unwrap_err();
    let LrpError::Unsupported(nodes) = &err else {
        panic!("expected Unsupported, got {err}")
    };
    let names: Vec<(&str, &str)> = nodes
        .iter()
        .map(|n| (n.op_type.as_str(), n.name.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![("Gather", "node/gather_6"), ("Mul", "node/mul_7")]
    );
    let message = err.to_string();
    assert!(
        message.contains("Gather node 'node/gather_6'")
            && message.contains("Mul node 'node/mul_7'"),
        "{message}"
    );
}

#[test]
fn softmax_at_the_output_is_removed_and_lrp_starts_from_logits() {
    let mut model = bias_free_residual_net(5);
    let graph = model.graph.as_mut().unwrap();
    let logits = graph.output[0].name.clone();
    graph.node.push(spray_onnx::NodeProto {
        name: "softmax".into(),
        op_type: "Softmax".into(),
        input: vec![logits.clone()],
        output: vec!["probabilities".into()],
        attribute: vec![spray_onnx::attr::int("axis", 1)],
        ..Default::default()
    });
    graph.output[0].name = "probabilities".into();
    let with_softmax = compile_with(&model, epsilon(1e-9)).unwrap();
    let without = compile_with(&bias_free_residual_net(5), epsilon(1e-9)).unwrap();
    let input = random_input(2, &[3, 16, 16], 9);
    let a = LrpEngine::new(&with_softmax, SessionConfig::default())
        .unwrap()
        .explain(input.view(), &[1, 2])
        .unwrap();
    let b = LrpEngine::new(&without, SessionConfig::default())
        .unwrap()
        .explain(input.view(), &[1, 2])
        .unwrap();
    assert_eq!(a.logits, b.logits);
    assert_eq!(a.relevance, b.relevance);
}

#[test]
fn gate_multiplication_sends_relevance_to_the_signal() {
    // SiLU written as x * sigmoid(x): relevance passes through like an activation.
    use spray_onnx::attr;
    let build = |silu: bool| {
        let mut b = GraphBuilder::new("image", &[1, 3, 8, 8], 11);
        let c = b.conv("image", 3, 4, 3, 1, false);
        let act = if silu {
            let sig = b.node("Sigmoid", &[&c], vec![]);
            b.node("Mul", &[&c, &sig], vec![])
        } else {
            b.node("Identity", &[&c], vec![])
        };
        let gap = b.node("GlobalAveragePool", &[&act], vec![]);
        let flat = b.node("Flatten", &[&gap], vec![attr::int("axis", 1)]);
        b.finish(&flat, 17)
    };
    let compiled = compile_with(&build(true), epsilon(1e-9)).unwrap();
    let gate = compiled.layers.iter().find(|l| l.op_type == "Mul").unwrap();
    assert_eq!(gate.kind, spray_lrp::LayerKind::Gate);
    let input = random_input(3, &[3, 8, 8], 4);
    let out = LrpEngine::new(&compiled, SessionConfig::default())
        .unwrap()
        .explain(input.view(), &[0, 1, 2])
        .unwrap();
    // Conservation holds through the gate (bias-free, ε → 0).
    for i in 0..3 {
        let total: f32 = out.relevance.index_axis(Axis(0), i).sum();
        let logit = out.logits[[i, i]];
        assert!(
            (total - logit).abs() <= 1e-3 * logit.abs().max(1e-3),
            "{total} vs {logit}"
        );
    }
}

#[test]
fn compilation_is_deterministic() {
    for composite in spray_lrp::BUILTIN_COMPOSITES {
        let a = compile_fixture("resnet_small", "model.onnx", composite).to_bytes();
        let b = compile_fixture("resnet_small", "model.onnx", composite).to_bytes();
        assert!(a == b, "{composite}: two compilations differ");
    }
}
