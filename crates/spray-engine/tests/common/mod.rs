#![allow(dead_code)]
//! Shared helpers for the engine's integration tests.

use std::path::PathBuf;

use ndarray::ArrayD;
use spray_lrp::{compile, CompileOptions, Composite, CompositeOptions, LrpModel};

pub fn fixtures() -> PathBuf {
    fixture_set("lrp")
}

/// `lrp`: exported with torch's legacy exporter (make_lrp_fixtures.py); `lrp-dynamo`: the same
/// small models exported with the dynamo exporter, torch's default since 2.9
/// (make_dynamo_fixtures.py); `lrp-folding`: a model whose pads need constant folding
/// (make_folding_fixture.py).
pub fn fixture_set(set: &str) -> PathBuf {
    // Read at run time, not with env!: CI reuses a target dir across clones, and a test binary
    // cargo finds fresh would otherwise look for fixtures in the clone that built it.
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../tests/fixtures")
        .join(set)
}

pub fn read_npy<T: ndarray_npy::ReadableElement>(path: &std::path::Path) -> ArrayD<T> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// z-box bounds the fixtures were generated with (ImageNet normalisation of [0, 1]).
pub fn fixture_options() -> CompositeOptions {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap())
            .unwrap();
    let floats = |key: &str| -> Vec<f32> {
        manifest[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    CompositeOptions {
        zbox_low: floats("zbox_low"),
        zbox_high: floats("zbox_high"),
    }
}

pub fn compile_fixture(model: &str, file: &str, composite: &str) -> LrpModel {
    compile_fixture_in("lrp", model, file, composite)
}

pub fn compile_fixture_in(set: &str, model: &str, file: &str, composite: &str) -> LrpModel {
    let onnx = spray_onnx::load_model(&fixture_set(set).join(model).join(file)).unwrap();
    let composite = Composite::builtin(composite, &fixture_options()).unwrap();
    compile(
        &onnx,
        &CompileOptions {
            composite,
            input: None,
            concept: Vec::new(),
            constant_evaluator: Some(ort_constants()),
        },
    )
    .unwrap()
}

/// The constant evaluator every compilation in these tests gets, as the CLI and the pipeline
/// give it.
pub fn ort_constants() -> std::sync::Arc<dyn spray_lrp::ConstantEvaluator> {
    std::sync::Arc::new(spray_engine::OrtConstantEvaluator::default())
}

pub const FIXTURE_MODELS: &[&str] = &[
    "vgg_small",
    "resnet_small",
    "densenet_small",
    "mixed_small",
    "resnet18",
    "vgg11",
];

pub const DYNAMO_FIXTURE_MODELS: &[&str] =
    &["vgg_small", "resnet_small", "densenet_small", "mixed_small"];

/// Exported with torch.onnx.export's defaults (constant folding on, fixed batch) from a model
/// whose pad amounts torch computes at run time (make_folding_fixture.py).
pub const FOLDING_FIXTURE_MODELS: &[&str] = &["efficientnet_lite_small"];

pub const FIXTURE_SETS: &[(&str, &[&str])] = &[
    ("lrp", FIXTURE_MODELS),
    ("lrp-dynamo", DYNAMO_FIXTURE_MODELS),
    ("lrp-folding", FOLDING_FIXTURE_MODELS),
];

/// A tiny deterministic generator for test weights (no dependency needed for this).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// Builds small ONNX graphs in code for property tests.
pub struct GraphBuilder {
    pub graph: spray_onnx::GraphProto,
    rng: Lcg,
    n: usize,
}

impl GraphBuilder {
    pub fn new(input: &str, dims: &[i64], seed: u64) -> Self {
        let mut graph = spray_onnx::GraphProto::default();
        let shape: Vec<Result<i64, &str>> = dims
            .iter()
            .enumerate()
            .map(|(i, d)| if i == 0 { Err("N") } else { Ok(*d) })
            .collect();
        graph.input.push(spray_onnx::value_info(
            input,
            spray_onnx::data_type::FLOAT,
            &shape,
        ));
        GraphBuilder {
            graph,
            rng: Lcg(seed),
            n: 0,
        }
    }
    fn name(&mut self, hint: &str) -> String {
        self.n += 1;
        format!("{hint}_{}", self.n)
    }
    pub fn init(&mut self, dims: &[i64], scale: f32) -> String {
        let name = self.name("w");
        let n = dims.iter().product::<i64>() as usize;
        let values = self.rng.vec(n, scale);
        self.graph
            .initializer
            .push(spray_onnx::Tensor::f32(dims.to_vec(), values).to_proto(&name));
        name
    }
    pub fn init_i64(&mut self, values: &[i64]) -> String {
        let name = self.name("c");
        self.graph.initializer.push(
            spray_onnx::Tensor::i64(vec![values.len() as i64], values.to_vec()).to_proto(&name),
        );
        name
    }
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<spray_onnx::AttributeProto>,
    ) -> String {
        let out = self.name(&op.to_lowercase());
        self.graph.node.push(spray_onnx::NodeProto {
            name: format!("node/{out}"),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }
    pub fn conv(
        &mut self,
        x: &str,
        cin: i64,
        cout: i64,
        k: i64,
        stride: i64,
        bias: bool,
    ) -> String {
        use spray_onnx::attr;
        let w = self.init(&[cout, cin, k, k], 1.0 / ((cin * k * k) as f32).sqrt());
        let mut inputs = vec![x.to_owned(), w];
        if bias {
            inputs.push(self.init(&[cout], 0.1));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let p = k / 2;
        self.node(
            "Conv",
            &refs,
            vec![
                attr::ints("kernel_shape", &[k, k]),
                attr::ints("strides", &[stride, stride]),
                attr::ints("pads", &[p, p, p, p]),
            ],
        )
    }
    pub fn finish(mut self, output: &str, opset: i64) -> spray_onnx::ModelProto {
        self.graph.output.push(spray_onnx::value_info(
            output,
            spray_onnx::data_type::FLOAT,
            &[Err("N"), Err("K")],
        ));
        spray_onnx::ModelProto {
            ir_version: 8,
            opset_import: vec![spray_onnx::proto::OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            producer_name: "spray-tests".into(),
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

/// A bias-free ReLU network with a residual Add, overlapping max-pooling, average pooling and
/// a dense head: under the ε rule with tiny ε, LRP conserves relevance exactly.
pub fn bias_free_residual_net(seed: u64) -> spray_onnx::ModelProto {
    use spray_onnx::attr;
    let mut b = GraphBuilder::new("image", &[1, 3, 16, 16], seed);
    let c1 = b.conv("image", 3, 8, 3, 1, false);
    let r1 = b.node("Relu", &[&c1], vec![]);
    let c2 = b.conv(&r1, 8, 8, 3, 1, false);
    let r2 = b.node("Relu", &[&c2], vec![]);
    let c3 = b.conv(&r2, 8, 8, 3, 1, false);
    let sum = b.node("Add", &[&c3, &r1], vec![]);
    let r3 = b.node("Relu", &[&sum], vec![]);
    let mp = b.node(
        "MaxPool",
        &[&r3],
        vec![
            attr::ints("kernel_shape", &[3, 3]),
            attr::ints("strides", &[2, 2]),
            attr::ints("pads", &[1, 1, 1, 1]),
        ],
    );
    let c4 = b.conv(&mp, 8, 8, 3, 2, false);
    let r4 = b.node("Relu", &[&c4], vec![]);
    let ap = b.node(
        "AveragePool",
        &[&r4],
        vec![
            attr::ints("kernel_shape", &[2, 2]),
            attr::ints("strides", &[2, 2]),
        ],
    );
    let gap = b.node("GlobalAveragePool", &[&ap], vec![]);
    let flat = b.node("Flatten", &[&gap], vec![attr::int("axis", 1)]);
    let w = b.init(&[5, 8], 0.5);
    let logits = b.node("Gemm", &[&flat, &w], vec![attr::int("transB", 1)]);
    b.finish(&logits, 17)
}

pub fn random_input(n: usize, dims: &[usize], seed: u64) -> ndarray::ArrayD<f32> {
    let mut rng = Lcg(seed);
    let mut shape = vec![n];
    shape.extend_from_slice(dims);
    let len = shape.iter().product();
    ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), rng.vec(len, 1.0)).unwrap()
}
