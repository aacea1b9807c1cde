//! The GPU kernels' CPU references against PyTorch where the semantics are subtle: bicubic interpolation
//! (align_corners=False, with and without antialias, by size and by scale factor). The fixture comes from
//! `scripts/gen-interp-fixture.py`.

use cpeal::gpu::reference;

#[derive(serde::Deserialize)]
struct Case {
    hi: usize,
    wi: usize,
    d: usize,
    ho: usize,
    wo: usize,
    scale_h: f64,
    scale_w: f64,
    antialias: bool,
    x: Vec<f64>,
    y: Vec<f64>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[test]
fn bicubic_reference_matches_pytorch() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpu/interp_bicubic.json");
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(fixture.cases.len() >= 6);
    for c in &fixture.cases {
        let x: Vec<f32> = c.x.iter().map(|&v| v as f32).collect();
        let y = reference::interp_bicubic(c.d, c.hi, c.wi, c.ho, c.wo, &x, c.scale_h, c.scale_w, c.antialias);
        let want: Vec<f32> = c.y.iter().map(|&v| v as f32).collect();
        let (rel, max_abs) = reference::compare(&want, &y);
        let what = format!("{}x{} -> {}x{} aa={}", c.hi, c.wi, c.ho, c.wo, c.antialias);
        assert!(rel < 1e-6 && max_abs < 1e-5, "{what}: rel {rel:e}, max abs {max_abs:e}");
    }
}
