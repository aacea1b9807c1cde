//! Indexes over an ONNX graph (who produces and who consumes each tensor, constants by name) and the small
//! pattern matchers the DINOv2 mapping is written with: LayerNorm, Linear (MatMul + bias Add), residual Add.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::onnx_proto::{AttrValue, Graph, Node, TensorProto};
use crate::error::{Error, Result};

pub struct GraphIndex<'g> {
    pub graph: &'g Graph,
    path: PathBuf,
    producer: HashMap<&'g str, usize>,
    consumers: HashMap<&'g str, Vec<usize>>,
    constants: HashMap<&'g str, &'g TensorProto>,
}

/// A LayerNorm found in the graph, either as one `LayerNormalization` node or as the decomposed
/// ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add chain that exporters emit.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: String,
    pub bias: String,
    pub eps: f32,
    pub output: String,
}

/// `y = x @ W + b` with `W` an initializer of shape [in, out].
#[derive(Debug, Clone)]
pub struct Linear {
    pub node: String,
    pub weight: String,
    pub bias: String,
    pub output: String,
}

impl<'g> GraphIndex<'g> {
    pub fn new(graph: &'g Graph, path: &Path) -> GraphIndex<'g> {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut constants: HashMap<&str, &TensorProto> = HashMap::new();
        for t in &graph.initializers {
            constants.insert(t.name.as_str(), t);
        }
        for (i, node) in graph.nodes.iter().enumerate() {
            for out in &node.outputs {
                producer.insert(out.as_str(), i);
            }
            for input in node.inputs.iter().filter(|s| !s.is_empty()) {
                consumers.entry(input.as_str()).or_default().push(i);
            }
            if node.op_type == "Constant" {
                if let (Some(AttrValue::Tensor(t)), Some(out)) = (node.attr("value"), node.outputs.first()) {
                    constants.insert(out.as_str(), t);
                }
            }
        }
        GraphIndex { graph, path: path.to_path_buf(), producer, consumers, constants }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An error about `node` (named, with its op type).
    pub fn node_err(&self, node: &Node, reason: impl Into<String>) -> Error {
        Error::field(&self.path, format!("node `{}` ({})", node.name, node.op_type), reason)
    }

    /// An error about tensor `name` of the graph.
    pub fn tensor_err(&self, name: &str, reason: impl Into<String>) -> Error {
        Error::tensor(&self.path, name, reason)
    }

    pub fn constant(&self, name: &str) -> Option<&'g TensorProto> {
        self.constants.get(name).copied()
    }

    pub fn is_constant(&self, name: &str) -> bool {
        self.constants.contains_key(name)
    }

    /// Constant `name` as f32 values with its shape.
    pub fn constant_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let t = self.constant(name).ok_or_else(|| self.tensor_err(name, "expected a constant (initializer)"))?;
        let shape = t.shape().ok_or_else(|| self.tensor_err(name, format!("invalid dims {:?}", t.dims)))?;
        let values = t.to_f32().map_err(|e| self.tensor_err(name, e))?;
        Ok((values, shape))
    }

    pub fn constant_i64(&self, name: &str) -> Result<Vec<i64>> {
        let t = self.constant(name).ok_or_else(|| self.tensor_err(name, "expected a constant"))?;
        t.to_i64().map_err(|e| self.tensor_err(name, e))
    }

    pub fn constant_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.constant(name)?.shape()
    }

    pub fn producer(&self, tensor: &str) -> Option<&'g Node> {
        self.producer.get(tensor).map(|&i| &self.graph.nodes[i])
    }

    pub fn consumers(&self, tensor: &str) -> impl Iterator<Item = &'g Node> + '_ {
        let graph = self.graph;
        self.consumers.get(tensor).into_iter().flatten().map(move |&i| &graph.nodes[i])
    }

    /// The consumers of `tensor` with op `op`.
    pub fn consumers_op(&self, tensor: &str, op: &str) -> Vec<&'g Node> {
        self.consumers(tensor).filter(|n| n.op_type == op).collect()
    }

    /// The only consumer of `tensor` with op `op`; `what` names the pattern for the error.
    pub fn one_consumer(&self, tensor: &str, op: &str, what: &str) -> Result<&'g Node> {
        let found = self.consumers_op(tensor, op);
        match found.as_slice() {
            [one] => Ok(one),
            _ => Err(self.tensor_err(tensor, format!("{what}: expected one {op} consumer, found {}", found.len()))),
        }
    }

    /// The input of a two-input `node` that is not `known`.
    pub fn other_input<'n>(&self, node: &'n Node, known: &str) -> Result<&'n str> {
        match node.inputs.as_slice() {
            [a, b] if a == known => Ok(b),
            [a, b] if b == known => Ok(a),
            _ => Err(self.node_err(node, format!("expected two inputs, one of them `{known}`"))),
        }
    }

    /// The constant input of a two-input `node` whose other input is `known`.
    pub fn constant_operand<'n>(&self, node: &'n Node, known: &str) -> Result<&'n str> {
        let other = self.other_input(node, known)?;
        if self.is_constant(other) {
            Ok(other)
        } else {
            Err(self.node_err(node, format!("expected a constant operand, `{other}` is computed")))
        }
    }

    /// First output of `node`.
    pub fn out<'n>(&self, node: &'n Node) -> Result<&'n str> {
        node.outputs.first().map(String::as_str).ok_or_else(|| self.node_err(node, "node has no output"))
    }

    /// The LayerNorm applied to `x`.
    pub fn layer_norm_at(&self, x: &str) -> Result<LayerNorm> {
        if let [ln] = self.consumers_op(x, "LayerNormalization").as_slice() {
            return self.fused_layer_norm(ln);
        }
        let mean = self.one_consumer(x, "ReduceMean", "LayerNorm mean")?;
        let mean_out = self.out(mean)?;
        let sub = self
            .consumers_op(x, "Sub")
            .into_iter()
            .find(|n| n.inputs.len() == 2 && n.inputs[1] == mean_out)
            .ok_or_else(|| self.tensor_err(x, "LayerNorm: no Sub(x, mean)"))?;
        let centered = self.out(sub)?;
        let pow = self.one_consumer(centered, "Pow", "LayerNorm variance")?;
        let var = self.one_consumer(self.out(pow)?, "ReduceMean", "LayerNorm variance")?;
        let add_eps = self.one_consumer(self.out(var)?, "Add", "LayerNorm epsilon")?;
        let eps_name = self.constant_operand(add_eps, self.out(var)?)?;
        let eps = self.scalar(eps_name)?;
        let sqrt = self.one_consumer(self.out(add_eps)?, "Sqrt", "LayerNorm std")?;
        let div = self.one_consumer(self.out(sqrt)?, "Div", "LayerNorm normalize")?;
        let mul = self.one_consumer(self.out(div)?, "Mul", "LayerNorm scale")?;
        let weight = self.constant_operand(mul, self.out(div)?)?;
        let add = self.one_consumer(self.out(mul)?, "Add", "LayerNorm shift")?;
        let bias = self.constant_operand(add, self.out(mul)?)?;
        Ok(LayerNorm { weight: weight.into(), bias: bias.into(), eps, output: self.out(add)?.into() })
    }

    fn fused_layer_norm(&self, ln: &Node) -> Result<LayerNorm> {
        let [_, weight, bias] = ln.inputs.as_slice() else {
            return Err(self.node_err(ln, "expected inputs (x, scale, bias)"));
        };
        Ok(LayerNorm {
            weight: weight.clone(),
            bias: bias.clone(),
            eps: ln.attr_f32("epsilon").unwrap_or(1e-5),
            output: self.out(ln)?.into(),
        })
    }

    /// A one-element float constant.
    pub fn scalar(&self, name: &str) -> Result<f32> {
        match self.constant_f32(name)?.0.as_slice() {
            [x] => Ok(*x),
            other => Err(self.tensor_err(name, format!("expected one value, found {}", other.len()))),
        }
    }

    /// Every `x @ W + b` that reads `x` directly.
    pub fn linears_at(&self, x: &str) -> Result<Vec<Linear>> {
        let mut found = Vec::new();
        for mm in self.consumers_op(x, "MatMul") {
            if mm.inputs.len() == 2 && mm.inputs[0] == x && self.is_constant(&mm.inputs[1]) {
                found.push(self.linear_from_matmul(mm)?);
            }
        }
        Ok(found)
    }

    /// The Linear whose bias Add produces `y`.
    pub fn linear_producing(&self, y: &str) -> Result<Linear> {
        let add = self.producer(y).filter(|n| n.op_type == "Add");
        let add = add.ok_or_else(|| self.tensor_err(y, "expected the bias Add of a Linear"))?;
        let mm = add
            .inputs
            .iter()
            .filter_map(|i| self.producer(i))
            .find(|n| n.op_type == "MatMul")
            .ok_or_else(|| self.node_err(add, "expected a MatMul operand"))?;
        self.linear_from_matmul(mm)
    }

    fn linear_from_matmul(&self, mm: &Node) -> Result<Linear> {
        let weight = mm.inputs.get(1).filter(|w| self.is_constant(w));
        let weight = weight.ok_or_else(|| self.node_err(mm, "expected a constant weight as second input"))?;
        if self.constant_shape(weight).map(|s| s.len()) != Some(2) {
            return Err(self.tensor_err(weight, "MatMul weight must be 2-D"));
        }
        let mm_out = self.out(mm)?;
        let add = self.one_consumer(mm_out, "Add", "Linear bias")?;
        let bias = self.constant_operand(add, mm_out)?;
        Ok(Linear { node: mm.name.clone(), weight: weight.clone(), bias: bias.into(), output: self.out(add)?.into() })
    }

    /// The residual `Add` that reads `x` and a computed branch.
    pub fn residual_add(&self, x: &str) -> Result<&'g Node> {
        let adds: Vec<_> =
            self.consumers_op(x, "Add").into_iter().filter(|n| n.inputs.iter().all(|i| !self.is_constant(i))).collect();
        match adds.as_slice() {
            [one] => Ok(one),
            _ => Err(self.tensor_err(x, format!("expected one residual Add reading it, found {}", adds.len()))),
        }
    }
}
