//! CLIP tokenizer against `clip-tokenizer-cases.json` (transformers and OpenAI's SimpleTokenizer agree on it).

use std::path::{Path, PathBuf};

use cpeal::tokenizer::{ClipTokenizer, DEFAULT_CONTEXT_LENGTH};
use cpeal::Error;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tokenizer() -> ClipTokenizer {
    ClipTokenizer::from_dir(fixtures().join("hf-tiny/clip")).expect("fixture tokenizer loads")
}

fn cases() -> Vec<(String, Vec<u32>)> {
    let text = std::fs::read_to_string(fixtures().join("clip-tokenizer-cases.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = json["cases"].as_array().expect("cases array");
    assert!(!cases.is_empty());
    cases
        .iter()
        .map(|c| {
            let ids = c["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            (c["text"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

#[test]
fn every_fixture_case_matches_exactly() {
    let tok = tokenizer();
    let mut failures = Vec::new();
    for (text, expected) in cases() {
        let got = tok.encode(&text).unwrap();
        if got != expected {
            failures.push(format!("{text:?}: got {got:?}, expected {expected:?}"));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn special_token_ids_come_from_the_vocabulary() {
    let tok = tokenizer();
    // every fixture encoding starts with the start token and ends with the end token
    for (_, ids) in cases() {
        assert_eq!(ids[0], tok.bos_token_id());
        assert_eq!(*ids.last().unwrap(), tok.eos_token_id());
    }
    assert_ne!(tok.bos_token_id(), tok.eos_token_id());
}

#[test]
fn encode_batch_equals_encode_per_text() {
    let tok = tokenizer();
    let texts: Vec<String> = cases().into_iter().map(|(t, _)| t).collect();
    let batch = tok.encode_batch(&texts).unwrap();
    assert_eq!(batch.len(), texts.len());
    for (t, ids) in texts.iter().zip(&batch) {
        assert_eq!(ids, &tok.encode(t).unwrap());
    }
}

#[test]
fn long_text_is_truncated_keeping_end_of_text_last() {
    let tok = tokenizer();
    let long = "a photo of a very large dog ".repeat(40);
    let wide = tokenizer().with_context_length(usize::MAX).unwrap().encode(&long).unwrap();
    let full = wide.len();
    assert!(full > DEFAULT_CONTEXT_LENGTH, "test text must exceed the context ({full} tokens)");
    let ids = tok.encode(&long).unwrap();
    assert_eq!(ids.len(), DEFAULT_CONTEXT_LENGTH);
    assert_eq!(ids[76], tok.eos_token_id());
    assert_eq!(ids[0], tok.bos_token_id());
    // the kept prefix is the prefix of the untruncated encoding
    assert_eq!(&ids[..76], &wide[..76]);
}

#[test]
fn custom_context_length_truncates_and_rejects_tiny_values() {
    let tok = tokenizer().with_context_length(5).unwrap();
    let ids = tok.encode("a photo of a dog.").unwrap();
    assert_eq!(ids.len(), 5);
    assert_eq!(ids[4], tok.eos_token_id());
    assert!(tokenizer().with_context_length(1).is_err());
}

#[test]
fn missing_tokenizer_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = ClipTokenizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn invalid_tokenizer_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, "{\"not\": \"a tokenizer\"").unwrap();
    let err = ClipTokenizer::from_file(&path).unwrap_err();
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    std::fs::write(&path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}").unwrap();
    let err = ClipTokenizer::from_file(&path).unwrap_err();
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}
