//! Test-side protobuf writer and a builder for tiny ONNX graphs, written independently of the crate's reader
//! (field numbers from onnx.proto). Used to make small DINOv2-shaped models without any download.
#![allow(dead_code)]

/// One protobuf message being encoded.
#[derive(Default, Clone)]
pub struct Msg(pub Vec<u8>);

pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

impl Msg {
    pub fn new() -> Msg {
        Msg(Vec::new())
    }
    fn key(&mut self, field: u32, wire: u8) {
        varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire));
    }
    pub fn int(mut self, field: u32, v: i64) -> Msg {
        self.key(field, 0);
        varint(&mut self.0, v as u64);
        self
    }
    pub fn bytes(mut self, field: u32, b: &[u8]) -> Msg {
        self.key(field, 2);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    pub fn string(self, field: u32, s: &str) -> Msg {
        self.bytes(field, s.as_bytes())
    }
    pub fn msg(self, field: u32, m: Msg) -> Msg {
        self.bytes(field, &m.0)
    }
    pub fn float(mut self, field: u32, v: f32) -> Msg {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
}

/// TensorProto with float values in raw_data.
pub fn tensor_f32(name: &str, dims: &[usize], values: &[f32]) -> Msg {
    assert_eq!(dims.iter().product::<usize>(), values.len(), "test tensor {name}");
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut m = Msg::new();
    for &d in dims {
        m = m.int(1, d as i64);
    }
    m.int(2, 1).string(8, name).bytes(9, &raw)
}

/// TensorProto with int64 values in int64_data (not packed).
pub fn tensor_i64(name: &str, dims: &[usize], values: &[i64]) -> Msg {
    let mut m = Msg::new();
    for &d in dims {
        m = m.int(1, d as i64);
    }
    m = m.int(2, 7);
    for &v in values {
        m = m.int(7, v);
    }
    m.string(8, name)
}

pub enum Attr {
    Int(i64),
    Float(f32),
    Str(&'static str),
    Ints(Vec<i64>),
    Tensor(Msg),
}

fn attribute(name: &str, a: Attr) -> Msg {
    let m = Msg::new().string(1, name);
    match a {
        Attr::Float(f) => m.float(2, f).int(20, 1),
        Attr::Int(i) => m.int(3, i).int(20, 2),
        Attr::Str(s) => m.string(4, s).int(20, 3),
        Attr::Tensor(t) => m.msg(5, t).int(20, 4),
        Attr::Ints(v) => v.into_iter().fold(m, |m, x| m.int(8, x)).int(20, 7),
    }
}

/// Deterministic values in [-1, 1) (xorshift), distinct per seed.
pub fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A graph under construction; tensor names are generated.
#[derive(Default)]
pub struct Builder {
    nodes: Vec<Msg>,
    inits: Vec<Msg>,
    inputs: Vec<Msg>,
    outputs: Vec<Msg>,
    count: usize,
    seed: u64,
    /// every initializer added with `weight`: name -> (dims, values), for the test's expectations
    pub weights: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Builder {
    fn fresh(&mut self, prefix: &str) -> String {
        self.count += 1;
        format!("{prefix}_{}", self.count)
    }

    /// Graph input with a symbolic batch and fixed other dims.
    pub fn input(&mut self, name: &str, dims: &[usize]) -> String {
        let mut shape = Msg::new().msg(1, Msg::new().string(2, "batch"));
        for &d in &dims[1..] {
            shape = shape.msg(1, Msg::new().int(1, d as i64));
        }
        let tensor_type = Msg::new().int(1, 1).msg(2, shape);
        self.inputs.push(Msg::new().string(1, name).msg(2, Msg::new().msg(1, tensor_type)));
        name.to_string()
    }

    pub fn output(&mut self, name: &str) {
        self.outputs.push(Msg::new().string(1, name));
    }

    /// An anonymous float initializer with fresh deterministic values.
    pub fn weight(&mut self, dims: &[usize]) -> String {
        let name = self.fresh("onnx::W");
        self.seed += 1;
        let v = values(self.seed, dims.iter().product());
        self.inits.push(tensor_f32(&name, dims, &v));
        self.weights.insert(name.clone(), (dims.to_vec(), v));
        name
    }

    pub fn weight_values(&mut self, dims: &[usize], v: Vec<f32>) -> String {
        let name = self.fresh("onnx::W");
        self.inits.push(tensor_f32(&name, dims, &v));
        self.weights.insert(name.clone(), (dims.to_vec(), v));
        name
    }

    pub fn raw_init(&mut self, t: Msg) {
        self.inits.push(t);
    }

    /// A scalar float from a Constant node.
    pub fn scalar(&mut self, v: f32) -> String {
        self.node("Constant", &[], vec![("value", Attr::Tensor(tensor_f32("", &[], &[v])))])
    }

    /// An int64 vector from a Constant node.
    pub fn ints(&mut self, v: &[i64]) -> String {
        self.node("Constant", &[], vec![("value", Attr::Tensor(tensor_i64("", &[v.len()], v)))])
    }

    /// Add a node with one output; returns the output name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(&format!("/{op}_output"));
        let mut m = Msg::new();
        for i in inputs {
            m = m.string(1, i);
        }
        m = m.string(2, &out).string(3, &format!("/{op}_{}", self.count)).string(4, op);
        for (name, a) in attrs {
            m = m.msg(5, attribute(name, a));
        }
        self.nodes.push(m);
        out
    }

    /// Serialized ModelProto.
    pub fn finish(self) -> Vec<u8> {
        let mut g = Msg::new();
        for n in self.nodes {
            g = g.msg(1, n);
        }
        g = g.string(2, "tiny");
        for t in self.inits {
            g = g.msg(5, t);
        }
        for i in self.inputs {
            g = g.msg(11, i);
        }
        for o in self.outputs {
            g = g.msg(12, o);
        }
        let opset = Msg::new().string(1, "").int(2, 14);
        Msg::new().int(1, 7).string(2, "cpeal-test").msg(7, g).msg(8, opset).0
    }
}
