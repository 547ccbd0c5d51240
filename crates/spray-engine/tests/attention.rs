//! Vision transformers against LXT 2.1 (AttnLRP's reference implementation): torchvision's
//! ViT and timm's DeiT recipe, small, exported with torch.onnx.export's defaults
//! (tests/fixtures/make_attention_fixtures.py). LXT computes Gradient × Input, which has no
//! denominators, so spray runs LRP-0 here (ε = 0 on linear layers, no stabiliser on sums);
//! its LayerNorm rule is LXT's (σ held constant, the default).

mod common;

use common::*;
use ndarray::ArrayD;
use spray_engine::{LrpEngine, SessionConfig};
use spray_lrp::{compile, AttentionRule, CompileOptions, Composite, CompositeOptions, Rule};

const MODELS: &[&str] = &["vit_tiny", "deit_tiny"];

fn lrp0(attention: AttentionRule) -> Composite {
    let mut c = Composite::builtin("epsilon", &CompositeOptions::default()).unwrap();
    c.conv = Rule::epsilon(0.0);
    c.dense = Rule::epsilon(0.0);
    c.sum = Rule::Norm { stabilizer: 0.0 };
    c.attention = attention;
    c
}

/// Compile `onnx` with the constant evaluator every test gets.
fn compile_model(
    onnx: &spray_onnx::ModelProto,
    composite: Composite,
    concept: Vec<spray_lrp::ConceptLayer>,
) -> spray_lrp::LrpModel {
    compile(
        onnx,
        &CompileOptions {
            composite,
            input: None,
            concept,
            constant_evaluator: Some(ort_constants()),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Compile `file` of the attention fixture `model`.
fn compile_fixture_file(
    model: &str,
    file: &str,
    composite: Composite,
    concept: Vec<spray_lrp::ConceptLayer>,
) -> spray_lrp::LrpModel {
    let path = fixture_set("lrp-attention").join(model).join(file);
    compile_model(&spray_onnx::load_model(&path).unwrap(), composite, concept)
}

/// The fixture's targets (the float64 reference's argmax).
fn fixture_targets(model: &str) -> Vec<i64> {
    let dir = fixture_set("lrp-attention").join(model);
    read_npy::<i64>(&dir.join("targets.npy"))
        .iter()
        .copied()
        .collect()
}

fn explain(model: &str, composite: Composite) -> (spray_engine::Explanation, ArrayD<f32>) {
    let compiled = compile_fixture_file(model, "model.onnx", composite, Vec::new());
    let input = read_npy::<f32>(&fixture_set("lrp-attention").join(model).join("input.npy"));
    let out = LrpEngine::new(&compiled, SessionConfig::default())
        .unwrap()
        .explain(input.view(), &fixture_targets(model))
        .unwrap();
    (out, input)
}

fn gap_to_max(a: &ArrayD<f32>, reference: &ArrayD<f32>) -> f32 {
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gap = (a - reference).iter().fold(0f32, |m, v| m.max(v.abs()));
    gap / scale
}

/// The largest gap to LXT in float64 (relative to max|R|) each model is held to. vit_tiny: 1e-4,
/// the bar (measured 1.7e-5 and 1.4e-5). deit_tiny: 2.5e-4 (measured 1.5e-4 and 1.6e-4,
/// one sample of three; the other two ≤ 6e-5): spray's float32 LRP form divides by each layer's
/// output where Gradient × Input multiplies by gradients, and on timm's initialisation that
/// rounds differently — LXT's own float32 result is 1.9e-5 from its float64 on this draw and
/// 2.2e-4 on the next seed, where spray's is 1.1e-4 (benches/RESULTS.md).
fn tolerance(model: &str) -> f32 {
    match model {
        "vit_tiny" => 1e-4,
        _ => 2.5e-4,
    }
}

#[test]
fn attn_lrp_and_cp_lrp_agree_with_lxt() {
    for model in MODELS {
        let dir = fixture_set("lrp-attention").join(model);
        let logits = read_npy::<f32>(&dir.join("logits.npy"));
        for (rule, file) in [
            (AttentionRule::AttnLrp, "relevance_attn-lrp.npy"),
            (AttentionRule::CpLrp, "relevance_cp-lrp.npy"),
        ] {
            let (out, input) = explain(model, lrp0(rule));
            assert_eq!(out.relevance.shape(), input.shape());
            let logit_gap = gap_to_max(&out.logits.clone().into_dyn(), &logits);
            assert!(logit_gap < 1e-5, "{model}: logits {logit_gap:e} from torch");
            let reference = read_npy::<f32>(&dir.join(file));
            let gap = gap_to_max(&out.relevance, &reference);
            assert!(
                gap <= tolerance(model),
                "{model} {}: {gap:e} of max|R| from LXT",
                rule.name()
            );
        }
    }
}

#[test]
fn cp_lrp_sends_nothing_through_queries_and_keys() {
    // Under CP-LRP the attention weights are constants: the relevance differs from AttnLRP's,
    // where queries and keys take their share, on every sample.
    let (attn, _) = explain("vit_tiny", lrp0(AttentionRule::AttnLrp));
    let (cp, _) = explain("vit_tiny", lrp0(AttentionRule::CpLrp));
    for (a, c) in attn.relevance.outer_iter().zip(cp.relevance.outer_iter()) {
        let gap = gap_to_max(&a.to_owned(), &c.to_owned());
        assert!(gap > 1e-2, "AttnLRP and CP-LRP maps too close: {gap:e}");
    }
}

#[test]
fn the_builtin_composites_explain_transformers_with_finite_maps() {
    // The default composite (♭ on the patch embedding, z⁺ has no convolution after it, ε on the
    // linear layers) and the others run on both exports and give finite relevance.
    for model in MODELS {
        for name in spray_lrp::BUILTIN_COMPOSITES {
            let composite = Composite::builtin(name, &fixture_options()).unwrap();
            let (out, _) = explain(model, composite);
            assert!(
                out.relevance.iter().all(|v| v.is_finite()),
                "{model} {name}: non-finite relevance"
            );
        }
    }
}

#[test]
fn a_transformers_concept_layers_are_its_residual_stream_after_the_middle_and_last_block() {
    let dir = fixture_set("lrp-attention").join("vit_tiny");
    let compiled = compile_fixture_file(
        "vit_tiny",
        "model.onnx",
        lrp0(AttentionRule::AttnLrp),
        spray_lrp::ConceptLayer::defaults(),
    );
    let concept = compiled.signature.concept.clone().expect("concept layers");
    let nodes: Vec<&str> = concept.layers.iter().map(|l| l.node.as_str()).collect();
    // Two blocks: LayerNorms ln_1/ln_2 of each and the encoder's, five; the middle one (index 2)
    // opens block 1, so its input is block 0's output; the last one reads block 1's.
    assert_eq!(
        nodes,
        [
            "/encoder/layers/encoder_layer_0/Add_1",
            "/encoder/layers/encoder_layer_1/Add_1"
        ]
    );
    assert!(concept
        .layers
        .iter()
        .all(|l| l.channels == 32 && l.channel_axis == spray_lrp::ChannelAxis::Last));
    let input = read_npy::<f32>(&dir.join("input.npy"));
    let targets: Vec<i64> = read_npy::<i64>(&dir.join("targets.npy"))
        .iter()
        .copied()
        .collect();
    let out = LrpEngine::new(&compiled, SessionConfig::default())
        .unwrap()
        .explain(input.view(), &targets)
        .unwrap();
    let per_channel = out.concept.expect("concept relevance");
    assert_eq!(per_channel.shape(), &[3, 64]);
    assert!(per_channel.iter().all(|v| v.is_finite()));
    // Asking for the concept output leaves the map alone.
    let (plain, _) = explain("vit_tiny", lrp0(AttentionRule::AttnLrp));
    assert_eq!(out.relevance, plain.relevance);
}

#[test]
fn a_transformer_exported_with_a_fixed_batch_is_explained_one_image_at_a_time() {
    // torch.onnx.export without dynamic_axes bakes the example's batch (1) into the class
    // token's expand and the attention reshapes: a batch of 3 fails in ONNX Runtime, one
    // image runs. The engine falls back to single images, with the same maps.
    let dir = fixture_set("lrp-attention").join("vit_tiny");
    let compiled = compile_fixture_file(
        "vit_tiny",
        "model_fixed_batch.onnx",
        lrp0(AttentionRule::AttnLrp),
        Vec::new(),
    );
    assert!(compiled.signature.batch_relaxed);
    let input = read_npy::<f32>(&dir.join("input.npy"));
    let targets = fixture_targets("vit_tiny");
    let mut engine = LrpEngine::new(&compiled, SessionConfig::default()).unwrap();
    let fixed = engine.explain(input.view(), &targets).unwrap();
    let (dynamic, _) = explain("vit_tiny", lrp0(AttentionRule::AttnLrp));
    assert!(gap_to_max(&fixed.relevance, &dynamic.relevance) < 1e-6);
    assert_eq!(fixed.targets, dynamic.targets);
}

fn default_composite() -> Composite {
    Composite::builtin("epsilon-plus-flat", &CompositeOptions::default()).unwrap()
}

/// Explain every input of a fixture with the default composite, the whole batch at once.
fn explain_default(model: &str, file: &str) -> spray_engine::Explanation {
    let compiled = compile_fixture_file(
        model,
        file,
        default_composite(),
        spray_lrp::ConceptLayer::defaults(),
    );
    let input = read_npy::<f32>(&fixture_set("lrp-attention").join(model).join("input.npy"));
    LrpEngine::new(&compiled, SessionConfig::default())
        .unwrap()
        .explain(input.view(), &[-1, -1, -1])
        .unwrap()
}

#[test]
fn swin_with_shifted_windows_and_cosine_attention_is_explained_in_batches() {
    // Swin computes its window pads and reshapes from shapes that pass through `B · nW`; the
    // folder keeps that as a multiple of the free batch, so the pads fold (they were refused,
    // "Pad whose pads are not constant"). Swin V2 normalises q and k by their L2 norms, held
    // constant like LayerNorm's σ. No reference relevance exists: the logits must be torch's,
    // the maps finite, a batch the same as its images one by one, and a fixed-batch export
    // the same as the dynamic one.
    for model in ["swin_tiny", "swin_v2_tiny"] {
        let dir = fixture_set("lrp-attention").join(model);
        let logits = read_npy::<f32>(&dir.join("logits.npy"));
        let batch = explain_default(model, "model.onnx");
        let logit_gap = gap_to_max(&batch.logits.clone().into_dyn(), &logits);
        assert!(logit_gap < 1e-5, "{model}: logits {logit_gap:e} from torch");
        assert!(batch.relevance.iter().all(|v| v.is_finite()), "{model}");
        assert!(batch.relevance.iter().any(|v| *v != 0.0), "{model}");
        let concept = batch.concept.as_ref().expect("token concept layers");
        assert!(concept.iter().all(|v| v.is_finite()));
        let fixed = explain_default(model, "model_fixed_batch.onnx");
        assert!(
            gap_to_max(&fixed.relevance, &batch.relevance) < 1e-5,
            "{model}"
        );

        let dir_input = read_npy::<f32>(&dir.join("input.npy"));
        let compiled = compile_fixture_file(
            model,
            "model.onnx",
            default_composite(),
            spray_lrp::ConceptLayer::defaults(),
        );
        let single = LrpEngine::new(&compiled, SessionConfig::default())
            .unwrap()
            .explain_batched(dir_input.view(), &[-1, -1, -1], 1)
            .unwrap();
        assert!(
            gap_to_max(&single.relevance, &batch.relevance) < 1e-5,
            "{model}"
        );
    }
}

/// One attention head over the 16 positions of a [N, 3, 4, 4] input, its products written as
/// MatMul or as Einsum (MaxViT's form): `softmax(q·kᵀ)·t`, then a dense head.
fn attention_net(einsum: bool) -> spray_onnx::ModelProto {
    use spray_onnx::attr;
    let mut b = GraphBuilder::new("image", &[1, 3, 4, 4], 5);
    let shape = b.init_i64(&[0, 3, 16]);
    let t = b.node("Reshape", &["image", &shape], vec![]);
    let perm = |b: &mut GraphBuilder, x: &str| {
        b.node("Transpose", &[x], vec![attr::ints("perm", &[0, 2, 1])])
    };
    let tokens = perm(&mut b, &t); // [N, 16, 3]
    let (wq, wk) = (b.init(&[3, 3], 0.8), b.init(&[3, 3], 0.8));
    let q = b.node("MatMul", &[&tokens, &wq], vec![]);
    let k = b.node("MatMul", &[&tokens, &wk], vec![]);
    let scores = if einsum {
        b.node(
            "Einsum",
            &[&q, &k],
            vec![attr::string("equation", "bid,bjd->bij")],
        )
    } else {
        let kt = perm(&mut b, &k);
        b.node("MatMul", &[&q, &kt], vec![])
    };
    let weights = b.node("Softmax", &[&scores], vec![attr::int("axis", -1)]);
    let mixed = if einsum {
        b.node(
            "Einsum",
            &[&weights, &tokens],
            vec![attr::string("equation", "bij,bjd->bid")],
        )
    } else {
        b.node("MatMul", &[&weights, &tokens], vec![])
    };
    let flat = b.node("Flatten", &[&mixed], vec![attr::int("axis", 1)]);
    let head = b.init(&[5, 48], 0.3);
    let logits = b.node("Gemm", &[&flat, &head], vec![attr::int("transB", 1)]);
    b.finish(&logits, 17)
}

#[test]
fn attention_written_as_einsum_gets_the_relevance_of_attention_written_as_matmul() {
    let input = random_input(4, &[3, 4, 4], 9);
    for rule in [AttentionRule::AttnLrp, AttentionRule::CpLrp] {
        let run = |einsum: bool| {
            let compiled = compile_model(&attention_net(einsum), lrp0(rule), Vec::new());
            LrpEngine::new(&compiled, SessionConfig::default())
                .unwrap()
                .explain(input.view(), &[-1; 4])
                .unwrap()
        };
        let (matmul, einsum) = (run(false), run(true));
        assert!(matmul.relevance.iter().all(|v| v.is_finite()));
        let gap = gap_to_max(&einsum.relevance, &matmul.relevance);
        assert!(gap < 1e-5, "{}: {gap:e}", rule.name());
    }
}
