//! Map the weights of an exported DINOv2 ONNX graph to the tensor names of a Hugging Face `Dinov2Model`.
//!
//! Exporters keep only some initializers' names; the MatMul weights are anonymous (`onnx::MatMul_1966`). So the
//! mapping never trusts names: it walks the graph from the pixel input. Conv (patch embedding) → Expand of the
//! CLS token → Concat → Add of the position embedding (a CLS piece and a patch grid, possibly resized in the
//! graph) → per block: LayerNorm → three Linears whose roles (query/key/value) follow from where their outputs
//! meet in attention → output Linear → layer-scale Mul → residual Add → LayerNorm → fc1 → GELU → fc2 →
//! layer-scale Mul → residual Add; and the final LayerNorm. ONNX MatMul weights are [in, out]; HF Linear
//! weights are [out, in], so they are transposed. A fused QKV weight ([D, 3D]) is split into three.

use std::path::Path;

use super::graph::{GraphIndex, LayerNorm, Linear};
use super::onnx_proto::{Dim, Node};
use crate::error::Result;
use crate::tensor::Tensor;

/// Architecture facts read off the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Dinov2Meta {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    /// side of the stored (square) position-embedding grid, in patches
    pub grid: usize,
    pub layer_norm_eps: f32,
    pub hidden_act: String,
    /// spatial size of the graph's pixel input, when the graph declares it
    pub graph_input_hw: Option<(usize, usize)>,
    /// the graph's Resize of the position grid: mode, coordinate transformation, cubic coefficient
    pub pos_resize: Option<String>,
}

/// The converted checkpoint: HF names with tensors in HF layout.
pub struct Dinov2Weights {
    pub meta: Dinov2Meta,
    pub tensors: Vec<(String, Tensor)>,
}

/// Walk `graph` (read from `path`, named in errors) and collect every `Dinov2Model` tensor.
pub fn map_dinov2(index: &GraphIndex<'_>) -> Result<Dinov2Weights> {
    let mut out = Vec::new();
    let emb = embeddings(index, &mut out)?;
    let d = emb.hidden;
    let mut x = emb.output.clone();
    let mut blocks = Vec::new();
    let final_ln = loop {
        let ln = index.layer_norm_at(&x)?;
        let qkv = index.linears_at(&ln.output)?;
        if qkv.is_empty() {
            break ln;
        }
        let block = block_at(index, &x, ln, qkv, d)?;
        x = block.output.clone();
        emit_block(index, blocks.len(), &block, d, &mut out)?;
        blocks.push(block);
    };
    if blocks.is_empty() {
        return Err(index.tensor_err(&emb.output, "no transformer block reads the embeddings"));
    }
    push_vector(index, "layernorm.weight", &final_ln.weight, d, &mut out)?;
    push_vector(index, "layernorm.bias", &final_ln.bias, d, &mut out)?;
    let eps = check_eps(index, &blocks, &final_ln)?;
    if let Some(b) = blocks.iter().find(|b| (b.heads, b.intermediate) != (blocks[0].heads, blocks[0].intermediate)) {
        return Err(index.tensor_err(&b.output, "blocks differ in head count or MLP width"));
    }
    let meta = Dinov2Meta {
        hidden_size: d,
        num_hidden_layers: blocks.len(),
        num_attention_heads: blocks[0].heads,
        intermediate_size: blocks[0].intermediate,
        patch_size: emb.patch,
        num_channels: emb.channels,
        grid: emb.grid,
        layer_norm_eps: eps,
        hidden_act: "gelu".into(),
        graph_input_hw: graph_input_hw(index),
        pos_resize: emb.resize,
    };
    Ok(Dinov2Weights { meta, tensors: out })
}

struct Embeddings {
    output: String,
    hidden: usize,
    patch: usize,
    channels: usize,
    grid: usize,
    resize: Option<String>,
}

fn embeddings(index: &GraphIndex<'_>, out: &mut Vec<(String, Tensor)>) -> Result<Embeddings> {
    let conv = patch_conv(index)?;
    let w_name = &conv.inputs[1];
    let (w, shape) = index.constant_f32(w_name)?;
    let [hidden, channels, kh, kw] = shape[..] else {
        return Err(index.tensor_err(w_name, format!("patch Conv weight must be 4-D, is {shape:?}")));
    };
    if hidden == 0 || channels == 0 || kh == 0 {
        return Err(index.tensor_err(w_name, format!("patch Conv weight has an empty dimension: {shape:?}")));
    }
    if kh != kw || conv.attr_ints("strides").is_some_and(|s| s.iter().any(|&v| v as usize != kh)) {
        return Err(index.node_err(conv, "patch Conv must have a square kernel equal to its stride"));
    }
    out.push(("embeddings.patch_embeddings.projection.weight".into(), Tensor::from_vec(w, &shape)?));
    let b_name = conv.inputs.get(2).ok_or_else(|| index.node_err(conv, "patch Conv has no bias"))?;
    push_vector(index, "embeddings.patch_embeddings.projection.bias", b_name, hidden, out)?;

    let tokens = tokens_concat(index, index.out(conv)?, hidden, out)?;
    let add = index.residual_add(&tokens).map_err(|_| index.tensor_err(&tokens, "no position-embedding Add"))?;
    let pos = index.other_input(add, &tokens)?;
    let (pos_values, grid, resize) = position_embeddings(index, pos, hidden)?;
    out.push(("embeddings.position_embeddings".into(), Tensor::from_vec(pos_values, &[1, grid * grid + 1, hidden])?));
    // The mask token only matters for masked-image modelling; exporters drop it. HF initializes it to zeros.
    out.push(("embeddings.mask_token".into(), Tensor::from_vec(vec![0.0; hidden], &[1, hidden])?));
    Ok(Embeddings { output: index.out(add)?.into(), hidden, patch: kh, channels, grid, resize })
}

/// The Conv reading the pixel input (through Casts).
fn patch_conv<'g>(index: &GraphIndex<'g>) -> Result<&'g Node> {
    let input = index.graph.inputs.iter().find(|i| !index.is_constant(&i.name));
    let input = input.ok_or_else(|| index.tensor_err("<graph input>", "the graph has no non-constant input"))?;
    let mut cur = input.name.clone();
    for _ in 0..4 {
        let next: Vec<_> = index.consumers(&cur).filter(|n| n.op_type == "Conv" || n.op_type == "Cast").collect();
        match next.as_slice() {
            [n] if n.op_type == "Conv" && n.inputs.len() >= 2 && index.is_constant(&n.inputs[1]) => return Ok(n),
            [n] if n.op_type == "Cast" => cur = index.out(n)?.to_string(),
            _ => break,
        }
    }
    Err(index.tensor_err(&input.name, "no patch-embedding Conv reads the pixel input"))
}

/// Follow the patch tokens to the Concat that prepends the CLS token; emit `cls_token`; return the Concat output.
fn tokens_concat(index: &GraphIndex<'_>, conv_out: &str, d: usize, out: &mut Vec<(String, Tensor)>) -> Result<String> {
    let mut cur = conv_out.to_string();
    for _ in 0..6 {
        let concat = index.consumers_op(&cur, "Concat");
        if let [c] = concat.as_slice() {
            let cls_src = c.inputs.iter().find(|i| *i != &cur).ok_or_else(|| index.node_err(c, "no CLS operand"))?;
            let cls = constant_through(index, cls_src)?;
            push_shaped(index, "embeddings.cls_token", &cls, &[1, 1, d], out)?;
            return Ok(index.out(c)?.to_string());
        }
        let next: Vec<_> = index
            .consumers(&cur)
            .filter(|n| matches!(n.op_type.as_str(), "Reshape" | "Transpose" | "Flatten"))
            .collect();
        match next.as_slice() {
            [n] => cur = index.out(n)?.to_string(),
            _ => break,
        }
    }
    Err(index.tensor_err(conv_out, "patch tokens never meet a CLS-token Concat"))
}

/// The constant behind `name`, looking through Expand/Tile/Cast (the CLS token is broadcast to the batch).
fn constant_through(index: &GraphIndex<'_>, name: &str) -> Result<String> {
    let mut cur = name.to_string();
    for _ in 0..4 {
        if index.is_constant(&cur) {
            return Ok(cur);
        }
        let node = index.producer(&cur).ok_or_else(|| index.tensor_err(&cur, "not produced by any node"))?;
        match node.op_type.as_str() {
            "Expand" | "Tile" | "Cast" | "Identity" => cur = first_input(index, node)?,
            op => return Err(index.node_err(node, format!("expected a broadcast constant, found {op}"))),
        }
    }
    Err(index.tensor_err(name, "no constant found"))
}

/// Position embedding as [1 + grid², D] values (CLS row first), from one initializer or a CLS piece and a
/// patch grid concatenated in the graph. Returns the values, the grid side and the graph's Resize, if any.
fn position_embeddings(index: &GraphIndex<'_>, pos: &str, d: usize) -> Result<(Vec<f32>, usize, Option<String>)> {
    if index.is_constant(pos) {
        let (values, _) = index.constant_f32(pos)?;
        if values.len() % d != 0 || values.len() <= d {
            return Err(index.tensor_err(pos, format!("{} values are not [1 + N, {d}]", values.len())));
        }
        let grid = square_side(index, pos, values.len() / d - 1)?;
        return Ok((values, grid, None));
    }
    let concat = index.producer(pos).filter(|n| n.op_type == "Concat" && n.inputs.len() == 2);
    let concat = concat.ok_or_else(|| index.tensor_err(pos, "expected Concat(CLS position, patch positions)"))?;
    let (cls, _) = index.constant_f32(&constant_through(index, &concat.inputs[0])?)?;
    if cls.len() != d {
        return Err(index.tensor_err(&concat.inputs[0], format!("CLS position has {} values, expected {d}", cls.len())));
    }
    let (grid_name, resize) = patch_grid_source(index, &concat.inputs[1])?;
    let (patch, _) = index.constant_f32(&grid_name)?;
    if patch.len() % d != 0 {
        return Err(index.tensor_err(&grid_name, format!("{} values is not a multiple of {d}", patch.len())));
    }
    let grid = square_side(index, &grid_name, patch.len() / d)?;
    let mut values = cls;
    values.extend_from_slice(&patch);
    Ok((values, grid, resize))
}

/// Walk up from the patch-position operand through Reshape/Transpose/Cast/Resize to its initializer.
fn patch_grid_source(index: &GraphIndex<'_>, start: &str) -> Result<(String, Option<String>)> {
    let mut cur = start.to_string();
    let mut resize = None;
    for _ in 0..12 {
        if index.is_constant(&cur) {
            return Ok((cur, resize));
        }
        let node = index.producer(&cur).ok_or_else(|| index.tensor_err(&cur, "not produced by any node"))?;
        match node.op_type.as_str() {
            "Reshape" | "Transpose" | "Cast" | "Identity" | "Flatten" => {}
            "Resize" => resize = Some(describe_resize(node)),
            op => return Err(index.node_err(node, format!("unexpected {op} on the position-embedding path"))),
        }
        cur = first_input(index, node)?;
    }
    Err(index.tensor_err(start, "position-embedding path too long"))
}

fn first_input(index: &GraphIndex<'_>, node: &Node) -> Result<String> {
    node.inputs.first().cloned().ok_or_else(|| index.node_err(node, "node has no input"))
}

fn describe_resize(node: &Node) -> String {
    let mode = node.attr_str("mode").unwrap_or_else(|| "nearest".into());
    let ctm = node.attr_str("coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into());
    let a = node.attr_f32("cubic_coeff_a").unwrap_or(-0.75);
    let antialias = node.attr("antialias").is_some_and(|v| v != &super::onnx_proto::AttrValue::Int(0));
    format!("mode={mode} coordinate_transformation_mode={ctm} cubic_coeff_a={a} antialias={antialias}")
}

fn square_side(index: &GraphIndex<'_>, name: &str, n: usize) -> Result<usize> {
    let side = (n as f64).sqrt().round() as usize;
    if side * side != n || n == 0 {
        return Err(index.tensor_err(name, format!("{n} patch positions do not form a square grid")));
    }
    Ok(side)
}

struct Block {
    ln1: LayerNorm,
    ln2: LayerNorm,
    /// query, key, value: (weight name, bias name, column offset into a fused weight)
    qkv: [(Linear, usize); 3],
    dense: Linear,
    ls1: String,
    fc1: Linear,
    fc2: Linear,
    ls2: String,
    heads: usize,
    intermediate: usize,
    output: String,
}

fn block_at(index: &GraphIndex<'_>, x: &str, ln1: LayerNorm, lins: Vec<Linear>, d: usize) -> Result<Block> {
    let (qkv, heads) = attention_projections(index, lins, d)?;
    let add1 = index.residual_add(x)?;
    let (ls1, dense) = scaled_branch(index, add1, x)?;
    let h = index.out(add1)?.to_string();
    let ln2 = index.layer_norm_at(&h)?;
    let fc1 = match index.linears_at(&ln2.output)?.as_slice() {
        [one] => one.clone(),
        other => return Err(index.tensor_err(&ln2.output, format!("expected one MLP fc1, found {}", other.len()))),
    };
    check_gelu(index, &fc1)?;
    let add2 = index.residual_add(&h)?;
    let (ls2, fc2) = scaled_branch(index, add2, &h)?;
    let intermediate = index.constant_shape(&fc1.weight).map(|s| s[1]).unwrap_or(0);
    let output = index.out(add2)?.to_string();
    Ok(Block { ln1, ln2, qkv, dense, ls1, fc1, fc2, ls2, heads, intermediate, output })
}

/// The residual branch `x + lambda * Linear(..)` of `add`: (lambda initializer, the Linear).
fn scaled_branch(index: &GraphIndex<'_>, add: &Node, x: &str) -> Result<(String, Linear)> {
    let branch = index.other_input(add, x)?;
    let mul = index.producer(branch).filter(|n| n.op_type == "Mul");
    let mul = mul.ok_or_else(|| index.node_err(add, "residual branch has no layer-scale Mul"))?;
    let lambda = mul.inputs.iter().find(|i| index.is_constant(i));
    let lambda = lambda.ok_or_else(|| index.node_err(mul, "layer-scale Mul has no constant operand"))?;
    let inner = index.other_input(mul, lambda)?;
    Ok((lambda.clone(), index.linear_producing(inner)?))
}

/// Sort the Linears reading norm1 into query/key/value; split a fused QKV projection.
fn attention_projections(index: &GraphIndex<'_>, lins: Vec<Linear>, d: usize) -> Result<([(Linear, usize); 3], usize)> {
    if let [fused] = lins.as_slice() {
        let shape = index.constant_shape(&fused.weight).unwrap_or_default();
        if shape != [d, 3 * d] {
            return Err(
                index.tensor_err(&fused.weight, format!("fused QKV weight is {shape:?}, expected [{d}, {}]", 3 * d))
            );
        }
        let heads = heads_after(index, &fused.output)?.filter(|&h| d % h == 0);
        let heads = heads.ok_or_else(|| index.tensor_err(&fused.output, "no head count dividing the width found"))?;
        return Ok(([(fused.clone(), 0), (fused.clone(), d), (fused.clone(), 2 * d)], heads));
    }
    if lins.len() != 3 {
        return Err(
            index.tensor_err(&lins[0].output, format!("expected 3 attention projections, found {}", lins.len()))
        );
    }
    let lins_out = lins[0].output.clone();
    let mut slots: [Option<Linear>; 3] = [None, None, None];
    let mut heads = None;
    for lin in lins {
        let role = attention_role(index, &lin)?;
        if role == 0 {
            heads = heads_after(index, &lin.output)?;
        }
        if slots[role].replace(lin.clone()).is_some() {
            return Err(index.tensor_err(&lin.weight, "two projections play the same attention role"));
        }
    }
    let heads = heads.filter(|&h| d % h == 0);
    let heads = heads.ok_or_else(|| index.tensor_err(&lins_out, "no head count dividing the width found"))?;
    let [Some(q), Some(k), Some(v)] = slots else { unreachable!("three distinct roles filled") };
    Ok(([(q, 0), (k, 0), (v, 0)], heads))
}

/// 0 = query, 1 = key, 2 = value: follow the projection to the first activation-by-activation MatMul.
fn attention_role(index: &GraphIndex<'_>, lin: &Linear) -> Result<usize> {
    let mut cur = lin.output.clone();
    for _ in 0..8 {
        let next: Vec<_> = index.consumers(&cur).filter(|n| n.op_type != "Shape").collect();
        let [n] = next.as_slice() else {
            return Err(index.tensor_err(&cur, format!("attention path forks into {} nodes", next.len())));
        };
        if n.op_type == "MatMul" && n.inputs.iter().all(|i| !index.is_constant(i)) {
            let slot = n.inputs.iter().position(|i| *i == cur).unwrap_or(0);
            let after_softmax = index.producer(&n.inputs[0]).is_some_and(|p| p.op_type == "Softmax");
            return Ok(match (slot, after_softmax) {
                (1, true) => 2,
                (1, false) => 1,
                _ => 0,
            });
        }
        cur = index.out(n)?.to_string();
    }
    Err(index.tensor_err(&lin.output, "projection never reaches an attention MatMul"))
}

/// The head count from the first Reshape after `start` ([B, N, heads, head_dim] or [B, N, 3, heads, head_dim]).
fn heads_after(index: &GraphIndex<'_>, start: &str) -> Result<Option<usize>> {
    let Some(reshape) = index.consumers_op(start, "Reshape").into_iter().next() else {
        return Ok(None);
    };
    let shape_in = reshape.inputs.get(1).ok_or_else(|| index.node_err(reshape, "Reshape without a shape input"))?;
    let dims: Vec<i64> = if index.is_constant(shape_in) {
        index.constant_i64(shape_in)?
    } else {
        let concat = index.producer(shape_in).filter(|n| n.op_type == "Concat");
        let concat = concat.ok_or_else(|| index.node_err(reshape, "shape is neither constant nor a Concat"))?;
        let mut dims = Vec::new();
        for input in &concat.inputs {
            dims.push(if index.is_constant(input) {
                index.constant_i64(input)?.first().copied().unwrap_or(-1)
            } else {
                -1
            });
        }
        dims
    };
    Ok(dims.len().checked_sub(2).and_then(|i| usize::try_from(dims[i]).ok()).filter(|&h| h > 0))
}

/// The MLP activation between fc1 and fc2 must be the exact (erf) GELU.
fn check_gelu(index: &GraphIndex<'_>, fc1: &Linear) -> Result<()> {
    let mut frontier = vec![fc1.output.clone()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for t in &frontier {
            for n in index.consumers(t) {
                if n.op_type == "Erf" || (n.op_type == "Gelu" && n.attr_str("approximate").is_none_or(|a| a == "none"))
                {
                    return Ok(());
                }
                next.extend(n.outputs.iter().cloned());
            }
        }
        frontier = next;
    }
    Err(index.tensor_err(&fc1.output, "MLP activation is not the erf GELU (unsupported)"))
}

fn emit_block(index: &GraphIndex<'_>, i: usize, b: &Block, d: usize, out: &mut Vec<(String, Tensor)>) -> Result<()> {
    let p = format!("encoder.layer.{i}");
    push_vector(index, &format!("{p}.norm1.weight"), &b.ln1.weight, d, out)?;
    push_vector(index, &format!("{p}.norm1.bias"), &b.ln1.bias, d, out)?;
    for (role, (lin, col)) in ["query", "key", "value"].iter().zip(&b.qkv) {
        let name = format!("{p}.attention.attention.{role}");
        push_linear(index, &name, lin, *col, (d, d), out)?;
    }
    push_linear(index, &format!("{p}.attention.output.dense"), &b.dense, 0, (d, d), out)?;
    push_vector(index, &format!("{p}.layer_scale1.lambda1"), &b.ls1, d, out)?;
    push_vector(index, &format!("{p}.norm2.weight"), &b.ln2.weight, d, out)?;
    push_vector(index, &format!("{p}.norm2.bias"), &b.ln2.bias, d, out)?;
    push_linear(index, &format!("{p}.mlp.fc1"), &b.fc1, 0, (d, b.intermediate), out)?;
    push_linear(index, &format!("{p}.mlp.fc2"), &b.fc2, 0, (b.intermediate, d), out)?;
    push_vector(index, &format!("{p}.layer_scale2.lambda1"), &b.ls2, d, out)
}

/// `{name}.weight` ([out, in], transposed from ONNX [in, out_total] columns `col..col+n_out`) and `{name}.bias`.
fn push_linear(
    index: &GraphIndex<'_>,
    name: &str,
    lin: &Linear,
    col: usize,
    (want_in, n_out): (usize, usize),
    out: &mut Vec<(String, Tensor)>,
) -> Result<()> {
    let (w, shape) = index.constant_f32(&lin.weight)?;
    let [n_in, total] = shape[..] else {
        return Err(index.tensor_err(&lin.weight, "MatMul weight must be 2-D"));
    };
    if n_in != want_in {
        return Err(index.tensor_err(&lin.weight, format!("shape {shape:?} for `{name}`, expected {want_in} inputs")));
    }
    if col + n_out > total {
        return Err(index.tensor_err(&lin.weight, format!("shape {shape:?} has no columns {col}..{}", col + n_out)));
    }
    let mut t = vec![0f32; n_out * n_in];
    for (o, row) in t.chunks_exact_mut(n_in).enumerate() {
        for (i, v) in row.iter_mut().enumerate() {
            *v = w[i * total + col + o];
        }
    }
    out.push((format!("{name}.weight"), Tensor::from_vec(t, &[n_out, n_in])?));
    let (b, _) = index.constant_f32(&lin.bias)?;
    if b.len() != total {
        return Err(index.tensor_err(&lin.bias, format!("bias has {} values, weight has {total} outputs", b.len())));
    }
    out.push((format!("{name}.bias"), Tensor::from_vec(b[col..col + n_out].to_vec(), &[n_out])?));
    Ok(())
}

fn push_vector(index: &GraphIndex<'_>, name: &str, src: &str, n: usize, out: &mut Vec<(String, Tensor)>) -> Result<()> {
    push_shaped(index, name, src, &[n], out)
}

/// Constant `src` stored under `name` with `shape` (any source shape with the same element count).
fn push_shaped(
    index: &GraphIndex<'_>,
    name: &str,
    src: &str,
    shape: &[usize],
    out: &mut Vec<(String, Tensor)>,
) -> Result<()> {
    let (v, src_shape) = index.constant_f32(src)?;
    let want: usize = shape.iter().product();
    if v.len() != want {
        return Err(
            index.tensor_err(src, format!("shape {src_shape:?} for `{name}`, expected {want} values {shape:?}"))
        );
    }
    out.push((name.to_string(), Tensor::from_vec(v, shape)?));
    Ok(())
}

/// Every LayerNorm must use the same epsilon (HF has one `layer_norm_eps`).
fn check_eps(index: &GraphIndex<'_>, blocks: &[Block], last: &LayerNorm) -> Result<f32> {
    let eps = last.eps;
    for ln in blocks.iter().flat_map(|b| [&b.ln1, &b.ln2]) {
        if ln.eps != eps {
            return Err(index.tensor_err(&ln.output, format!("LayerNorm epsilon {} differs from {eps}", ln.eps)));
        }
    }
    Ok(eps)
}

fn graph_input_hw(index: &GraphIndex<'_>) -> Option<(usize, usize)> {
    let input = index.graph.inputs.iter().find(|i| !index.is_constant(&i.name))?;
    match input.dims.as_deref()? {
        [_, _, Dim::Value(h), Dim::Value(w)] => Some((*h as usize, *w as usize)),
        _ => None,
    }
}

/// Convenience for callers holding a path: index the graph and map it.
pub fn map_dinov2_graph(graph: &super::onnx_proto::Graph, path: &Path) -> Result<Dinov2Weights> {
    map_dinov2(&GraphIndex::new(graph, path))
}
