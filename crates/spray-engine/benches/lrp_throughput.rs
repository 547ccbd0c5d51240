//! Throughput of plain ONNX Runtime inference against spray's LRP model on the same model and
//! batch size. A harness that prints figures, not a test:
//!
//!     cargo bench -p spray-engine --bench lrp_throughput -- [--device cuda] [--model M.onnx --size H] [--seconds S]
//!
//! Without --model it runs the bundled fixture models (resnet18 and vgg11 feature extractors at
//! 32×32, the small VGG/ResNet/DenseNet nets). Inputs are random; what matters is the ratio.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};
use spray_engine::{Device, LrpEngine, Predictor, SessionConfig};
use spray_lrp::{compile, CompileOptions, Composite, CompositeOptions};

struct Args {
    device: Device,
    models: Vec<(String, PathBuf, usize)>,
    batch_sizes: Vec<usize>,
    composites: Vec<String>,
    seconds: f64,
}

fn parse_args() -> Args {
    let fixtures = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../tests/fixtures/lrp");
    let mut args = Args {
        device: Device::Cpu,
        models: vec![],
        batch_sizes: vec![1, 16],
        composites: vec!["epsilon-plus-flat".into(), "epsilon-alpha2-beta1".into()],
        seconds: 2.0,
    };
    let mut it = std::env::args().skip(1);
    let mut model: Option<PathBuf> = None;
    let mut size = 224;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--device" => args.device = it.next().expect("--device VALUE").parse().expect("device"),
            "--model" => model = Some(it.next().expect("--model PATH").into()),
            "--size" => size = it.next().expect("--size N").parse().expect("size"),
            "--seconds" => args.seconds = it.next().expect("--seconds S").parse().expect("seconds"),
            "--batch" => {
                args.batch_sizes = it
                    .next()
                    .expect("--batch LIST")
                    .split(',')
                    .map(|b| b.parse().expect("batch"))
                    .collect()
            }
            "--composite" => args.composites = vec![it.next().expect("--composite NAME")],
            _ => {} // cargo bench passes --bench
        }
    }
    args.models = match model {
        Some(path) => vec![(
            path.file_stem().unwrap().to_string_lossy().into_owned(),
            path,
            size,
        )],
        None => [
            ("resnet18", 32),
            ("vgg11", 32),
            ("vgg_small", 24),
            ("resnet_small", 16),
            ("densenet_small", 16),
        ]
        .into_iter()
        .map(|(m, s)| (m.to_owned(), fixtures.join(m).join("model.onnx"), s))
        .collect(),
    };
    args
}

/// Run `f` repeatedly for about `seconds` after one warm-up call; images per second.
fn throughput(batch: usize, seconds: f64, mut f: impl FnMut()) -> f64 {
    f();
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut runs = 0usize;
    while start.elapsed() < budget || runs < 3 {
        f();
        runs += 1;
    }
    (runs * batch) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args = parse_args();
    let config = SessionConfig {
        device: args.device,
        threads: 0,
    };
    println!(
        "device {}, {} CPU cores; images/s, higher is better\n",
        args.device,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<16} {:>5} {:<22} {:>12} {:>12} {:>8}",
        "model", "batch", "composite", "plain img/s", "LRP img/s", "ratio"
    );
    for (name, path, size) in &args.models {
        // load_model inlines external data (torch's dynamo exporter writes weights to M.onnx.data).
        let onnx =
            spray_onnx::load_model(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let bytes = spray_onnx::encode_model(&onnx);
        let mut plain = Predictor::new(&bytes, config).expect("plain session");
        for &batch in &args.batch_sizes {
            let input = ArrayD::from_shape_fn(IxDyn(&[batch, 3, *size, *size]), |i| {
                ((i[1] * 31 + i[2] * 7 + i[3] * 3) % 17) as f32 / 17.0 - 0.5
            });
            let plain_rate = throughput(batch, args.seconds, || {
                plain.predict(input.view()).expect("inference");
            });
            for composite in &args.composites {
                let composite =
                    Composite::builtin(composite, &CompositeOptions::default()).expect("composite");
                let compiled = compile(
                    &onnx,
                    &CompileOptions {
                        composite: composite.clone(),
                        input: None,
                        concept: Vec::new(),
                        constant_evaluator: Some(std::sync::Arc::new(
                            spray_engine::OrtConstantEvaluator::new(config.device),
                        )),
                    },
                )
                .expect("compile");
                let mut engine = LrpEngine::new(&compiled, config).expect("LRP session");
                let targets = vec![-1i64; batch];
                let lrp_rate = throughput(batch, args.seconds, || {
                    engine.explain(input.view(), &targets).expect("explain");
                });
                println!(
                    "{:<16} {:>5} {:<22} {:>12.1} {:>12.1} {:>7.2}x",
                    name,
                    batch,
                    composite.name,
                    plain_rate,
                    lrp_rate,
                    plain_rate / lrp_rate
                );
            }
        }
    }
}
