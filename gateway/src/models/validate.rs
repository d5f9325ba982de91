//! [`RawManifest`] → [`Manifest`], collecting every problem instead of
//! stopping at the first.

use std::collections::HashSet;

use super::manifest::{
    Label, Layout, Manifest, ManifestError, Normalisation, NormalisationKind, OutputSpec, PerImage,
    Preprocessing, RawInput, RawManifest, RawNormalisation, RawOutput, RawTriton, RawWindow, Task,
    TensorSpec, TritonModel, Version, Window, WindowSource,
};

/// The words a demo manifest's `clinical_use` must contain.
pub const NOT_FOR_CLINICAL_USE: &str = "NOT FOR CLINICAL USE";

/// Model names become folder names and metric label values: keep them tame.
pub fn check_model_name(value: &str) -> Result<(), &'static str> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !value.starts_with(['-', '_']);
    if ok {
        Ok(())
    } else {
        Err("must be 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit")
    }
}

struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, problem: String) {
        self.0.push(problem);
    }

    fn non_empty(&mut self, key: &str, value: &str) {
        if value.trim().is_empty() {
            self.push(format!("{key}: must not be empty"));
        }
    }

    /// A shape of positive dimensions.
    fn shape(&mut self, key: &str, dims: &[i64]) -> Vec<usize> {
        if dims.is_empty() {
            self.push(format!("{key}: must have at least one dimension"));
        }
        dims.iter()
            .map(|&d| match usize::try_from(d) {
                Ok(d) if d > 0 => d,
                _ => {
                    self.push(format!("{key}: dimension {d} must be a positive integer"));
                    1
                }
            })
            .collect()
    }

    fn finite(&mut self, key: &str, value: f64) -> f32 {
        // Checked as f32: that is what the engines compute with.
        let narrowed = value as f32;
        if !narrowed.is_finite() {
            self.push(format!("{key}: {value} is not a finite 32-bit number"));
            return 0.0;
        }
        narrowed
    }
}

impl RawManifest {
    /// Checks everything and returns the typed manifest, or every problem.
    pub fn validate(&self) -> Result<Manifest, ManifestError> {
        let mut p = Problems(Vec::new());

        if let Err(why) = check_model_name(&self.name) {
            p.push(format!("name: `{}` {why}", self.name));
        }
        let version = self.version.parse::<Version>().unwrap_or_else(|why| {
            p.push(format!("version: {why}"));
            Version {
                major: 0,
                minor: 0,
                patch: 0,
            }
        });
        p.non_empty("clinical_use", &self.clinical_use);
        if self.demo && !self.clinical_use.contains(NOT_FOR_CLINICAL_USE) {
            p.push(format!(
                "clinical_use: a demo model must say plainly \"{NOT_FOR_CLINICAL_USE}\""
            ));
        }
        p.non_empty("intended_use", &self.intended_use);
        if self.limitations.is_empty() {
            p.push("limitations: list at least one limitation".into());
        }
        for (i, limitation) in self.limitations.iter().enumerate() {
            p.non_empty(&format!("limitations[{i}]"), limitation);
        }
        check_model_file(&mut p, &self.model_file);
        let sha256_ok = self.sha256.len() == 64
            && self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !sha256_ok {
            p.push("sha256: must be 64 lower-case hex digits".into());
        }

        let (input, dynamic_batch) = input_spec(&mut p, &self.input);
        let preprocessing = preprocessing(&mut p, self, &input);
        let outputs = outputs(&mut p, self.task, &self.outputs, &input.name, dynamic_batch);
        let triton = self.triton.as_ref().map(|raw| triton(&mut p, raw));
        let baseline = self
            .baseline
            .as_ref()
            .and_then(|raw| super::baseline::validate_baseline(raw, &outputs, &mut p.0));

        if !p.0.is_empty() {
            return Err(ManifestError(p.0));
        }
        Ok(Manifest {
            name: self.name.clone(),
            version,
            task: self.task,
            demo: self.demo,
            clinical_use: self.clinical_use.clone(),
            description: self.description.clone(),
            intended_use: self.intended_use.clone(),
            limitations: self.limitations.clone(),
            model_file: self.model_file.clone(),
            sha256: self.sha256.clone(),
            input,
            per_image: self.input.per_image,
            preprocessing,
            outputs,
            baseline,
            dynamic_batch,
            triton,
        })
    }
}

/// A dynamic batch axis: `-1` first in a shape. Returns the shape of one
/// request (1 on that axis) and whether the axis was dynamic.
fn batch_axis(dims: &[i64]) -> (Vec<i64>, bool) {
    match dims.split_first() {
        Some((-1, rest)) => (
            std::iter::once(1).chain(rest.iter().copied()).collect(),
            true,
        ),
        _ => (dims.to_vec(), false),
    }
}

fn triton(p: &mut Problems, raw: &RawTriton) -> TritonModel {
    let tame = |s: &str| {
        !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic() && c != '/')
    };
    if !tame(&raw.model) {
        p.push(format!(
            "triton.model: `{}` must be 1-128 printable characters without spaces or '/'",
            raw.model
        ));
    }
    // Pinned, so a result names one deployed artifact: Triton's versions
    // are positive integers (its version folders).
    if !matches!(raw.version.parse::<u64>(), Ok(v) if v > 0) || raw.version.starts_with('0') {
        p.push(format!(
            "triton.version: `{}` must be the server's version number, a positive integer",
            raw.version
        ));
    }
    TritonModel {
        model: raw.model.clone(),
        version: raw.version.clone(),
    }
}

/// A plain file name: the manifest must not point outside its own folder.
fn check_model_file(p: &mut Problems, name: &str) {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.');
    if !plain {
        p.push(format!(
            "model_file: `{name}` must be a plain file name in the version folder"
        ));
    }
}

fn input_spec(p: &mut Problems, raw: &RawInput) -> (TensorSpec, bool) {
    p.non_empty("input.name", &raw.name);
    let (dims, dynamic_batch) = batch_axis(&raw.shape);
    let shape = p.shape("input.shape", &dims);
    let rank = match raw.per_image {
        PerImage::TwoD => 4,
        PerImage::Volume => 5,
    };
    if !shape.is_empty() && shape.len() != rank {
        p.push(format!(
            "input.shape: per_image = \"{}\" takes {rank} dimensions (batch, channels and {} spatial), not {}",
            match raw.per_image {
                PerImage::TwoD => "2d",
                PerImage::Volume => "volume",
            },
            rank - 2,
            shape.len()
        ));
    }
    let spec = TensorSpec {
        name: raw.name.clone(),
        shape,
        dtype: raw.dtype,
    };
    (spec, dynamic_batch)
}

fn preprocessing(p: &mut Problems, raw: &RawManifest, input: &TensorSpec) -> Preprocessing {
    let pre = &raw.preprocessing;
    let window = window(p, &pre.window);
    let resize = match p.shape("preprocessing.resize", &pre.resize).as_slice() {
        &[rows, columns] => [rows, columns],
        _ => {
            p.push("preprocessing.resize: must be [rows, columns]".into());
            [1, 1]
        }
    };
    let channels = match usize::try_from(pre.channels) {
        Ok(c) if c > 0 => c,
        _ => {
            p.push(format!(
                "preprocessing.channels: {} must be a positive integer",
                pre.channels
            ));
            1
        }
    };
    let normalisation = normalisation(p, &pre.normalisation, channels);

    // The input shape must be what the pixel pipeline produces.
    let rank = input.shape.len();
    if rank >= 4 {
        let (channel_axis, spatial) = match pre.layout {
            Layout::Nchw => (1, &input.shape[rank - 2..]),
            Layout::Nhwc => (rank - 1, &input.shape[rank - 3..rank - 1]),
        };
        if input.shape[channel_axis] != channels {
            p.push(format!(
                "preprocessing.channels: {channels} does not match input.shape {:?} in {} layout",
                input.shape,
                match pre.layout {
                    Layout::Nchw => "nchw",
                    Layout::Nhwc => "nhwc",
                }
            ));
        }
        if spatial != resize {
            p.push(format!(
                "preprocessing.resize: {resize:?} does not match the spatial dimensions {spatial:?} of input.shape"
            ));
        }
    }
    Preprocessing {
        modality_lut: pre.modality_lut,
        window,
        resize,
        normalisation,
        channels,
        layout: pre.layout,
    }
}

fn window(p: &mut Problems, raw: &RawWindow) -> Window {
    match raw.source {
        WindowSource::Fixed => match (raw.center, raw.width) {
            (Some(center), Some(width)) => {
                let center = p.finite("preprocessing.window.center", center);
                let width = p.finite("preprocessing.window.width", width);
                // PS3.3: Window Width is at least 1.
                if width < 1.0 {
                    p.push(format!(
                        "preprocessing.window.width: {width} must be at least 1"
                    ));
                }
                Window::Fixed { center, width }
            }
            _ => {
                p.push(
                    "preprocessing.window: source = \"fixed\" needs both center and width".into(),
                );
                Window::None
            }
        },
        source => {
            if raw.center.is_some() || raw.width.is_some() {
                p.push(
                    "preprocessing.window: center and width are only for source = \"fixed\"".into(),
                );
            }
            if source == WindowSource::FromFile {
                Window::FromFile
            } else {
                Window::None
            }
        }
    }
}

fn normalisation(p: &mut Problems, raw: &RawNormalisation, channels: usize) -> Normalisation {
    const KEY: &str = "preprocessing.normalisation";
    let scale_fields = raw.scale.is_some() || raw.offset.is_some();
    let mean_std_fields = raw.mean.is_some() || raw.std.is_some();
    match raw.kind {
        NormalisationKind::None => {
            if scale_fields || mean_std_fields {
                p.push(format!("{KEY}: kind = \"none\" takes no other keys"));
            }
            Normalisation::None
        }
        NormalisationKind::Scale => {
            if mean_std_fields {
                p.push(format!(
                    "{KEY}: mean and std are only for kind = \"mean_std\""
                ));
            }
            let Some(scale) = raw.scale else {
                p.push(format!("{KEY}: kind = \"scale\" needs scale"));
                return Normalisation::None;
            };
            let scale = p.finite(&format!("{KEY}.scale"), scale);
            if scale == 0.0 {
                p.push(format!("{KEY}.scale: must not be zero"));
            }
            let offset = p.finite(&format!("{KEY}.offset"), raw.offset.unwrap_or(0.0));
            Normalisation::Scale { scale, offset }
        }
        NormalisationKind::MeanStd => {
            if scale_fields {
                p.push(format!(
                    "{KEY}: scale and offset are only for kind = \"scale\""
                ));
            }
            let (Some(mean), Some(std)) = (&raw.mean, &raw.std) else {
                p.push(format!("{KEY}: kind = \"mean_std\" needs mean and std"));
                return Normalisation::None;
            };
            for (key, values) in [("mean", mean), ("std", std)] {
                if values.len() != channels {
                    p.push(format!(
                        "{KEY}.{key}: has {} values for {channels} channel(s)",
                        values.len()
                    ));
                }
            }
            let mean = mean
                .iter()
                .map(|&m| p.finite(&format!("{KEY}.mean"), m))
                .collect();
            let std: Vec<f32> = std
                .iter()
                .map(|&s| p.finite(&format!("{KEY}.std"), s))
                .collect();
            if std.iter().any(|&s| s <= 0.0) {
                p.push(format!("{KEY}.std: every value must be greater than zero"));
            }
            Normalisation::MeanStd { mean, std }
        }
    }
}

fn outputs(
    p: &mut Problems,
    task: Task,
    raw: &[RawOutput],
    input_name: &str,
    dynamic_batch: bool,
) -> Vec<OutputSpec> {
    if raw.is_empty() {
        p.push("outputs: list at least one output".into());
    }
    let mut names = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, out)| {
            let key = format!("outputs[{i}]");
            p.non_empty(&format!("{key}.name"), &out.name);
            if !names.insert(out.name.as_str()) {
                p.push(format!("{key}.name: `{}` appears twice", out.name));
            }
            if out.name == input_name {
                p.push(format!("{key}.name: `{}` is also the input's name", out.name));
            }
            let (dims, batched) = batch_axis(&out.shape);
            if batched != dynamic_batch {
                p.push(format!(
                    "{key}.shape: the first axis must be -1 (a dynamic batch) exactly when input.shape's is"
                ));
            }
            let shape = p.shape(&format!("{key}.shape"), &dims);
            let labels = labels(p, &key, &out.labels);
            match task {
                Task::Classification => {
                    let elements: usize = shape.iter().product();
                    if labels.is_empty() {
                        p.push(format!("{key}.labels: a classification output needs labels"));
                    } else if elements != labels.len() {
                        p.push(format!(
                            "{key}.labels: {} label(s) for an output of {elements} element(s) (shape {shape:?})",
                            labels.len()
                        ));
                    }
                }
            }
            OutputSpec {
                tensor: TensorSpec {
                    name: out.name.clone(),
                    shape,
                    dtype: out.dtype,
                },
                labels,
            }
        })
        .collect()
}

fn labels(p: &mut Problems, key: &str, raw: &[super::manifest::RawLabel]) -> Vec<Label> {
    let mut names = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(j, label)| {
            let key = format!("{key}.labels[{j}]");
            p.non_empty(&format!("{key}.name"), &label.name);
            if !names.insert(label.name.as_str()) {
                p.push(format!("{key}.name: `{}` appears twice", label.name));
            }
            let threshold = p.finite(&format!("{key}.threshold"), label.threshold);
            if !(0.0..=1.0).contains(&threshold) {
                p.push(format!(
                    "{key}.threshold: {threshold} must be between 0 and 1"
                ));
            }
            Label {
                name: label.name.clone(),
                threshold,
            }
        })
        .collect()
}
