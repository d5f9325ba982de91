//! Cache keys: what makes two inferences the same.
//!
//! A key is SHA-256 over, length-framed so no two inputs can collide by
//! concatenation: the model name, version and file SHA-256, a digest of the
//! model's input contract ([`ModelFingerprint`]: input tensor spec,
//! preprocessing, outputs with their operating points), and a digest of
//! the input itself ([`InputDigest`]).
//!
//! The input digest is taken over the **decoded input tensor** (shape and
//! `f32` values, after preprocessing), not over the stored Pixel Data bytes.
//! The tensor is exactly what the engine sees, so equal digests mean equal
//! inputs by construction; Pixel Data alone would not be enough (Rescale
//! Slope/Intercept, windows, photometric interpretation, transfer syntax and
//! bit depth all change the tensor), and listing those attributes by hand
//! would silently go stale as `pixels/` grows. The price is that a hit
//! still decodes the image; it saves the inference. UIDs never enter a key,
//! so a re-sent series with new UIDs hits as well.

use sha2::{Digest, Sha256};

use crate::infer::Tensor;
use crate::models::{Manifest, ModelId, Normalisation, Window};

/// Version of the key derivation; part of the key text, so a change of
/// derivation can never read entries written by the old one.
const KEY_VERSION: &str = "v1";

/// SHA-256 of one input tensor: its name, shape and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputDigest([u8; 32]);

impl InputDigest {
    /// Digest of the tensor fed to the model's input `name`. Values are
    /// hashed in logical (row-major) order as little-endian `f32`, so the
    /// memory layout of the array does not matter.
    pub fn of_tensor(name: &str, tensor: &Tensor) -> InputDigest {
        let mut hasher = Sha256::new();
        hasher.update(b"dgw-input-tensor\0");
        frame(&mut hasher, name.as_bytes());
        hasher.update((tensor.ndim() as u64).to_le_bytes());
        for dim in tensor.shape() {
            hasher.update((*dim as u64).to_le_bytes());
        }
        // Batch the values through a buffer: one `update` per element
        // would cost more than the hashing itself.
        let mut buffer = [0u8; 4096];
        let mut used = 0;
        for value in tensor.iter() {
            buffer[used..used + 4].copy_from_slice(&value.to_le_bytes());
            used += 4;
            if used == buffer.len() {
                hasher.update(buffer);
                used = 0;
            }
        }
        hasher.update(&buffer[..used]);
        InputDigest(hasher.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Everything about a model version that decides its output for a given
/// input tensor, hashed once per job and reused for each image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFingerprint {
    model: ModelId,
    model_sha256: String,
    spec_digest: [u8; 32],
}

impl ModelFingerprint {
    pub fn of(manifest: &Manifest) -> ModelFingerprint {
        ModelFingerprint {
            model: manifest.id(),
            model_sha256: manifest.sha256.to_ascii_lowercase(),
            spec_digest: Sha256::digest(canonical_spec(manifest).as_bytes()).into(),
        }
    }

    /// The key of this model run on `input`.
    pub fn key(&self, input: &InputDigest) -> CacheKey {
        let mut hasher = Sha256::new();
        hasher.update(b"dgw-result-key\0");
        frame(&mut hasher, KEY_VERSION.as_bytes());
        frame(&mut hasher, self.model.name.as_bytes());
        frame(&mut hasher, self.model.version.to_string().as_bytes());
        frame(&mut hasher, self.model_sha256.as_bytes());
        hasher.update(self.spec_digest);
        hasher.update(input.as_bytes());
        CacheKey {
            model: self.model.clone(),
            model_sha256: self.model_sha256.clone(),
            digest: hasher.finalize().into(),
        }
    }

    pub fn model(&self) -> &ModelId {
        &self.model
    }
}

/// One cache entry's identity. Its text form ([`CacheKey::text`]) is a
/// prefix and a hex digest: no UID, name or other patient data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    model: ModelId,
    model_sha256: String,
    digest: [u8; 32],
}

impl CacheKey {
    /// `<prefix>:v1:result:<64 hex digits>`.
    pub fn text(&self, prefix: &str) -> String {
        format!("{prefix}:{KEY_VERSION}:result:{}", hex::encode(self.digest))
    }

    /// The model version the key is for; a stored value must name the same.
    pub fn model(&self) -> &ModelId {
        &self.model
    }

    pub fn model_sha256(&self) -> &str {
        &self.model_sha256
    }
}

/// A length prefix before each variable field: ("ab","c") ≠ ("a","bc").
fn frame(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// The manifest's input contract as canonical text: one `key=value` line
/// per setting in a fixed order, floats as their exact bit patterns. Only
/// what changes the output for a given model file is included (not the
/// description or intended use).
fn canonical_spec(manifest: &Manifest) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let input = &manifest.input;
    let pre = &manifest.preprocessing;
    let _ = writeln!(text, "input.name={}", input.name);
    let _ = writeln!(text, "input.shape={}", dims(&input.shape));
    let _ = writeln!(text, "input.dtype={}", serde_name(&input.dtype));
    let _ = writeln!(text, "input.per_image={}", serde_name(&manifest.per_image));
    let _ = writeln!(text, "pre.modality_lut={}", pre.modality_lut);
    let window = match pre.window {
        Window::None => "none".to_string(),
        Window::Fixed { center, width } => format!("fixed:{}:{}", bits(center), bits(width)),
        Window::FromFile => "from_file".to_string(),
    };
    let _ = writeln!(text, "pre.window={window}");
    let _ = writeln!(text, "pre.resize={}", dims(&pre.resize));
    let normalisation = match &pre.normalisation {
        Normalisation::None => "none".to_string(),
        Normalisation::Scale { scale, offset } => {
            format!("scale:{}:{}", bits(*scale), bits(*offset))
        }
        Normalisation::MeanStd { mean, std } => format!(
            "mean_std:{}:{}",
            mean.iter().map(|v| bits(*v)).collect::<Vec<_>>().join(","),
            std.iter().map(|v| bits(*v)).collect::<Vec<_>>().join(",")
        ),
    };
    let _ = writeln!(text, "pre.normalisation={normalisation}");
    let _ = writeln!(text, "pre.channels={}", pre.channels);
    let _ = writeln!(text, "pre.layout={}", serde_name(&pre.layout));
    for (i, output) in manifest.outputs.iter().enumerate() {
        let _ = writeln!(text, "output[{i}].name={}", output.tensor.name);
        let _ = writeln!(text, "output[{i}].shape={}", dims(&output.tensor.shape));
        for label in &output.labels {
            let _ = writeln!(
                text,
                "output[{i}].label={}:{}",
                label.name,
                bits(label.threshold)
            );
        }
    }
    text
}

fn dims(values: &[usize]) -> String {
    values
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn bits(value: f32) -> String {
    format!("{:08x}", value.to_bits())
}

/// The manifest spelling of a unit enum (`"float32"`, `"nchw"`, `"2d"`).
fn serde_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
