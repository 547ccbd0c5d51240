//! Models over ONNX Runtime's 2 GB protobuf limit: written with their large weights as ONNX
//! external data (one file beside the model) in a temporary folder, and loaded from there.
//!
//! Why: ONNX Runtime parses a model given as bytes with protobuf, which refuses messages over
//! 2 GB; torchvision's regnet_y_128gf and vit_h_14 are over it on their weights alone. The
//! external-data form keeps the protobuf small and the weights in a plain file.

use std::io::Write;
use std::path::PathBuf;

use spray_onnx::{GraphProto, ModelProto, StringStringEntryProto, TensorProto};

use crate::{EngineError, Result};

/// Above this encoded size a model goes through external data (2 GiB less headroom for the
/// parts protobuf adds while parsing).
pub(crate) const PROTOBUF_LIMIT: usize = (1 << 31) - (64 << 20);

/// Initializers at least this large (bytes) move to the weights file.
const EXTERNAL_FROM: usize = 1024;

/// A model written with external data; the folder lives as long as this value.
pub(crate) struct ExternalModel {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// Write `model` to a new temporary folder as `model.onnx` plus `weights.bin`, every
/// initializer of at least [`EXTERNAL_FROM`] bytes of raw data moved to the weights file.
pub(crate) fn write_external(model: &ModelProto) -> Result<ExternalModel> {
    let io = |e: std::io::Error| EngineError::Runtime(format!("writing external data: {e}"));
    let dir = tempfile::Builder::new()
        .prefix("spray-external-")
        .tempdir()
        .map_err(io)?;
    let weights_path = dir.path().join("weights.bin");
    let mut weights = std::io::BufWriter::new(std::fs::File::create(&weights_path).map_err(io)?);
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| EngineError::Runtime("the model has no graph".into()))?;
    let mut offset = 0usize;
    let mut initializer = Vec::with_capacity(graph.initializer.len());
    for t in &graph.initializer {
        if t.raw_data.len() < EXTERNAL_FROM {
            initializer.push(t.clone());
            continue;
        }
        weights.write_all(&t.raw_data).map_err(io)?;
        let entry = |key: &str, value: String| StringStringEntryProto {
            key: key.to_owned(),
            value,
        };
        initializer.push(TensorProto {
            dims: t.dims.clone(),
            data_type: t.data_type,
            name: t.name.clone(),
            data_location: 1, // EXTERNAL
            external_data: vec![
                entry("location", "weights.bin".into()),
                entry("offset", offset.to_string()),
                entry("length", t.raw_data.len().to_string()),
            ],
            ..Default::default()
        });
        offset += t.raw_data.len();
    }
    weights.flush().map_err(io)?;
    // Everything but the initializers, cloned field by field (the weights are not copied).
    let light = ModelProto {
        graph: Some(GraphProto {
            node: graph.node.clone(),
            name: graph.name.clone(),
            initializer,
            sparse_initializer: graph.sparse_initializer.clone(),
            doc_string: graph.doc_string.clone(),
            input: graph.input.clone(),
            output: graph.output.clone(),
            value_info: graph.value_info.clone(),
            metadata_props: graph.metadata_props.clone(),
        }),
        ..shallow(model)
    };
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, spray_onnx::encode_model(&light)).map_err(io)?;
    Ok(ExternalModel { _dir: dir, path })
}

/// The model's fields other than its graph.
fn shallow(model: &ModelProto) -> ModelProto {
    ModelProto {
        ir_version: model.ir_version,
        opset_import: model.opset_import.clone(),
        producer_name: model.producer_name.clone(),
        producer_version: model.producer_version.clone(),
        domain: model.domain.clone(),
        model_version: model.model_version,
        doc_string: model.doc_string.clone(),
        graph: None,
        metadata_props: model.metadata_props.clone(),
        functions: model.functions.clone(),
    }
}

#[cfg(test)]
mod tests {
    use spray_onnx::{data_type, value_info, NodeProto, OperatorSetIdProto, Tensor};

    use super::*;
    use crate::{session_from_bytes, session_from_file, SessionConfig};

    /// y = x · W with a 32×32 weight (4 KB, so it moves to the weights file) and a small bias
    /// (stays inline).
    fn model() -> ModelProto {
        let w: Vec<f32> = (0..1024)
            .map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5)
            .collect();
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(GraphProto {
                node: vec![
                    NodeProto {
                        op_type: "MatMul".into(),
                        input: vec!["x".into(), "w".into()],
                        output: vec!["xw".into()],
                        ..Default::default()
                    },
                    NodeProto {
                        op_type: "Add".into(),
                        input: vec!["xw".into(), "b".into()],
                        output: vec!["y".into()],
                        ..Default::default()
                    },
                ],
                initializer: vec![
                    Tensor::f32(vec![32, 32], w).to_proto("w"),
                    Tensor::f32(vec![32], vec![0.25; 32]).to_proto("b"),
                ],
                input: vec![value_info("x", data_type::FLOAT, &[Ok(2), Ok(32)])],
                output: vec![value_info("y", data_type::FLOAT, &[Ok(2), Ok(32)])],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_model_with_external_weights_runs_like_the_same_model_in_memory() {
        let model = model();
        let written = write_external(&model).unwrap();
        // Decoded as written (load_model would resolve the external data).
        let light = spray_onnx::decode_model(&std::fs::read(&written.path).unwrap()).unwrap();
        let inits = &light.graph.as_ref().unwrap().initializer;
        assert_eq!(inits[0].data_location, 1, "the weight moved out");
        assert!(inits[0].raw_data.is_empty());
        assert_eq!(inits[1].data_location, 0, "the bias stayed inline");
        assert_eq!(
            std::fs::metadata(written.path.with_file_name("weights.bin"))
                .unwrap()
                .len(),
            4096
        );
        let x = ndarray::Array2::<f32>::from_shape_fn((2, 32), |(i, j)| (i * 32 + j) as f32 / 64.0);
        let run = |mut session: ort::session::Session| {
            let out = session
                .run(ort::inputs!["x" => ort::value::TensorRef::from_array_view(x.view()).unwrap()])
                .unwrap();
            out["y"].try_extract_array::<f32>().unwrap().to_owned()
        };
        let config = SessionConfig::default();
        let in_memory = run(session_from_bytes(&spray_onnx::encode_model(&model), config).unwrap());
        let external = run(session_from_file(&written.path, config).unwrap());
        assert_eq!(in_memory, external);
    }
}
