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
            concept: Vec::new(),
            constant_evaluator: Some(ort_constants()),
        },
    )
}

fn epsilon(eps: f32) -> Composite {
    let mut c = Composite::builtin("epsilon", &CompositeOptions::default()).unwrap();
    c.conv = Rule::epsilon(eps);
    c.dense = Rule::epsilon(eps);
    c
}

/// Explain `input` with the ε composite (tiny ε) for `targets`.
fn explain_epsilon(
    model: &spray_onnx::ModelProto,
    input: &ndarray::ArrayD<f32>,
    targets: &[i64],
) -> spray_engine::Explanation {
    let compiled = compile_with(model, epsilon(1e-9)).unwrap();
    LrpEngine::new(&compiled, SessionConfig::default())
        .unwrap()
        .explain(input.view(), targets)
        .unwrap()
}

/// Σ relevance = target logit within `tolerance` (relative), per sample.
fn assert_conserved(out: &spray_engine::Explanation, tolerance: f64) {
    for (i, row) in out.relevance.axis_iter(Axis(0)).enumerate() {
        let total: f64 = row.iter().map(|v| *v as f64).sum();
        let logit = out.logits[[i, out.targets[i] as usize]] as f64;
        assert!(
            (total - logit).abs() <= tolerance * logit.abs(),
            "sample {i}: sum of relevance {total} vs logit {logit}"
        );
    }
}

/// max |a − b| ≤ tolerance · max |b|.
fn assert_close(a: &ndarray::ArrayD<f32>, b: &ndarray::ArrayD<f32>, tolerance: f32, what: &str) {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = (a - b).iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(err <= tolerance * scale, "{what}: {err:.3e} of {scale:.3e}");
}

#[test]
fn relevance_is_conserved_on_bias_free_networks_under_epsilon() {
    for seed in [1, 2, 3] {
        let input = random_input(6, &[3, 16, 16], seed + 100);
        let out = explain_epsilon(&bias_free_residual_net(seed), &input, &[-1; 6]);
        assert_conserved(&out, 1e-4);
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

/// The compiled model's forward half (what verify scores with) gives the LRP model's logits,
/// for every fixture and composite, and no longer reads a target.
#[test]
fn the_forward_half_gives_the_lrp_models_logits() {
    for model in FIXTURE_MODELS {
        let dir = fixtures().join(model);
        let input = read_npy::<f32>(&dir.join("input.npy"));
        for composite in ["epsilon-plus", "epsilon-alpha2-beta1-flat"] {
            let compiled = compile_fixture(model, "model.onnx", composite);
            let mut engine = LrpEngine::new(&compiled, SessionConfig::default()).unwrap();
            let lrp = engine.explain(input.view(), &[-1, -1, -1, -1]).unwrap();
            let forward = spray_onnx::encode_model(&compiled.forward_model());
            assert!(forward.len() < compiled.to_bytes().len());
            let mut plain = Predictor::new(&forward, SessionConfig::default()).unwrap();
            let logits = plain.predict(input.view()).unwrap();
            assert_eq!(logits.shape(), lrp.logits.shape(), "{model}");
            let err = (&lrp.logits.view().into_dyn() - &logits.view())
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
            assert!(err < 1e-5, "{model} × {composite}: logits differ by {err}");
        }
    }
}

#[test]
fn unsupported_ops_are_named_before_any_work() {
    use spray_onnx::attr;
    let mut b = GraphBuilder::new("image", &[1, 3, 8, 8], 7);
    let c = b.conv("image", 3, 4, 3, 1, true);
    let r = b.node("Relu", &[&c], vec![]);
    let g = b.node("LpNormalization", &[&r], vec![attr::int("axis", 1)]);
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
        vec![
            ("LpNormalization", "node/lpnormalization_5"),
            ("Mul", "node/mul_6")
        ]
    );
    let message = err.to_string();
    assert!(
        message.contains("LpNormalization node 'node/lpnormalization_5'")
            && message.contains("Mul node 'node/mul_6'"),
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

/// conv → relu → (channel selection) → GAP → dense, bias-free. The selection is either a Gather
/// with repeated and negative indices or the equivalent 1×1 convolution with one-hot weights.
fn channel_selection_net(as_gather: bool) -> spray_onnx::ModelProto {
    use spray_onnx::attr;
    let picks: [i64; 5] = [0, 2, 2, -1, 5];
    let mut b = GraphBuilder::new("image", &[1, 3, 12, 12], 21);
    let c = b.conv("image", 3, 6, 3, 1, false);
    let r = b.node("Relu", &[&c], vec![]);
    let selected = if as_gather {
        let idx = b.init_i64(&picks);
        b.node("Gather", &[&r, &idx], vec![attr::int("axis", 1)])
    } else {
        let mut w = vec![0f32; picks.len() * 6];
        for (j, &p) in picks.iter().enumerate() {
            w[j * 6 + p.rem_euclid(6) as usize] = 1.0;
        }
        let name = "selection".to_string();
        b.graph
            .initializer
            .push(spray_onnx::Tensor::f32(vec![picks.len() as i64, 6, 1, 1], w).to_proto(&name));
        b.node(
            "Conv",
            &[&r, &name],
            vec![attr::ints("kernel_shape", &[1, 1])],
        )
    };
    let gap = b.node("GlobalAveragePool", &[&selected], vec![]);
    let flat = b.node("Flatten", &[&gap], vec![attr::int("axis", 1)]);
    let w = b.init(&[4, picks.len() as i64], 0.5);
    let logits = b.node("Gemm", &[&flat, &w], vec![attr::int("transB", 1)]);
    b.finish(&logits, 17)
}

#[test]
fn gather_returns_relevance_to_the_elements_it_selected() {
    let input = random_input(3, &[3, 12, 12], 5);
    let gathered = explain_epsilon(&channel_selection_net(true), &input, &[0, 1, 3]);
    let convolved = explain_epsilon(&channel_selection_net(false), &input, &[0, 1, 3]);
    assert_close(
        &gathered.relevance,
        &convolved.relevance,
        1e-5,
        "Gather vs one-hot 1x1 conv",
    );
    assert_conserved(&gathered, 1e-4);
}

/// conv → relu → (every second row and column, then the channels tiled twice) → GAP → dense,
/// bias-free; or the same written as a stride-2 1×1 convolution with one-hot weights.
fn strided_net(as_slice: bool) -> spray_onnx::ModelProto {
    use spray_onnx::attr;
    let mut b = GraphBuilder::new("image", &[1, 3, 12, 12], 31);
    let c = b.conv("image", 3, 4, 3, 1, false);
    let r = b.node("Relu", &[&c], vec![]);
    let picked = if as_slice {
        let (starts, ends) = (b.init_i64(&[0, 0]), b.init_i64(&[i64::MAX, i64::MAX]));
        let (axes, steps) = (b.init_i64(&[2, 3]), b.init_i64(&[2, 2]));
        let strided = b.node("Slice", &[&r, &starts, &ends, &axes, &steps], vec![]);
        let repeats = b.init_i64(&[1, 2, 1, 1]);
        b.node("Tile", &[&strided, &repeats], vec![])
    } else {
        let mut w = vec![0f32; 8 * 4];
        for j in 0..8 {
            w[j * 4 + j % 4] = 1.0;
        }
        let name = "selection".to_string();
        b.graph
            .initializer
            .push(spray_onnx::Tensor::f32(vec![8, 4, 1, 1], w).to_proto(&name));
        b.node(
            "Conv",
            &[&r, &name],
            vec![
                attr::ints("kernel_shape", &[1, 1]),
                attr::ints("strides", &[2, 2]),
            ],
        )
    };
    let gap = b.node("GlobalAveragePool", &[&picked], vec![]);
    let flat = b.node("Flatten", &[&gap], vec![attr::int("axis", 1)]);
    let w = b.init(&[3, 8], 0.5);
    let logits = b.node("Gemm", &[&flat, &w], vec![attr::int("transB", 1)]);
    b.finish(&logits, 17)
}

#[test]
fn strided_slice_and_tile_move_relevance_like_the_values() {
    let input = random_input(3, &[3, 12, 12], 6);
    let sliced = explain_epsilon(&strided_net(true), &input, &[0, 1, 2]);
    let convolved = explain_epsilon(&strided_net(false), &input, &[0, 1, 2]);
    assert_close(
        &sliced.relevance,
        &convolved.relevance,
        1e-5,
        "strided Slice + Tile vs one-hot strided conv",
    );
    assert_conserved(&sliced, 1e-4);
}

/// ShuffleNet's pattern: conv → relu → split the channels 2 + 3 → conv on the second part →
/// concat → GAP → dense, bias-free; written with Split or with two Slices.
fn channel_split_net(with_split: bool) -> spray_onnx::ModelProto {
    use spray_onnx::attr;
    let mut b = GraphBuilder::new("image", &[1, 3, 10, 10], 51);
    let c = b.conv("image", 3, 5, 3, 1, false);
    let r = b.node("Relu", &[&c], vec![]);
    let (first, second) = if with_split {
        let sizes = b.init_i64(&[2, 3]);
        let out = b.node("Split", &[&r, &sizes], vec![attr::int("axis", 1)]);
        let node = b.graph.node.last_mut().unwrap();
        node.output = vec![format!("{out}_a"), format!("{out}_b")];
        (format!("{out}_a"), format!("{out}_b"))
    } else {
        let axes = b.init_i64(&[1]);
        let (s0, e0) = (b.init_i64(&[0]), b.init_i64(&[2]));
        let (s1, e1) = (b.init_i64(&[2]), b.init_i64(&[5]));
        let first = b.node("Slice", &[&r, &s0, &e0, &axes], vec![]);
        let second = b.node("Slice", &[&r, &s1, &e1, &axes], vec![]);
        (first, second)
    };
    let branch = b.conv(&second, 3, 3, 3, 1, false);
    let branch = b.node("Relu", &[&branch], vec![]);
    let joined = b.node("Concat", &[&first, &branch], vec![attr::int("axis", 1)]);
    let gap = b.node("GlobalAveragePool", &[&joined], vec![]);
    let flat = b.node("Flatten", &[&gap], vec![attr::int("axis", 1)]);
    let w = b.init(&[3, 5], 0.5);
    let logits = b.node("Gemm", &[&flat, &w], vec![attr::int("transB", 1)]);
    b.finish(&logits, 17)
}

#[test]
fn split_sends_each_part_its_relevance() {
    let input = random_input(3, &[3, 10, 10], 8);
    let split = explain_epsilon(&channel_split_net(true), &input, &[0, 1, 2]);
    let sliced = explain_epsilon(&channel_split_net(false), &input, &[0, 1, 2]);
    assert_close(
        &split.relevance,
        &sliced.relevance,
        1e-6,
        "Split vs two Slices",
    );
    assert_conserved(&split, 1e-4);
}

#[test]
fn average_pooling_with_ceil_mode_conserves_relevance() {
    use spray_onnx::attr;
    // timm's ResNet-D downsample: AvgPool(2, 2, ceil_mode, count_include_pad=False) on an odd
    // map, then a padded 3×3 stride-2 pool, where the last windows cover fewer inputs.
    let mut b = GraphBuilder::new("image", &[1, 3, 13, 13], 61);
    let c = b.conv("image", 3, 4, 3, 1, false);
    let r = b.node("Relu", &[&c], vec![]);
    let p1 = b.node(
        "AveragePool",
        &[&r],
        vec![
            attr::ints("kernel_shape", &[2, 2]),
            attr::ints("strides", &[2, 2]),
            attr::int("ceil_mode", 1),
        ],
    );
    let p2 = b.node(
        "AveragePool",
        &[&p1],
        vec![
            attr::ints("kernel_shape", &[3, 3]),
            attr::ints("strides", &[2, 2]),
            attr::ints("pads", &[1, 1, 1, 1]),
            attr::int("ceil_mode", 1),
        ],
    );
    let flat = b.node("Flatten", &[&p2], vec![attr::int("axis", 1)]);
    // A positive head, so that the logit is not itself a near-cancellation of ±terms.
    let w = "positive_head".to_string();
    let values = (0..3 * 64).map(|i| 0.1 + (i % 7) as f32 * 0.05).collect();
    b.graph
        .initializer
        .push(spray_onnx::Tensor::f32(vec![3, 64], values).to_proto(&w));
    let logits = b.node("Gemm", &[&flat, &w], vec![attr::int("transB", 1)]);
    let model = b.finish(&logits, 17);
    let input = random_input(3, &[3, 13, 13], 9);
    let out = explain_epsilon(&model, &input, &[0, 1, 2]);
    assert_conserved(&out, 1e-4);
}

/// conv → relu → global max pooling → dense, as GlobalMaxPool or as a MaxPool over the whole map.
fn global_max_net(global: bool) -> spray_onnx::ModelProto {
    use spray_onnx::attr;
    let mut b = GraphBuilder::new("image", &[1, 3, 12, 12], 41);
    let c = b.conv("image", 3, 5, 3, 1, false);
    let r = b.node("Relu", &[&c], vec![]);
    let pooled = if global {
        b.node("GlobalMaxPool", &[&r], vec![])
    } else {
        b.node(
            "MaxPool",
            &[&r],
            vec![
                attr::ints("kernel_shape", &[12, 12]),
                attr::ints("strides", &[12, 12]),
            ],
        )
    };
    let flat = b.node("Flatten", &[&pooled], vec![attr::int("axis", 1)]);
    let w = b.init(&[3, 5], 0.5);
    let logits = b.node("Gemm", &[&flat, &w], vec![attr::int("transB", 1)]);
    b.finish(&logits, 17)
}

#[test]
fn global_max_pooling_is_winner_takes_all_like_max_pooling() {
    let input = random_input(3, &[3, 12, 12], 7);
    let global = explain_epsilon(&global_max_net(true), &input, &[0, 1, 2]);
    let windowed = explain_epsilon(&global_max_net(false), &input, &[0, 1, 2]);
    assert_close(
        &global.relevance,
        &windowed.relevance,
        1e-6,
        "GlobalMaxPool vs full-size MaxPool",
    );
    assert_conserved(&global, 1e-4);
}

/// ConvNeXt's pattern: channels-last LayerNorm between transposes, then a per-position MatMul,
/// a ReLU and a residual Add. `decomposed` writes the LayerNorm out in primitive ops, as torch
/// exports below opset 17 and tf2onnx do. Opset 18: ReduceMean takes its axes as an input.
fn layer_norm_net(decomposed: bool) -> spray_onnx::ModelProto {
    use spray_onnx::attr;
    let mut b = GraphBuilder::new("image", &[1, 3, 10, 10], 8);
    let c = b.conv("image", 3, 6, 3, 1, false);
    let nhwc = b.node("Transpose", &[&c], vec![attr::ints("perm", &[0, 2, 3, 1])]);
    let gamma = b.init(&[6], 1.0);
    let beta = "ln_bias".to_string();
    b.graph
        .initializer
        .push(spray_onnx::Tensor::f32(vec![6], vec![0.0; 6]).to_proto(&beta));
    let ln = if decomposed {
        let axes = b.init_i64(&[-1]);
        let mean = b.node("ReduceMean", &[&nhwc, &axes], vec![]);
        let centred = b.node("Sub", &[&nhwc, &mean], vec![]);
        let two = "two".to_string();
        b.graph
            .initializer
            .push(spray_onnx::Tensor::f32(vec![], vec![2.0]).to_proto(&two));
        let squared = b.node("Pow", &[&centred, &two], vec![]);
        let var = b.node("ReduceMean", &[&squared, &axes], vec![]);
        let eps = "eps".to_string();
        b.graph
            .initializer
            .push(spray_onnx::Tensor::f32(vec![], vec![1e-6]).to_proto(&eps));
        let shifted = b.node("Add", &[&var, &eps], vec![]);
        let std = b.node("Sqrt", &[&shifted], vec![]);
        let normed = b.node("Div", &[&centred, &std], vec![]);
        let scaled = b.node("Mul", &[&normed, &gamma], vec![]);
        b.node("Add", &[&scaled, &beta], vec![])
    } else {
        b.node(
            "LayerNormalization",
            &[&nhwc, &gamma, &beta],
            vec![attr::int("axis", -1), attr::float("epsilon", 1e-6)],
        )
    };
    let w = b.init(&[6, 6], 0.4);
    let mm = b.node("MatMul", &[&ln, &w], vec![]);
    let act = b.node("Relu", &[&mm], vec![]);
    let nchw = b.node(
        "Transpose",
        &[&act],
        vec![attr::ints("perm", &[0, 3, 1, 2])],
    );
    let res = b.node("Add", &[&nchw, &c], vec![]);
    let gap = b.node("GlobalAveragePool", &[&res], vec![]);
    let flat = b.node("Flatten", &[&gap], vec![attr::int("axis", 1)]);
    let head = b.init(&[3, 6], 0.5);
    let logits = b.node("Gemm", &[&flat, &head], vec![attr::int("transB", 1)]);
    b.finish(&logits, 18)
}

#[test]
fn layer_normalization_conserves_relevance_and_a_decomposed_one_matches() {
    let input = random_input(4, &[3, 10, 10], 3);
    let fused = explain_epsilon(&layer_norm_net(false), &input, &[0, 1, 2, -1]);
    assert_eq!(fused.relevance.shape(), input.shape());
    assert_conserved(&fused, 1e-3);
    // Written out in primitive ops, it is fused into one LayerNormalization before planning
    // (normalize/layer_norm.rs): the same relevance as the fused op. (β = 0 here, so the
    // default rule, σ held constant, conserves.)
    let decomposed = explain_epsilon(&layer_norm_net(true), &input, &[0, 1, 2, -1]);
    assert_close(
        &decomposed.relevance,
        &fused.relevance,
        1e-5,
        "decomposed LayerNorm",
    );
}

/// A classifier in the form of the ONNX model zoo's opset-7 exports (Caffe2-era AlexNet and
/// GoogLeNet): BatchNormalization with `spatial`, LRN, Slice with attributes, weights listed as
/// graph inputs, IR version 3, a trailing Softmax. `modern` writes the same network at opset 17.
fn zoo_style_net(modern: bool) -> spray_onnx::ModelProto {
    use spray_onnx::attr;
    let mut b = GraphBuilder::new("data_0", &[1, 3, 16, 16], 77);
    let c = b.conv("data_0", 3, 8, 3, 1, true);
    let (gamma, beta, mean) = (b.init(&[8], 0.5), b.init(&[8], 0.5), b.init(&[8], 0.5));
    let var = "bn_var".to_string();
    b.graph
        .initializer
        .push(spray_onnx::Tensor::f32(vec![8], vec![1.5; 8]).to_proto(&var));
    let mut bn_attrs = vec![attr::float("epsilon", 1e-5)];
    if !modern {
        bn_attrs.push(attr::int("spatial", 1));
    }
    let bn = b.node(
        "BatchNormalization",
        &[&c, &gamma, &beta, &mean, &var],
        bn_attrs,
    );
    let r = b.node("Relu", &[&bn], vec![]);
    let lrn = b.node(
        "LRN",
        &[&r],
        vec![
            attr::int("size", 5),
            attr::float("alpha", 1e-4),
            attr::float("beta", 0.75),
            attr::float("bias", 1.0),
        ],
    );
    let pool = b.node(
        "MaxPool",
        &[&lrn],
        vec![
            attr::ints("kernel_shape", &[3, 3]),
            attr::ints("strides", &[2, 2]),
        ],
    );
    // Keep channels 1..7 and drop the last row and column.
    let (starts, ends, axes) = ([1i64, 0, 0], [7i64, -1, -1], [1i64, 2, 3]);
    let sliced = if modern {
        let (s, e, a) = (b.init_i64(&starts), b.init_i64(&ends), b.init_i64(&axes));
        b.node("Slice", &[&pool, &s, &e, &a], vec![])
    } else {
        b.node(
            "Slice",
            &[&pool],
            vec![
                attr::ints("starts", &starts),
                attr::ints("ends", &ends),
                attr::ints("axes", &axes),
            ],
        )
    };
    let c2 = b.conv(&sliced, 6, 8, 3, 1, true);
    let r2 = b.node("Relu", &[&c2], vec![]);
    let gap = b.node("GlobalAveragePool", &[&r2], vec![]);
    let flat = b.node("Flatten", &[&gap], vec![attr::int("axis", 1)]);
    let (w, bias) = (b.init(&[5, 8], 0.5), b.init(&[5], 0.1));
    let logits = b.node("Gemm", &[&flat, &w, &bias], vec![attr::int("transB", 1)]);
    let prob = b.node("Softmax", &[&logits], vec![attr::int("axis", 1)]);
    let mut model = b.finish(&prob, if modern { 17 } else { 7 });
    if !modern {
        model.ir_version = 3;
        let graph = model.graph.as_mut().unwrap();
        let weights: Vec<_> = graph
            .initializer
            .iter()
            .map(|t| {
                let dims: Vec<Result<i64, &str>> = t.dims.iter().map(|d| Ok(*d)).collect();
                spray_onnx::value_info(&t.name, t.data_type, &dims)
            })
            .collect();
        graph.input.extend(weights);
    }
    model
}

#[test]
fn opset_7_zoo_style_models_are_upgraded_without_changing_the_result() {
    let input = random_input(3, &[3, 16, 16], 12);
    let run = |model: &spray_onnx::ModelProto| {
        let compiled = compile_with(
            model,
            Composite::builtin("epsilon-plus-flat", &CompositeOptions::default()).unwrap(),
        )
        .unwrap();
        LrpEngine::new(&compiled, SessionConfig::default())
            .unwrap()
            .explain(input.view(), &[-1, 2, 4])
            .unwrap()
    };
    let old = zoo_style_net(false);
    let (a, b) = (run(&old), run(&zoo_style_net(true)));
    // Equal up to float rounding: ORT cannot constant-fold weights that are also graph inputs.
    assert_close(&a.relevance, &b.relevance, 1e-5, "relevance");
    assert_close(
        &a.logits.clone().into_dyn(),
        &b.logits.clone().into_dyn(),
        1e-5,
        "logits",
    );
    // The logits are the pre-softmax scores of the original opset-7 model.
    let bytes = spray_onnx::encode_model(&old);
    let probabilities = Predictor::new(&bytes, SessionConfig::default())
        .unwrap()
        .predict(input.view())
        .unwrap();
    for i in 0..3 {
        let row = a.logits.slice(s![i, ..]);
        let max = row.iter().fold(f32::MIN, |m, v| m.max(*v));
        let z: f32 = row.iter().map(|v| (v - max).exp()).sum();
        for k in 0..5 {
            let p = (row[k] - max).exp() / z;
            assert!((p - probabilities[[i, k]]).abs() < 1e-5);
        }
    }
}

#[test]
fn per_element_batch_normalization_of_opset_7_is_refused_by_name() {
    let mut model = zoo_style_net(false);
    let graph = model.graph.as_mut().unwrap();
    let bn = graph
        .node
        .iter_mut()
        .find(|n| n.op_type == "BatchNormalization")
        .unwrap();
    bn.attribute.retain(|a| a.name != "spatial");
    bn.attribute.push(spray_onnx::attr::int("spatial", 0));
    let err = compile_with(&model, epsilon(1e-6)).unwrap_err().to_string();
    assert!(
        err.contains("spatial=0") && err.contains("BatchNormalization 'node/batchnormalization_"),
        "{err}"
    );
}

/// Every model the tests know, compiled under every composite, as SHA-256 digests of the
/// compiled bytes. A refactor of the compiler must leave all of them unchanged; a deliberate
/// change of the emitted graph re-records them with `SPRAY_RECORD_COMPILED=1` and says why in
/// its commit.
#[test]
fn compiled_models_are_byte_identical_to_the_recorded_digests() {
    use sha2::{Digest, Sha256};
    use std::collections::BTreeMap;
    let mut models: Vec<(String, spray_onnx::ModelProto)> = Vec::new();
    for (set, names) in FIXTURE_SETS {
        for name in *names {
            let path = fixture_set(set).join(name).join("model.onnx");
            models.push((
                format!("{set}/{name}"),
                spray_onnx::load_model(&path).unwrap(),
            ));
        }
    }
    // The transformers (no zennit goldens: LXT is their reference, tests/attention.rs).
    for name in ["vit_tiny", "deit_tiny", "swin_tiny", "swin_v2_tiny"] {
        let path = fixture_set("lrp-attention").join(name).join("model.onnx");
        models.push((
            format!("lrp-attention/{name}"),
            spray_onnx::load_model(&path).unwrap(),
        ));
    }
    let root = fixtures().join("../../..");
    for file in [
        "tests/fixtures/models/voc_tiny.onnx",
        "tests/fixtures/models/imagenet_tiny.onnx",
        "tests/demo/model.onnx",
    ] {
        models.push((
            file.into(),
            spray_onnx::load_model(&root.join(file)).unwrap(),
        ));
    }
    for flag in [false, true] {
        models.push((
            format!("channel_selection_net({flag})"),
            channel_selection_net(flag),
        ));
        models.push((format!("strided_net({flag})"), strided_net(flag)));
        models.push((
            format!("channel_split_net({flag})"),
            channel_split_net(flag),
        ));
        models.push((format!("global_max_net({flag})"), global_max_net(flag)));
        models.push((format!("layer_norm_net({flag})"), layer_norm_net(flag)));
        models.push((format!("zoo_style_net({flag})"), zoo_style_net(flag)));
    }
    models.push((
        "bias_free_residual_net(3)".into(),
        bias_free_residual_net(3),
    ));

    let mut digests = BTreeMap::new();
    for (name, model) in &models {
        for composite in spray_lrp::BUILTIN_COMPOSITES {
            let composite_rules = Composite::builtin(composite, &fixture_options()).unwrap();
            let key = format!("{name} | {composite}");
            let value = match compile_with(model, composite_rules) {
                Ok(compiled) => format!("{:x}", Sha256::digest(compiled.to_bytes())),
                Err(e) => format!("error: {e}"),
            };
            digests.insert(key, value);
        }
    }
    let path = fixtures().join("../compiled_digests.json");
    if std::env::var_os("SPRAY_RECORD_COMPILED").is_some() {
        let text = serde_json::to_string_pretty(&digests).unwrap();
        std::fs::write(&path, text + "\n").unwrap();
        return;
    }
    let recorded: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let changed: Vec<&String> = digests
        .iter()
        .filter(|(k, v)| recorded.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        changed.is_empty() && recorded.len() == digests.len(),
        "{} of {} compilations differ from tests/fixtures/compiled_digests.json \
         ({} recorded): {changed:?}",
        changed.len(),
        digests.len(),
        recorded.len()
    );
}

#[test]
fn concept_relevance_sums_each_layer_per_channel_and_leaves_the_map_alone() {
    let model = bias_free_residual_net(4);
    let input = random_input(6, &[3, 16, 16], 104);
    let plain = explain_epsilon(&model, &input, &[-1; 6]);
    assert!(plain.concept.is_none());
    let compiled = compile(
        &model,
        &CompileOptions {
            composite: epsilon(1e-9),
            input: None,
            concept: spray_lrp::ConceptLayer::defaults(),
            constant_evaluator: Some(ort_constants()),
        },
    )
    .unwrap();
    let concept = compiled
        .signature
        .concept
        .clone()
        .expect("a concept output");
    // middle-conv (the third of four convolutions, inside the residual branch), then last-conv.
    assert_eq!(concept.layers.len(), 2);
    assert_eq!(concept.channels(), 16);
    let out = LrpEngine::new(&compiled, SessionConfig::default())
        .unwrap()
        .explain(input.view(), &[-1; 6])
        .unwrap();
    assert_close(
        &out.relevance,
        &plain.relevance,
        1e-6,
        "relevance with a concept output",
    );
    let c = out.concept.expect("concept relevance");
    assert_eq!(c.shape(), &[6, 16]);
    for i in 0..6 {
        // The last convolution feeds the logit through pooling only: its channels carry all
        // of it (conservation, bias-free under ε → 0).
        let last: f64 = c.slice(s![i, 8..]).iter().map(|&v| v as f64).sum();
        let logit = out.logits[[i, out.targets[i] as usize]] as f64;
        assert!(
            (last - logit).abs() <= 1e-4 * logit.abs(),
            "{last} vs {logit}"
        );
        // The residual branch carries a part of it (the norm rule's share at the Add).
        assert!(c.slice(s![i, ..8]).iter().all(|v| v.is_finite()));
    }
    // A named layer that does not exist is refused, naming the convolutions.
    let err = compile(
        &model,
        &CompileOptions {
            composite: epsilon(1e-9),
            input: None,
            concept: vec![spray_lrp::ConceptLayer::Node("no such node".into())],
            constant_evaluator: Some(ort_constants()),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no such node") && err.contains("convolutions"),
        "{err}"
    );
}
