//! `cpeal convert-onnx-dinov2 --onnx FILE --out DIR`: an exported DINOv2 ONNX graph → Hugging Face
//! `Dinov2Model` checkpoint (config.json, model.safetensors, preprocessor_config.json).

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// ONNX file holding a DINOv2 backbone with its weights inline
    #[arg(long)]
    pub onnx: PathBuf,
    /// output checkpoint directory (created if missing)
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    let summary = cpeal::convert::convert_dinov2_onnx(&args.onnx, &args.out)?;
    let m = &summary.meta;
    println!(
        "wrote {}: Dinov2Model, {} layers, hidden {}, {} heads, mlp {}, patch {}, position grid {}x{} (image_size {}), \
         layer_norm_eps {:e}, {} tensors, {} parameters",
        args.out.display(),
        m.num_hidden_layers,
        m.hidden_size,
        m.num_attention_heads,
        m.intermediate_size,
        m.patch_size,
        m.grid,
        m.grid,
        m.grid * m.patch_size,
        m.layer_norm_eps,
        summary.tensors,
        summary.parameters
    );
    if let Some((h, w)) = m.graph_input_hw {
        println!("graph input: {h}x{w} pixels");
    }
    if let Some(resize) = &m.pos_resize {
        println!("graph resizes the position grid: {resize}");
    }
    Ok(())
}
