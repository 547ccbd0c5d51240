//! `spray explain`, `spray inspect`, `spray lrp compile`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use ndarray::ArrayD;
use spray_cli::front::{self, Execution, Rules};
use spray_engine::Device;
use spray_lrp::CompositeSpec;

/// Which rules to use: a built-in composite or a TOML file.
#[derive(Args, Clone)]
pub struct CompositeArgs {
    /// Built-in composite (epsilon, epsilon-plus, epsilon-plus-flat, epsilon-alpha2-beta1,
    /// epsilon-alpha2-beta1-flat, epsilon-gamma-box, thesis) or a composite .toml file.
    #[arg(long, default_value = CompositeSpec::DEFAULT)]
    composite: CompositeSpec,
    /// z-box lower bound(s) for epsilon-gamma-box: one value or one per channel (comma-separated).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    zbox_low: Option<Vec<f32>>,
    /// z-box upper bound(s) for epsilon-gamma-box.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    zbox_high: Option<Vec<f32>>,
    /// Name of the image input when the model has several inputs.
    #[arg(long)]
    input_name: Option<String>,
}

impl CompositeArgs {
    fn rules(&self) -> Rules {
        Rules {
            composite: self.composite.clone(),
            zbox_low: self.zbox_low.clone(),
            zbox_high: self.zbox_high.clone(),
            input_name: self.input_name.clone(),
        }
    }
}

#[derive(Args)]
pub struct ExplainArgs {
    /// ONNX classifier.
    #[arg(long)]
    model: PathBuf,
    /// float32 .npy of shape (N, C, H, W) (already preprocessed for the model).
    #[arg(long)]
    input: PathBuf,
    #[command(flatten)]
    composite: CompositeArgs,
    /// Class to explain: `argmax` (predicted class), a class index, or an int64 .npy with one per sample.
    #[arg(long, default_value = "argmax")]
    target: String,
    /// Where to write the relevance, float32 .npy shaped like the input.
    #[arg(long)]
    out_relevance: PathBuf,
    /// Where to write the logits, float32 .npy (N, K).
    #[arg(long)]
    out_logits: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// Intra-op threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Keep ONNX Runtime's optimised graph of the model in this folder, and load it from there
    /// when a later call explains with the same model and rules (CPU): start-up without
    /// compiling or optimising again. vgg16's takes 1.7 GB of disk.
    #[arg(long)]
    cache: Option<PathBuf>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// ONNX model.
    #[arg(required_unless_present = "ops")]
    model: Option<PathBuf>,
    /// Print the table of ONNX ops the LRP compiler knows (family, sign, opset history) instead.
    #[arg(long)]
    ops: bool,
    #[command(flatten)]
    composite: CompositeArgs,
}

#[derive(Args)]
pub struct CompileArgs {
    /// ONNX classifier.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    composite: CompositeArgs,
    /// Output path of the LRP model.
    #[arg(long)]
    out: PathBuf,
}

fn parse_targets(spec: &str, n: usize) -> Result<Vec<i64>> {
    if spec == "argmax" || spec == "predicted" {
        return Ok(vec![-1; n]);
    }
    if let Ok(class) = spec.parse::<i64>() {
        if class < 0 {
            bail!("--target must be a non-negative class index, `argmax`, or a .npy file");
        }
        return Ok(vec![class; n]);
    }
    let path = Path::new(spec);
    let targets: ArrayD<i64> = ndarray_npy::read_npy(path).with_context(|| {
        format!(
            "reading targets from {} (expected int64 .npy with one entry per sample)",
            spec
        )
    })?;
    if targets.len() != n {
        bail!("{} holds {} targets for {} samples", spec, targets.len(), n);
    }
    Ok(targets.iter().copied().collect())
}

pub fn explain(args: ExplainArgs) -> Result<()> {
    // Compile first: an unsupported model is refused before any input is read.
    let execution = Execution {
        batch_size: args.batch_size,
        device: args.device,
        threads: args.threads,
    };
    let (mut engine, composite) = front::engine(
        &args.model,
        &args.composite.rules(),
        execution,
        args.cache.as_deref(),
    )?;
    let input: ArrayD<f32> = ndarray_npy::read_npy(&args.input).with_context(|| {
        format!(
            "reading {} (expected a float32 .npy of shape (N, C, H, W))",
            args.input.display()
        )
    })?;
    if input.ndim() < 2 {
        bail!(
            "{} has shape {:?}; expected (N, C, H, W)",
            args.input.display(),
            input.shape()
        );
    }
    let n = input.shape()[0];
    let targets = parse_targets(&args.target, n)?;
    let out = front::explain(
        &mut engine,
        composite,
        input.view(),
        &targets,
        args.batch_size,
    )?;
    ndarray_npy::write_npy(&args.out_relevance, &out.relevance)
        .with_context(|| format!("writing {}", args.out_relevance.display()))?;
    if let Some(path) = &args.out_logits {
        ndarray_npy::write_npy(path, &out.logits)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "explained {n} sample(s) with '{}' on {} in {:.2}s ({:.1} images/s) -> {}",
        out.composite,
        args.device,
        out.seconds,
        n as f64 / out.seconds.max(1e-9),
        args.out_relevance.display()
    );
    let bad: Vec<(usize, spray_engine::NonFinite)> = out
        .non_finite
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.map(|f| (i, f)))
        .collect();
    if let Some((first, problem)) = bad.first() {
        let listed: Vec<String> = bad.iter().take(10).map(|(i, _)| i.to_string()).collect();
        eprintln!(
            "warning: {} of {n} sample(s) have non-finite output (sample {first}: {problem}); \
             samples: {}{}",
            bad.len(),
            listed.join(", "),
            if bad.len() > listed.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    match out.non_finite_error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn inspect(args: InspectArgs) -> Result<()> {
    let Some(path) = args.model.filter(|_| !args.ops) else {
        print!("{}", spray_lrp::inspect::render_op_table());
        return Ok(());
    };
    let model = front::load(&path)?;
    let options = args.composite.rules().options(Device::Cpu)?;
    let inspection = spray_lrp::inspect::inspect(&model, &options);
    print!(
        "{}",
        inspection.render(&options.composite.name, &BTreeMap::new())
    );
    if inspection.compiled.is_err() {
        bail!("{} is not supported (see the list above)", path.display());
    }
    Ok(())
}

pub fn compile(args: CompileArgs) -> Result<()> {
    let sig = front::compile(&args.model, &args.composite.rules(), &args.out)?;
    eprintln!(
        "wrote {}: inputs {} (float32) and {} (int64 [N], negative = predicted class); outputs {} and {}",
        args.out.display(),
        sig.input,
        sig.target,
        sig.logits,
        sig.relevance
    );
    Ok(())
}
