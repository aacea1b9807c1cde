//! Checkpoint loading beyond a single f32 file: sharded checkpoints with an index, f16 and bf16 weights, and
//! zero-copy f32 views.

mod common;

use std::borrow::Cow;
use std::path::Path;

use common::{fixture, load, max_abs_diff};
use cpeal::models::Model;
use cpeal::tensor::{CpuStorage, Storage};
use cpeal::weights::{save_safetensors, Checkpoint, SafetensorsFile};
use safetensors::tensor::{Dtype, View};

struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn names(file: &SafetensorsFile) -> Vec<String> {
    let mut n: Vec<String> = file.names().map(String::from).collect();
    n.sort();
    n
}

/// The fixture `name` rewritten into `dir` with every tensor converted by `convert` to `dtype`.
fn rewrite(name: &str, dir: &Path, dtype: Dtype, convert: fn(f32) -> [u8; 2]) {
    let src = fixture(&format!("hf-tiny/{name}"));
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let file = SafetensorsFile::open(&src.join("model.safetensors")).unwrap();
    let tensors: Vec<(String, Raw)> = names(&file)
        .into_iter()
        .map(|n| {
            let t = file.get(&n, None).unwrap();
            let bytes = t.to_vec().unwrap().into_iter().flat_map(convert).collect();
            (n, Raw { dtype, shape: t.shape().to_vec(), bytes })
        })
        .collect();
    safetensors::serialize_to_file(tensors, None, &dir.join("model.safetensors")).unwrap();
}

fn forward_error(name: &str, dir: &Path) -> f32 {
    let model = Model::load(dir).unwrap();
    let src = fixture(&format!("hf-tiny/{name}"));
    let out = model.forward_images(&load(&src.join("inputs.safetensors"), "pixel_values")).unwrap();
    max_abs_diff(&out.last_hidden_state, &load(&src.join("expected.safetensors"), "last_hidden_state"))
}

#[test]
fn f16_and_bf16_checkpoints_load_and_match_within_their_precision() {
    let tmp = tempfile::tempdir().unwrap();
    let half = |v: f32| half::f16::from_f32(v).to_le_bytes();
    let brain = |v: f32| half::bf16::from_f32(v).to_le_bytes();
    for (dtype, conv, tol) in [(Dtype::F16, half as fn(f32) -> [u8; 2], 5e-3), (Dtype::BF16, brain, 5e-2)] {
        let dir = tmp.path().join(format!("{dtype:?}"));
        std::fs::create_dir_all(&dir).unwrap();
        rewrite("vit", &dir, dtype, conv);
        let (_, dtypes) = Checkpoint::open(&dir).unwrap().summary();
        assert_eq!(dtypes, vec![format!("{dtype:?}")]);
        let err = forward_error("vit", &dir);
        assert!(err > 0.0 && err < tol, "{dtype:?}: max abs error {err}");
    }
}

#[test]
fn sharded_checkpoint_with_index_equals_single_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("hf-tiny/dinov2");
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    let file = SafetensorsFile::open(&src.join("model.safetensors")).unwrap();
    let all = names(&file);
    let (first, second) = all.split_at(all.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in [("model-00001-of-00002.safetensors", first), ("model-00002-of-00002.safetensors", second)] {
        let tensors: Vec<(String, cpeal::Tensor)> =
            part.iter().map(|n| (n.clone(), file.get(n, None).unwrap())).collect();
        let named: Vec<(&str, &cpeal::Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        save_safetensors(&tmp.path().join(shard), &named, None).unwrap();
        for n in part {
            weight_map.insert(n.clone(), serde_json::Value::String(shard.into()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(tmp.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_eq!(Checkpoint::open(tmp.path()).unwrap().shards().len(), 2);
    assert!(forward_error("dinov2", tmp.path()) <= 1e-4);
}

#[test]
fn aligned_f32_weights_are_views_into_the_map() {
    let file = SafetensorsFile::open(&fixture("hf-tiny/vit/model.safetensors")).unwrap();
    let t = file.get("encoder.layer.0.intermediate.dense.weight", Some(&[96, 48])).unwrap();
    assert!(matches!(t.storage(), Storage::Cpu(CpuStorage::Mapped { .. })), "f32 weights must not be copied");
}
