//! spray's LRP against zennit (the reference implementation) on the committed fixtures made by
//! tests/fixtures/make_lrp_fixtures.py: every model × composite, per sample
//! max|R_spray − R_zennit| / max|R_zennit| ≤ 1e-4.
//!
//! The bound holds for every pair, without exceptions. The fixtures use zennit 0.5.1 with
//! upstream's exact BatchNorm merge (see `ExactMergeBatchNorm` in the script: the released merge
//! leaves a factor 1/sqrt(1 + eps) per BatchNorm, up to 1.3e-4 on resnet18). For context the
//! report also prints how far zennit's own float32 result lies from its float64 result
//! (`zennit_float32_vs_float64` in manifest.json): resnet18 × epsilon divides by
//! pre-activations that cancel to ~1e-5, so there even zennit's float32 is 3e-5 from float64.

mod common;

use common::*;
use ndarray::{Axis, Ix2};
use spray_engine::{LrpEngine, SessionConfig};

const TOLERANCE: f32 = 1e-4;

/// A figure the fixture script recorded for (model, composite) in manifest.json.
fn recorded(
    manifest: &serde_json::Value,
    figure: &str,
    model: &str,
    composite: &str,
) -> Option<f32> {
    manifest["models"][model][figure][composite]
        .as_f64()
        .map(|v| v as f32)
}

#[test]
fn relevance_matches_zennit_for_every_model_and_composite() {
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for (set, models) in FIXTURE_SETS {
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture_set(set).join("manifest.json")).unwrap(),
        )
        .unwrap();
        for model in *models {
            let dir = fixture_set(set).join(model);
            let input = read_npy::<f32>(&dir.join("input.npy"));
            let targets: Vec<i64> = read_npy::<i64>(&dir.join("targets.npy"))
                .iter()
                .copied()
                .collect();
            let zennit_logits = read_npy::<f32>(&dir.join("logits.npy"))
                .into_dimensionality::<Ix2>()
                .unwrap();
            for composite in spray_lrp::BUILTIN_COMPOSITES {
                let compiled = compile_fixture_in(set, model, "model.onnx", composite);
                let mut engine = LrpEngine::new(&compiled, SessionConfig::default()).unwrap();
                let out = engine.explain(input.view(), &targets).unwrap();
                let logit_err = (&out.logits - &zennit_logits)
                    .iter()
                    .fold(0f32, |m, v| m.max(v.abs()));
                assert!(
                    logit_err < 1e-4,
                    "{set}/{model}: logits differ from torch by {logit_err}"
                );
                let expected = read_npy::<f32>(&dir.join(format!("relevance_{composite}.npy")));
                assert_eq!(
                    out.relevance.shape(),
                    expected.shape(),
                    "{model}/{composite}: shape"
                );
                let mut worst = 0f32;
                for (got, want) in out
                    .relevance
                    .axis_iter(Axis(0))
                    .zip(expected.axis_iter(Axis(0)))
                {
                    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let err = got
                        .iter()
                        .zip(want.iter())
                        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    worst = worst.max(err / scale);
                }
                let own_error = recorded(&manifest, "zennit_float32_vs_float64", model, composite)
                    .expect("zennit's float32-vs-float64 figure recorded");
                let stock_merge = recorded(
                    &manifest,
                    "zennit_0_5_1_stock_merge_vs_exact_merge",
                    model,
                    composite,
                )
                .map_or("-".to_string(), |v| format!("{v:.1e}"));
                let label = format!("{set}/{model}");
                report.push(format!(
                    "{label:<36} {composite:<26} {worst:.2e}   {own_error:.1e}   {stock_merge}"
                ));
                // Written so that a NaN error fails too.
                #[allow(clippy::neg_cmp_op_on_partial_ord)]
                if !(worst <= TOLERANCE) {
                    failures.push(format!(
                        "{set}/{model}/{composite}: relative error {worst:.3e} > {TOLERANCE:.1e}"
                    ));
                }
            }
        }
    }
    println!(
        "fixture set/model                    composite                  spray-zennit  zennit f32-f64  zennit 0.5.1 stock BN merge\n{}",
        report.join("\n")
    );
    assert!(
        failures.is_empty(),
        "disagreement with zennit:\n{}",
        failures.join("\n")
    );
}
