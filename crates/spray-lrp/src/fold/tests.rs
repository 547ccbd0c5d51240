//! The folder on hand-built graphs: torch's pad chain, shape arithmetic on a static shape, the
//! batch dimension kept symbolic, and what is left to the evaluator.

use std::sync::{Arc, Mutex};

use spray_onnx::proto::OperatorSetIdProto;
use spray_onnx::{attr, data_type, value_info, GraphProto, ModelProto, NodeExt, NodeProto, Tensor};

use super::{fold_constants, ConstantEvaluator, Folded};
use crate::{compile, CompileOptions, Composite, CompositeOptions};

/// A graph under construction: input `x` [N, 3, 8, 8].
struct Net {
    graph: GraphProto,
    n: usize,
}

impl Net {
    fn new() -> Self {
        let mut graph = GraphProto::default();
        graph.input.push(value_info(
            "x",
            data_type::FLOAT,
            &[Err("N"), Ok(3), Ok(8), Ok(8)],
        ));
        Net { graph, n: 0 }
    }
    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<spray_onnx::AttributeProto>,
    ) -> String {
        self.n += 1;
        let out = format!("{}_{}", op.to_lowercase(), self.n);
        self.graph.node.push(NodeProto {
            name: format!("node/{out}"),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }
    fn constant(&mut self, t: Tensor) -> String {
        self.node("Constant", &[], vec![attr::tensor("value", t.to_proto(""))])
    }
    fn ints(&mut self, values: &[i64]) -> String {
        self.constant(Tensor::i64(vec![values.len() as i64], values.to_vec()))
    }
    fn init(&mut self, dims: &[i64], values: Vec<f32>) -> String {
        self.n += 1;
        let name = format!("w_{}", self.n);
        self.graph
            .initializer
            .push(Tensor::f32(dims.to_vec(), values).to_proto(&name));
        name
    }
    /// conv 3→4 (3×3, no padding) of `x`.
    fn conv(&mut self, x: &str) -> String {
        let w = self.init(
            &[4, 3, 3, 3],
            (0..108).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect(),
        );
        self.node("Conv", &[x, &w], vec![attr::ints("kernel_shape", &[3, 3])])
    }
    /// GAP → Flatten → Gemm to 2 classes; the model.
    fn classifier(mut self, x: &str, channels: i64) -> ModelProto {
        let gap = self.node("GlobalAveragePool", &[x], vec![]);
        let flat = self.node("Flatten", &[&gap], vec![attr::int("axis", 1)]);
        let w = self.init(&[2, channels], vec![0.5; 2 * channels as usize]);
        let logits = self.node("Gemm", &[&flat, &w], vec![attr::int("transB", 1)]);
        self.graph
            .output
            .push(value_info(&logits, data_type::FLOAT, &[Err("N"), Ok(2)]));
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

/// torch.onnx.export's `F.pad(x, [0, 1, 1, 1])` at opset 17: the pad amounts as
/// Constant → ConstantOfShape → Concat → Reshape → Slice → Transpose → Reshape → Cast.
fn torch_pad_chain(net: &mut Net) -> String {
    let four = net.ints(&[4]);
    let given = net.ints(&[0, 1, 1, 1]);
    let zeros = net.node(
        "ConstantOfShape",
        &[&four],
        vec![attr::tensor(
            "value",
            Tensor::i64(vec![1], vec![0]).to_proto(""),
        )],
    );
    let all = net.node("Concat", &[&given, &zeros], vec![attr::int("axis", 0)]);
    let pairs_shape = net.ints(&[-1, 2]);
    let pairs = net.node(
        "Reshape",
        &[&all, &pairs_shape],
        vec![attr::int("allowzero", 0)],
    );
    let (start, end, axis, step) = (
        net.ints(&[-1]),
        net.ints(&[-9223372036854775807]),
        net.ints(&[0]),
        net.ints(&[-1]),
    );
    let reversed = net.node("Slice", &[&pairs, &start, &end, &axis, &step], vec![]);
    let t = net.node("Transpose", &[&reversed], vec![attr::ints("perm", &[1, 0])]);
    let flat_shape = net.ints(&[-1]);
    let flat = net.node(
        "Reshape",
        &[&t, &flat_shape],
        vec![attr::int("allowzero", 0)],
    );
    net.node("Cast", &[&flat], vec![attr::int("to", 7)])
}

fn pad_net() -> (ModelProto, String) {
    let mut net = Net::new();
    let pads = torch_pad_chain(&mut net);
    let padded = net.node(
        "Pad",
        &["x", &pads, ""],
        vec![attr::string("mode", "constant")],
    );
    let c = net.conv(&padded);
    let r = net.node("Relu", &[&c], vec![]);
    (net.classifier(&r, 4), pads)
}

/// conv → Reshape(y, Concat(Gather(Shape(y), [0 | 1]), [-1])) → … : the batch entry stays
/// symbolic, the channel entry is static.
fn reshape_net(index: i64) -> ModelProto {
    let mut net = Net::new();
    let c = net.conv("x");
    let r = net.node("Relu", &[&c], vec![]);
    let shape = net.node("Shape", &[&r], vec![]);
    let which = net.ints(&[index]);
    let picked = net.node("Gather", &[&shape, &which], vec![attr::int("axis", 0)]);
    let rest = net.ints(&[-1, 6, 6]);
    let target = net.node("Concat", &[&picked, &rest], vec![attr::int("axis", 0)]);
    let reshaped = net.node("Reshape", &[&r, &target], vec![]);
    net.classifier(&reshaped, 4)
}

fn fold(model: &mut ModelProto, evaluator: Option<&dyn ConstantEvaluator>) -> Folded {
    let graph = model.graph.as_mut().unwrap();
    let logits = graph.output[0].name.clone();
    fold_constants(
        graph,
        &model.opset_import,
        model.ir_version,
        "x",
        &logits,
        evaluator,
    )
    .unwrap()
}

fn initializer(model: &ModelProto, name: &str) -> Option<Tensor> {
    let t = model
        .graph
        .as_ref()?
        .initializer
        .iter()
        .find(|t| t.name == name)?;
    Tensor::from_proto(t).ok()
}

fn ops(model: &ModelProto) -> Vec<&str> {
    model
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .collect()
}

fn options() -> CompileOptions {
    CompileOptions {
        composite: Composite::builtin("epsilon", &CompositeOptions::default()).unwrap(),
        input: None,
        concept: Vec::new(),
        constant_evaluator: None,
    }
}

/// An evaluator that must not be needed.
#[derive(Debug)]
struct Unused;
impl ConstantEvaluator for Unused {
    fn evaluate(
        &self,
        _: &ModelProto,
    ) -> Result<Vec<spray_onnx::TensorProto>, Box<dyn std::error::Error + Send + Sync>> {
        panic!("the folder evaluates element moves and integer arithmetic itself")
    }
}

#[test]
fn torch_pad_amounts_fold_into_one_initializer() {
    let (mut model, pads) = pad_net();
    let folded = fold(&mut model, Some(&Unused));
    assert_eq!(folded.tensors, vec![pads.clone()]);
    // [left, right, top, bottom] = [0, 1, 1, 1] in ONNX order (begins of N, C, H, W, then ends).
    assert_eq!(
        initializer(&model, &pads).unwrap().as_i64().unwrap(),
        &[0, 0, 1, 0, 0, 0, 1, 1]
    );
    // The chain is gone: its 15 nodes, constants included.
    assert_eq!(folded.removed_nodes, 15);
    assert_eq!(
        ops(&model),
        vec![
            "Pad",
            "Conv",
            "Relu",
            "GlobalAveragePool",
            "Flatten",
            "Gemm"
        ]
    );
    assert_eq!(folded.evaluator_calls, 0);
}

#[test]
fn a_model_with_torch_pads_compiles_and_one_without_is_unchanged() {
    let (model, _) = pad_net();
    let compiled = compile(&model, &options()).expect("the pads are constants once folded");
    // Constant zero pads, read only by a Conv: merged into its pads (normalize/pads.rs), in
    // ONNX's order (begins of H, W, then ends): [left, right, top, bottom] = [0, 1, 1, 1].
    assert!(compiled.layers.iter().all(|l| l.op_type != "Pad"));
    let graph = compiled.model.graph.as_ref().unwrap();
    let conv = graph
        .node
        .iter()
        .find(|n| n.op_type == "Conv" && n.input[0] == "x")
        .expect("the Conv reads the image");
    assert_eq!(conv.attr_ints("pads"), Some(&[1, 0, 1, 1][..]));
    // Nothing to fold: the graph is left exactly as it was.
    let mut net = Net::new();
    let c = net.conv("x");
    let plain = net.classifier(&c, 4);
    let mut folded = plain.clone();
    assert_eq!(fold(&mut folded, None), Folded::default());
    assert_eq!(folded, plain);
}

#[test]
fn static_entries_of_a_shape_fold_and_the_batch_entry_does_not() {
    // Channels: [4] ++ [-1, 6, 6] is a constant.
    let mut model = reshape_net(1);
    let folded = fold(&mut model, Some(&Unused));
    assert_eq!(folded.tensors.len(), 1);
    assert_eq!(
        initializer(&model, &folded.tensors[0])
            .unwrap()
            .as_i64()
            .unwrap(),
        &[4, -1, 6, 6]
    );
    assert!(!ops(&model).contains(&"Shape"));
    // The batch dimension is free (N): its entry cannot be folded, and nothing changes.
    let mut model = reshape_net(0);
    let before = model.clone();
    assert_eq!(fold(&mut model, Some(&Unused)), Folded::default());
    assert_eq!(model, before);
}

#[test]
fn shapes_follow_convolutions_and_folded_pads() {
    // pads → Pad → Conv (3×3, valid): 8 + 1 + 1 - 2 = 8 rows, 8 + 0 + 1 - 2 = 7 columns. The
    // second Pad's amounts are computed from that shape, as torch writes x.size(3) arithmetic.
    let mut net = Net::new();
    let pads = torch_pad_chain(&mut net);
    let padded = net.node("Pad", &["x", &pads, ""], vec![]);
    let c = net.conv(&padded);
    let shape = net.node("Shape", &[&c], vec![]);
    let three = net.constant(Tensor::i64(vec![], vec![3]));
    let width = net.node("Gather", &[&shape, &three], vec![attr::int("axis", 0)]);
    let eight = net.constant(Tensor::i64(vec![], vec![8]));
    let missing = net.node("Sub", &[&eight, &width], vec![]);
    let axes = net.ints(&[0]);
    let end = net.node("Unsqueeze", &[&missing, &axes], vec![]);
    let begin = net.ints(&[0, 0, 0, 0, 0, 0, 0]);
    let pads2 = net.node("Concat", &[&begin, &end], vec![attr::int("axis", 0)]);
    let padded2 = net.node("Pad", &[&c, &pads2], vec![]);
    let mut model = net.classifier(&padded2, 4);
    let folded = fold(&mut model, Some(&Unused));
    assert_eq!(folded.tensors, vec![pads, pads2.clone()]);
    assert_eq!(
        initializer(&model, &pads2).unwrap().as_i64().unwrap(),
        &[0, 0, 0, 0, 0, 0, 0, 1]
    );
    compile(&model, &options()).unwrap();
}

/// A float chain the folder leaves to the evaluator: pads = Cast(Mul(Cast(k, float), 0.5)).
fn float_pad_net() -> ModelProto {
    let mut net = Net::new();
    let k = net.ints(&[0, 0, 2, 2, 0, 0, 2, 2]);
    let kf = net.node("Cast", &[&k], vec![attr::int("to", 1)]);
    let half = net.constant(Tensor::f32(vec![], vec![0.5]));
    let scaled = net.node("Mul", &[&kf, &half], vec![]);
    let pads = net.node("Cast", &[&scaled], vec![attr::int("to", 7)]);
    let padded = net.node("Pad", &["x", &pads], vec![]);
    let c = net.conv(&padded);
    net.classifier(&c, 4)
}

/// Evaluates float_pad_net's chain by hand and records what it was asked.
#[derive(Debug, Default)]
struct Recording(Mutex<Vec<ModelProto>>);
impl ConstantEvaluator for Recording {
    fn evaluate(
        &self,
        model: &ModelProto,
    ) -> Result<Vec<spray_onnx::TensorProto>, Box<dyn std::error::Error + Send + Sync>> {
        self.0.lock().unwrap().push(model.clone());
        let graph = model.graph.as_ref().unwrap();
        let k = Tensor::from_proto(&graph.initializer[0]).unwrap();
        let halves: Vec<f32> = k
            .as_i64()
            .unwrap()
            .iter()
            .map(|&v| v as f32 * 0.5)
            .collect();
        let values = [
            Tensor::f32(
                vec![8],
                k.as_i64().unwrap().iter().map(|&v| v as f32).collect(),
            ),
            Tensor::f32(vec![8], halves.clone()),
            Tensor::i64(vec![8], halves.iter().map(|&v| v as i64).collect()),
        ];
        Ok(graph
            .output
            .iter()
            .zip(values)
            .map(|(o, t)| t.to_proto(&o.name))
            .collect())
    }
}

#[test]
fn floating_point_arithmetic_is_left_to_the_evaluator() {
    let recording = Arc::new(Recording::default());
    let mut model = float_pad_net();
    let folded = fold(&mut model, Some(recording.as_ref()));
    assert_eq!(folded.evaluator_calls, 1);
    let asked = recording.0.lock().unwrap();
    let graph = asked[0].graph.as_ref().unwrap();
    // One input-free model: the three float-chain nodes, their constants as initializers.
    assert!(graph.input.is_empty());
    let asked_ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(asked_ops, vec!["Cast", "Mul", "Cast"]);
    assert_eq!(graph.initializer.len(), 2);
    assert_eq!(graph.output.len(), 3);
    let pads = &folded.tensors[0];
    assert_eq!(
        initializer(&model, pads).unwrap().as_i64().unwrap(),
        &[0, 0, 1, 1, 0, 0, 1, 1]
    );
    drop(asked);
    let compiled = compile(
        &float_pad_net(),
        &options().with_constant_evaluator(recording.clone()),
    );
    assert!(compiled.is_ok());
}

#[test]
fn without_an_evaluator_a_float_chain_stays_and_the_planner_says_why() {
    let err = compile(&float_pad_net(), &options())
        .unwrap_err()
        .to_string();
    assert!(err.contains("Pad whose pads are not constant"), "{err}");
}

#[derive(Debug)]
struct Failing;
impl ConstantEvaluator for Failing {
    fn evaluate(
        &self,
        _: &ModelProto,
    ) -> Result<Vec<spray_onnx::TensorProto>, Box<dyn std::error::Error + Send + Sync>> {
        Err("no kernel".into())
    }
}

#[test]
fn an_evaluator_error_is_reported_with_the_ops() {
    let err = compile(
        &float_pad_net(),
        &options().with_constant_evaluator(Arc::new(Failing)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("3 input-independent node(s) (Cast, Mul)") && err.contains("no kernel"),
        "{err}"
    );
}

#[test]
fn random_and_custom_ops_are_never_constant() {
    for (domain, op) in [("", "RandomUniform"), ("com.example", "Pads")] {
        let mut net = Net::new();
        let pads = net.node(op, &[], vec![]);
        net.graph.node.last_mut().unwrap().domain = domain.into();
        let padded = net.node("Pad", &["x", &pads], vec![]);
        let c = net.conv(&padded);
        let mut model = net.classifier(&c, 4);
        assert_eq!(fold(&mut model, Some(&Unused)), Folded::default(), "{op}");
    }
}

#[test]
fn weights_computed_from_constants_fold() {
    // MatMul(x, Transpose(W)), as exporters write a Linear layer without constant folding.
    let mut net = Net::new();
    let c = net.conv("x");
    let gap = net.node("GlobalAveragePool", &[&c], vec![]);
    let flat = net.node("Flatten", &[&gap], vec![attr::int("axis", 1)]);
    let w = net.init(&[2, 4], vec![1., 2., 3., 4., 5., 6., 7., 8.]);
    let wt = net.node("Transpose", &[&w], vec![attr::ints("perm", &[1, 0])]);
    let logits = net.node("MatMul", &[&flat, &wt], vec![]);
    net.graph
        .output
        .push(value_info(&logits, data_type::FLOAT, &[Err("N"), Ok(2)]));
    let mut model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(net.graph),
        ..Default::default()
    };
    let original = model.clone();
    let folded = fold(&mut model, None);
    assert_eq!(folded.tensors, vec![wt.clone()]);
    let t = initializer(&model, &wt).unwrap();
    assert_eq!(t.dims, vec![4, 2]);
    assert_eq!(t.as_f32().unwrap(), &[1., 5., 2., 6., 3., 7., 4., 8.]);
    compile(&original, &options()).unwrap();
}
