//! Reading, inspecting and writing ONNX models.
//!
//! This crate owns the ONNX wire format for spray: the protobuf message types ([`proto`]),
//! loading with external data resolved, atomic saving, and small typed helpers for tensors
//! and node attributes. It knows nothing about LRP.

mod check;
pub mod proto;
mod tensor;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

pub use check::{check_model, non_finite_constants, NonFiniteConstant};
pub use proto::data_type;
pub use proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, ValueInfoProto,
};
pub use tensor::{Tensor, TensorData};

/// Errors from reading or writing ONNX files.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read ONNX model {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid ONNX model (protobuf decode failed: {source})")]
    Decode {
        path: PathBuf,
        source: prost::DecodeError,
    },
    #[error("{path}: the model has no graph")]
    NoGraph { path: PathBuf },
    #[error("external data for tensor '{tensor}' ({location}): {reason}")]
    ExternalData {
        tensor: String,
        location: String,
        reason: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tensor '{name}': {reason}")]
    Tensor { name: String, reason: String },
    /// A model that decodes but cannot be right (see [`check_model`]).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

/// Load a model from disk. Tensors stored as external data (models over 2 GB, or exported
/// with `save_as_external_data`) are read into `raw_data`, so the rest of spray sees one
/// self-contained model.
pub fn load_model(path: &Path) -> Result<ModelProto> {
    let bytes = fs::read(path).map_err(|source| OnnxError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut model = decode_model(&bytes).map_err(|source| OnnxError::Decode {
        path: path.to_owned(),
        source,
    })?;
    let Some(graph) = model.graph.as_mut() else {
        return Err(OnnxError::NoGraph {
            path: path.to_owned(),
        });
    };
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for tensor in &mut graph.initializer {
        resolve_external_data(tensor, base)?;
    }
    check_model(&model).map_err(|e| match e {
        OnnxError::Invalid(reason) => OnnxError::Invalid(format!("{}: {reason}", path.display())),
        other => other,
    })?;
    Ok(model)
}

/// Decode a model from protobuf bytes.
pub fn decode_model(bytes: &[u8]) -> Result<ModelProto, prost::DecodeError> {
    ModelProto::decode(bytes)
}

/// Encode a model to protobuf bytes.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// The size in bytes `encode_model` would produce, without encoding.
pub fn encoded_len(model: &ModelProto) -> usize {
    model.encoded_len()
}

/// Write a model so that a reader never sees a half-written file: the bytes go to a
/// temporary sibling which is renamed over the destination once complete.
pub fn save_model(model: &ModelProto, path: &Path) -> Result<()> {
    write_atomically(path, &encode_model(model))
}

/// Write `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |source| OnnxError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut file = fs::File::create(&tmp).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(err)
}

fn resolve_external_data(tensor: &mut TensorProto, base: &Path) -> Result<()> {
    const EXTERNAL: i32 = 1;
    if tensor.data_location != EXTERNAL {
        return Ok(());
    }
    let entries: HashMap<&str, &str> = tensor
        .external_data
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    let location = entries
        .get("location")
        .copied()
        .unwrap_or_default()
        .to_owned();
    let fail = |reason: String| OnnxError::ExternalData {
        tensor: tensor.name.clone(),
        location: location.clone(),
        reason,
    };
    let parse = |key: &str| -> Result<Option<u64>> {
        entries
            .get(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|e| fail(format!("bad {key}: {e}")))
            })
            .transpose()
    };
    let offset = parse("offset")?.unwrap_or(0) as usize;
    let length = parse("length")?;
    // The data must live beside the model: a location that climbs out of the model's folder
    // (absolute, `..`, or a symlink pointing elsewhere) could make spray read any file.
    let relative = Path::new(&location);
    if location.is_empty()
        || !relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return Err(fail(
            "the location must be a relative path inside the model's folder".into(),
        ));
    }
    let file = base.join(relative);
    let inside = match (fs::canonicalize(&file), fs::canonicalize(base)) {
        (Ok(f), Ok(b)) => f.starts_with(&b),
        (Err(e), _) | (_, Err(e)) => return Err(fail(e.to_string())),
    };
    if !inside {
        return Err(fail(
            "the file resolves (through a link) to outside the model's folder".into(),
        ));
    }
    let data = fs::read(&file).map_err(|e| fail(e.to_string()))?;
    let end = match length {
        Some(len) => offset + len as usize,
        None => data.len(),
    };
    if end > data.len() || offset > end {
        return Err(fail(format!(
            "range {offset}..{end} is outside the file ({} bytes)",
            data.len()
        )));
    }
    tensor.raw_data = data[offset..end].to_vec();
    tensor.data_location = 0;
    tensor.external_data.clear();
    Ok(())
}

/// The opset version the model imports for the default (`ai.onnx`) domain.
pub fn default_opset(model: &ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
}

/// Typed access to node attributes.
pub trait NodeExt {
    fn attr(&self, name: &str) -> Option<&AttributeProto>;
    fn attr_int(&self, name: &str) -> Option<i64> {
        self.attr(name).map(|a| a.i)
    }
    fn attr_float(&self, name: &str) -> Option<f32> {
        self.attr(name).map(|a| a.f)
    }
    fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        self.attr(name).map(|a| a.ints.as_slice())
    }
    fn attr_string(&self, name: &str) -> Option<String> {
        self.attr(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
    fn attr_tensor(&self, name: &str) -> Option<&TensorProto> {
        self.attr(name).and_then(|a| a.t.as_ref())
    }
    /// A readable reference to the node for error messages: `Conv 'layer1.0.conv1'`.
    fn describe(&self) -> String;
}

impl NodeExt for NodeProto {
    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name == name)
    }
    fn describe(&self) -> String {
        let name = if self.name.is_empty() {
            format!(
                "producing '{}'",
                self.output.first().map(String::as_str).unwrap_or("?")
            )
        } else {
            format!("'{}'", self.name)
        };
        format!("{} {}", self.op_type, name)
    }
}

/// Constructors for attributes, so graph rewriting code reads as the ONNX it emits.
pub mod attr {
    use super::proto::{attribute_type, AttributeProto, TensorProto};

    pub fn int(name: &str, value: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_type::INT,
            i: value,
            ..Default::default()
        }
    }
    pub fn float(name: &str, value: f32) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_type::FLOAT,
            f: value,
            ..Default::default()
        }
    }
    pub fn ints(name: &str, values: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_type::INTS,
            ints: values.to_vec(),
            ..Default::default()
        }
    }
    pub fn string(name: &str, value: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_type::STRING,
            s: value.as_bytes().to_vec(),
            ..Default::default()
        }
    }
    pub fn tensor(name: &str, value: TensorProto) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_type::TENSOR,
            t: Some(value),
            ..Default::default()
        }
    }
}

/// Static shape of a value, where known: `None` entries are symbolic or unknown dimensions.
pub fn value_shape(info: &ValueInfoProto) -> Option<Vec<Option<i64>>> {
    let tensor = info.r#type.as_ref()?.tensor_type.as_ref()?;
    let shape = tensor.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| d.dim_value.filter(|v| *v > 0))
            .collect(),
    )
}

/// Element type of a value, where declared.
pub fn value_elem_type(info: &ValueInfoProto) -> Option<i32> {
    Some(info.r#type.as_ref()?.tensor_type.as_ref()?.elem_type)
}

/// A `ValueInfoProto` for a tensor with the given element type and dimensions; `None`
/// dimensions become symbolic parameters named `dim_params[i]`.
pub fn value_info(name: &str, elem_type: i32, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    use proto::{Dimension, TypeProto, TypeProtoTensor};
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| match d {
                            Ok(v) => Dimension {
                                dim_value: Some(*v),
                                ..Default::default()
                            },
                            Err(p) => Dimension {
                                dim_param: Some((*p).to_owned()),
                                ..Default::default()
                            },
                        })
                        .collect(),
                }),
            }),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}
