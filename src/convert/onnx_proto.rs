//! A minimal reader for the protobuf wire format and the few ONNX messages a weight converter needs:
//! `ModelProto`, `GraphProto`, `NodeProto`, `AttributeProto`, `TensorProto` and the shapes of graph
//! inputs/outputs (`ValueInfoProto`). Unknown fields are skipped, so newer ONNX files still parse.
//!
//! Field numbers follow `onnx.proto`. Errors say where in the message tree decoding failed
//! (`graph.initializer[3] `name``) so the caller can name the file and the entry at fault.

use std::path::Path;

use crate::error::{Error, Result};

/// ONNX `TensorProto.DataType` codes this reader can turn into numbers.
pub mod dtype {
    pub const FLOAT: i32 = 1;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
}

/// Where and why decoding failed; `at` is a path into the message tree.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub at: String,
    pub reason: String,
}

impl DecodeError {
    fn new(reason: impl Into<String>) -> Self {
        DecodeError { at: String::new(), reason: reason.into() }
    }
    /// Prefix the location with `outer` (the enclosing field).
    fn within(mut self, outer: &str) -> Self {
        self.at = if self.at.is_empty() { outer.to_string() } else { format!("{outer}.{}", self.at) };
        self
    }
}

type DResult<T> = std::result::Result<T, DecodeError>;

/// One decoded field value of the wire format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates `(field number, value)` pairs of one message.
pub struct WireReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> WireReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        WireReader { buf, pos: 0 }
    }

    /// The next field, `None` at the end of the message.
    pub fn next_field(&mut self) -> DResult<Option<(u32, WireValue<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        if field == 0 {
            return Err(DecodeError::new(format!("field number 0 at byte {}", self.pos)));
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"))),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| DecodeError::new("length does not fit in memory"))?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"))),
            t => return Err(DecodeError::new(format!("unsupported wire type {t} for field {field}"))),
        };
        Ok(Some((field, value)))
    }

    fn take(&mut self, n: usize) -> DResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            DecodeError::new(format!("truncated: needs {n} bytes at byte {}, message has {}", self.pos, self.buf.len()))
        })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn varint(&mut self) -> DResult<u64> {
        let (v, used) =
            read_varint(&self.buf[self.pos..]).map_err(|e| DecodeError::new(format!("{e} at byte {}", self.pos)))?;
        self.pos += used;
        Ok(v)
    }
}

/// Decode one base-128 varint; returns the value and the bytes used.
pub fn read_varint(buf: &[u8]) -> std::result::Result<(u64, usize), String> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(if buf.len() < 10 { "truncated varint".to_string() } else { "varint longer than 10 bytes".to_string() })
}

/// One ONNX tensor (initializer or attribute value). Data is kept as stored: `raw` or the typed lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorProto {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: i32,
    pub raw: Vec<u8>,
    pub float_data: Vec<f32>,
    pub int32_data: Vec<i32>,
    pub int64_data: Vec<i64>,
    pub double_data: Vec<f64>,
    /// `data_location == EXTERNAL`: the values live in another file, which this reader does not follow.
    pub external: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    Str(Vec<u8>),
    Tensor(TensorProto),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    /// graphs, sparse tensors, strings lists…: not needed here
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttrValue,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute>,
}

/// One dimension of a graph input/output shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Value(i64),
    Param(String),
    Unknown,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    /// `None` when the type carries no shape
    pub dims: Option<Vec<Dim>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
    pub initializers: Vec<TensorProto>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    pub ir_version: i64,
    pub producer_name: String,
    pub graph: Graph,
}

/// Read and decode an ONNX model file; errors name the file and the entry at fault.
pub fn read_model(path: &Path) -> Result<Model> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_model(&bytes)
        .map_err(|e| Error::field(path, if e.at.is_empty() { "<model>".into() } else { e.at }, e.reason))
}

/// Decode a serialized `ModelProto`.
pub fn decode_model(buf: &[u8]) -> DResult<Model> {
    let mut model = Model::default();
    let mut has_graph = false;
    let mut r = WireReader::new(buf);
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => model.ir_version = as_varint(v, "ir_version")? as i64,
            2 => model.producer_name = as_string(v, "producer_name")?,
            7 => {
                model.graph = decode_graph(as_bytes(v, "graph")?).map_err(|e| e.within("graph"))?;
                has_graph = true;
            }
            _ => {}
        }
    }
    if !has_graph {
        return Err(DecodeError::new("no graph (not an ONNX model?)").within("graph"));
    }
    Ok(model)
}

fn decode_graph(buf: &[u8]) -> DResult<Graph> {
    let mut g = Graph::default();
    let mut r = WireReader::new(buf);
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => {
                let at = format!("node[{}]", g.nodes.len());
                g.nodes.push(decode_node(as_bytes(v, &at)?).map_err(|e| e.within(&at))?);
            }
            2 => g.name = as_string(v, "name")?,
            5 => {
                let at = format!("initializer[{}]", g.initializers.len());
                g.initializers.push(decode_tensor(as_bytes(v, &at)?).map_err(|e| e.within(&at))?);
            }
            11 | 12 => {
                let list = if field == 11 { &mut g.inputs } else { &mut g.outputs };
                let at = format!("{}[{}]", if field == 11 { "input" } else { "output" }, list.len());
                list.push(decode_value_info(as_bytes(v, &at)?).map_err(|e| e.within(&at))?);
            }
            _ => {}
        }
    }
    Ok(g)
}

fn decode_node(buf: &[u8]) -> DResult<Node> {
    let mut n = Node::default();
    let mut r = WireReader::new(buf);
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => n.inputs.push(as_string(v, "input")?),
            2 => n.outputs.push(as_string(v, "output")?),
            3 => n.name = as_string(v, "name")?,
            4 => n.op_type = as_string(v, "op_type")?,
            5 => {
                let at = format!("attribute[{}]", n.attributes.len());
                n.attributes.push(decode_attribute(as_bytes(v, &at)?).map_err(|e| e.within(&at))?);
            }
            _ => {}
        }
    }
    Ok(n)
}

fn decode_attribute(buf: &[u8]) -> DResult<Attribute> {
    let mut name = String::new();
    let (mut floats, mut ints) = (Vec::new(), Vec::new());
    let mut single: Option<AttrValue> = None;
    let mut r = WireReader::new(buf);
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => name = as_string(v, "name")?,
            2 => single = Some(AttrValue::Float(f32::from_bits(as_fixed32(v, "f")?))),
            3 => single = Some(AttrValue::Int(as_varint(v, "i")? as i64)),
            4 => single = Some(AttrValue::Str(as_bytes(v, "s")?.to_vec())),
            5 => single = Some(AttrValue::Tensor(decode_tensor(as_bytes(v, "t")?).map_err(|e| e.within("t"))?)),
            7 => push_f32s(v, &mut floats, "floats")?,
            8 => push_varints(v, &mut ints, "ints")?,
            _ => {}
        }
    }
    let value = match (single, floats.is_empty(), ints.is_empty()) {
        (Some(s), _, _) => s,
        (None, false, _) => AttrValue::Floats(floats),
        (None, true, false) => AttrValue::Ints(ints.into_iter().map(|x| x as i64).collect()),
        _ => AttrValue::Other,
    };
    Ok(Attribute { name, value })
}

/// Decode a serialized `TensorProto`.
pub fn decode_tensor(buf: &[u8]) -> DResult<TensorProto> {
    let mut t = TensorProto::default();
    let mut r = WireReader::new(buf);
    let mut i32s = Vec::new();
    let mut dims = Vec::new();
    let mut i64s = Vec::new();
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => push_varints(v, &mut dims, "dims")?,
            2 => t.data_type = as_varint(v, "data_type")? as i32,
            4 => push_f32s(v, &mut t.float_data, "float_data")?,
            5 => push_varints(v, &mut i32s, "int32_data")?,
            7 => push_varints(v, &mut i64s, "int64_data")?,
            8 => t.name = as_string(v, "name")?,
            9 => t.raw = as_bytes(v, "raw_data")?.to_vec(),
            10 => push_f64s(v, &mut t.double_data, "double_data")?,
            14 => t.external = as_varint(v, "data_location")? == 1,
            _ => {}
        }
    }
    t.dims = dims.into_iter().map(|d| d as i64).collect();
    t.int32_data = i32s.into_iter().map(|x| x as i32).collect();
    t.int64_data = i64s.into_iter().map(|x| x as i64).collect();
    Ok(t)
}

fn decode_value_info(buf: &[u8]) -> DResult<ValueInfo> {
    let mut info = ValueInfo::default();
    let mut r = WireReader::new(buf);
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => info.name = as_string(v, "name")?,
            // TypeProto.tensor_type (1) -> TypeProto.Tensor.shape (2) -> TensorShapeProto.dim (1)
            2 => info.dims = tensor_type_dims(as_bytes(v, "type")?).map_err(|e| e.within("type"))?,
            _ => {}
        }
    }
    Ok(info)
}

fn tensor_type_dims(type_proto: &[u8]) -> DResult<Option<Vec<Dim>>> {
    let Some(tensor_type) = sub_message(type_proto, 1)? else {
        return Ok(None);
    };
    let Some(shape) = sub_message(tensor_type, 2)? else {
        return Ok(None);
    };
    let mut dims = Vec::new();
    let mut r = WireReader::new(shape);
    while let Some((field, v)) = r.next_field()? {
        if field == 1 {
            dims.push(decode_dim(as_bytes(v, "dim")?)?);
        }
    }
    Ok(Some(dims))
}

fn decode_dim(buf: &[u8]) -> DResult<Dim> {
    let mut dim = Dim::Unknown;
    let mut r = WireReader::new(buf);
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => dim = Dim::Value(as_varint(v, "dim_value")? as i64),
            2 => dim = Dim::Param(as_string(v, "dim_param")?),
            _ => {}
        }
    }
    Ok(dim)
}

/// The last occurrence of length-delimited field `field` in `buf`.
fn sub_message(buf: &[u8], field: u32) -> DResult<Option<&[u8]>> {
    let mut found = None;
    let mut r = WireReader::new(buf);
    while let Some((f, v)) = r.next_field()? {
        if f == field {
            found = Some(as_bytes(v, "sub-message")?);
        }
    }
    Ok(found)
}

fn wrong_type(what: &str, v: WireValue<'_>) -> DecodeError {
    DecodeError::new(format!("`{what}` has unexpected wire value {v:?}"))
}

fn as_varint(v: WireValue<'_>, what: &str) -> DResult<u64> {
    match v {
        WireValue::Varint(x) => Ok(x),
        _ => Err(wrong_type(what, v)),
    }
}

fn as_fixed32(v: WireValue<'_>, what: &str) -> DResult<u32> {
    match v {
        WireValue::Fixed32(x) => Ok(x),
        _ => Err(wrong_type(what, v)),
    }
}

fn as_bytes<'a>(v: WireValue<'a>, what: &str) -> DResult<&'a [u8]> {
    match v {
        WireValue::Bytes(b) => Ok(b),
        _ => Err(wrong_type(what, v)),
    }
}

fn as_string(v: WireValue<'_>, what: &str) -> DResult<String> {
    String::from_utf8(as_bytes(v, what)?.to_vec()).map_err(|_| DecodeError::new(format!("`{what}` is not UTF-8")))
}

/// A repeated varint field, packed or not.
fn push_varints(v: WireValue<'_>, out: &mut Vec<u64>, what: &str) -> DResult<()> {
    match v {
        WireValue::Varint(x) => out.push(x),
        WireValue::Bytes(mut b) => {
            while !b.is_empty() {
                let (x, used) = read_varint(b).map_err(|e| DecodeError::new(format!("`{what}`: {e}")))?;
                out.push(x);
                b = &b[used..];
            }
        }
        _ => return Err(wrong_type(what, v)),
    }
    Ok(())
}

/// A repeated float field, packed or not.
fn push_f32s(v: WireValue<'_>, out: &mut Vec<f32>, what: &str) -> DResult<()> {
    match v {
        WireValue::Fixed32(x) => out.push(f32::from_bits(x)),
        WireValue::Bytes(b) if b.len() % 4 == 0 => {
            out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))))
        }
        _ => return Err(wrong_type(what, v)),
    }
    Ok(())
}

fn push_f64s(v: WireValue<'_>, out: &mut Vec<f64>, what: &str) -> DResult<()> {
    match v {
        WireValue::Fixed64(x) => out.push(f64::from_bits(x)),
        WireValue::Bytes(b) if b.len() % 8 == 0 => {
            out.extend(b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))))
        }
        _ => return Err(wrong_type(what, v)),
    }
    Ok(())
}

impl TensorProto {
    /// Element count from `dims` (1 for a scalar); `None` on a negative or overflowing dimension.
    pub fn numel(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
    }

    pub fn shape(&self) -> Option<Vec<usize>> {
        self.dims.iter().map(|&d| usize::try_from(d).ok()).collect()
    }

    /// The values as f32 (FLOAT, FLOAT16 or DOUBLE tensors), checked against `dims`.
    pub fn to_f32(&self) -> std::result::Result<Vec<f32>, String> {
        let values: Vec<f32> = match self.data_type {
            dtype::FLOAT => self.typed(&self.float_data, 4, |c| f32::from_le_bytes(c.try_into().expect("4")))?,
            dtype::DOUBLE => self
                .typed(&self.double_data, 8, |c| f64::from_le_bytes(c.try_into().expect("8")))?
                .into_iter()
                .map(|x| x as f32)
                .collect(),
            dtype::FLOAT16 => {
                let bits: Vec<i32> =
                    self.typed(&self.int32_data, 2, |c| i32::from(u16::from_le_bytes([c[0], c[1]])))?;
                bits.into_iter().map(|b| half::f16::from_bits(b as u16).to_f32()).collect()
            }
            other => return Err(format!("data type {other} is not a floating-point type")),
        };
        Ok(values)
    }

    /// The values as i64 (INT64 or INT32 tensors), checked against `dims`.
    pub fn to_i64(&self) -> std::result::Result<Vec<i64>, String> {
        match self.data_type {
            dtype::INT64 => self.typed(&self.int64_data, 8, |c| i64::from_le_bytes(c.try_into().expect("8"))),
            dtype::INT32 => Ok(self
                .typed(&self.int32_data, 4, |c| i32::from_le_bytes(c.try_into().expect("4")))?
                .into_iter()
                .map(i64::from)
                .collect()),
            other => Err(format!("data type {other} is not an integer type")),
        }
    }

    /// `raw` decoded with `decode` (`width` bytes per element) or the typed list, with the count checked.
    fn typed<T: Copy>(
        &self,
        list: &[T],
        width: usize,
        decode: impl Fn(&[u8]) -> T,
    ) -> std::result::Result<Vec<T>, String> {
        if self.external {
            return Err("data is stored in an external file, which is not supported".into());
        }
        let numel = self.numel().ok_or_else(|| format!("invalid dims {:?}", self.dims))?;
        let values: Vec<T> = if self.raw.is_empty() {
            list.to_vec()
        } else {
            let need = numel.checked_mul(width).ok_or_else(|| format!("dims {:?} overflow", self.dims))?;
            if self.raw.len() != need {
                return Err(format!("raw_data has {} bytes, dims {:?} need {need}", self.raw.len(), self.dims));
            }
            self.raw.chunks_exact(width).map(decode).collect()
        };
        if values.len() != numel {
            return Err(format!("{} values stored, dims {:?} need {numel}", values.len(), self.dims));
        }
        Ok(values)
    }
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attributes.iter().find(|a| a.name == name).map(|a| &a.value)
    }

    pub fn attr_str(&self, name: &str) -> Option<String> {
        match self.attr(name)? {
            AttrValue::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }

    pub fn attr_f32(&self, name: &str) -> Option<f32> {
        match self.attr(name)? {
            AttrValue::Float(x) => Some(*x),
            _ => None,
        }
    }

    pub fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        match self.attr(name)? {
            AttrValue::Ints(v) => Some(v),
            _ => None,
        }
    }
}
