//! A small, bounded reader for the subset of Python's pickle format that numpy arrays use.
//!
//! The MNIST package ships `mnist.pkl.gz`: a protocol-2 pickle of three (images, labels) pairs of numpy
//! arrays, each array's bytes stored raw. Rather than make Python a run-time dependency, this module runs
//! the pickle opcodes on a tiny stack machine that knows only plain values (ints, bools, strings, byte
//! blobs, tuples, lists) and records `GLOBAL`/`REDUCE`/`BUILD` as inert data: nothing is ever called, so
//! a hostile file can at worst be rejected. Byte blobs are kept as ranges into the input, never copied.
//! Unknown opcodes, truncation, and stack or memo misuse are errors with the byte offset.

use std::ops::Range;

/// A decoded pickle value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A text or byte string, as a range of the input buffer.
    Bytes(Range<usize>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// `module.name`, as pushed by GLOBAL.
    Global(String, String),
    /// callable(args), recorded, not called.
    Reduce(Box<Value>, Box<Value>),
    /// object.__setstate__(state), recorded, not called.
    Build(Box<Value>, Box<Value>),
}

#[derive(Debug, PartialEq)]
pub struct PickleError {
    pub offset: usize,
    pub detail: String,
}

/// Deepest nesting of marks the reader accepts (numpy pickles use 2).
const MAX_MARKS: usize = 64;
/// Largest memo index accepted (numpy pickles use a few dozen).
const MAX_MEMO: usize = 1 << 16;

enum Slot {
    Value(Value),
    Mark,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, detail: impl Into<String>) -> PickleError {
        PickleError { offset: self.pos, detail: detail.into() }
    }
    fn take(&mut self, n: usize) -> Result<Range<usize>, PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| self.err("truncated"))?;
        let r = self.pos..end;
        self.pos = end;
        Ok(r)
    }
    fn u8(&mut self) -> Result<u8, PickleError> {
        let r = self.take(1)?;
        Ok(self.buf[r.start])
    }
    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let r = self.take(N)?;
        Ok(self.buf[r].try_into().expect("N bytes"))
    }
    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.buf[self.pos..];
        let n = rest.iter().take(256).position(|&b| b == b'\n').ok_or_else(|| self.err("unterminated name"))?;
        let r = self.take(n + 1)?;
        String::from_utf8(self.buf[r.start..r.end - 1].to_vec()).map_err(|_| self.err("name is not UTF-8"))
    }
}

/// Decodes one pickle from `buf`.
pub fn parse(buf: &[u8]) -> Result<Value, PickleError> {
    let mut r = Reader { buf, pos: 0 };
    let mut stack: Vec<Slot> = Vec::new();
    let mut memo: Vec<Option<Value>> = Vec::new();
    let mut marks = 0usize;

    fn pop(stack: &mut Vec<Slot>, r: &Reader) -> Result<Value, PickleError> {
        match stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            _ => Err(r.err("stack underflow")),
        }
    }
    fn pop_to_mark(stack: &mut Vec<Slot>, r: &Reader) -> Result<Vec<Value>, PickleError> {
        let at = stack.iter().rposition(|s| matches!(s, Slot::Mark)).ok_or_else(|| r.err("no mark"))?;
        let items = stack.split_off(at + 1);
        stack.pop();
        Ok(items.into_iter().map(|s| if let Slot::Value(v) = s { v } else { unreachable!() }).collect())
    }

    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                let proto = r.u8()?;
                if proto > 5 {
                    return Err(r.err(format!("unsupported protocol {proto}")));
                }
            }
            b'.' => return pop(&mut stack, &r),
            b'(' => {
                marks += 1;
                if marks > MAX_MARKS {
                    return Err(r.err("marks nested too deeply"));
                }
                stack.push(Slot::Mark);
            }
            b'N' => stack.push(Slot::Value(Value::None)),
            0x88 => stack.push(Slot::Value(Value::Bool(true))),
            0x89 => stack.push(Slot::Value(Value::Bool(false))),
            b'K' => {
                let v = r.u8()?;
                stack.push(Slot::Value(Value::Int(v as i64)))
            }
            b'M' => {
                let v = u16::from_le_bytes(r.le()?);
                stack.push(Slot::Value(Value::Int(v as i64)))
            }
            b'J' => {
                let v = i32::from_le_bytes(r.le()?);
                stack.push(Slot::Value(Value::Int(v as i64)))
            }
            // SHORT_BINSTRING, SHORT_BINBYTES, SHORT_BINUNICODE
            b'U' | b'C' | 0x8c => {
                let n = r.u8()? as usize;
                let range = r.take(n)?;
                stack.push(Slot::Value(Value::Bytes(range)))
            }
            // BINSTRING, BINBYTES, BINUNICODE
            b'T' | b'B' | b'X' => {
                let n = u32::from_le_bytes(r.le()?) as usize;
                let range = r.take(n)?;
                stack.push(Slot::Value(Value::Bytes(range)))
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Slot::Value(Value::Global(module, name)))
            }
            b')' => stack.push(Slot::Value(Value::Tuple(Vec::new()))),
            b']' => stack.push(Slot::Value(Value::List(Vec::new()))),
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err(r.err("stack underflow"));
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(pop(&mut stack, &r)?);
                }
                items.reverse();
                stack.push(Slot::Value(Value::Tuple(items)))
            }
            b't' => {
                let items = pop_to_mark(&mut stack, &r)?;
                marks -= 1;
                stack.push(Slot::Value(Value::Tuple(items)))
            }
            b'a' => {
                let v = pop(&mut stack, &r)?;
                match stack.last_mut() {
                    Some(Slot::Value(Value::List(l))) => l.push(v),
                    _ => return Err(r.err("APPEND to a non-list")),
                }
            }
            b'e' => {
                let items = pop_to_mark(&mut stack, &r)?;
                marks -= 1;
                match stack.last_mut() {
                    Some(Slot::Value(Value::List(l))) => l.extend(items),
                    _ => return Err(r.err("APPENDS to a non-list")),
                }
            }
            b'R' => {
                let args = pop(&mut stack, &r)?;
                let f = pop(&mut stack, &r)?;
                stack.push(Slot::Value(Value::Reduce(Box::new(f), Box::new(args))))
            }
            b'b' => {
                let state = pop(&mut stack, &r)?;
                let obj = pop(&mut stack, &r)?;
                stack.push(Slot::Value(Value::Build(Box::new(obj), Box::new(state))))
            }
            b'q' | b'r' => {
                let idx = if op == b'q' { r.u8()? as usize } else { u32::from_le_bytes(r.le()?) as usize };
                if idx >= MAX_MEMO {
                    return Err(r.err("memo index too large"));
                }
                let v = match stack.last() {
                    Some(Slot::Value(v)) => v.clone(),
                    _ => return Err(r.err("PUT with an empty stack")),
                };
                if memo.len() <= idx {
                    memo.resize(idx + 1, None);
                }
                memo[idx] = Some(v);
            }
            b'h' | b'j' => {
                let idx = if op == b'h' { r.u8()? as usize } else { u32::from_le_bytes(r.le()?) as usize };
                let v = memo.get(idx).cloned().flatten().ok_or_else(|| r.err(format!("GET of unset memo {idx}")))?;
                stack.push(Slot::Value(v))
            }
            other => {
                r.pos -= 1;
                return Err(r.err(format!("unsupported opcode 0x{other:02x}")));
            }
        }
    }
}

/// A numpy array found in a pickle: its shape, dtype code (e.g. `f4`, `i8`) and raw little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray {
    pub shape: Vec<usize>,
    pub dtype: String,
    pub data: Range<usize>,
}

fn as_bytes<'a>(v: &Value, buf: &'a [u8]) -> Option<&'a [u8]> {
    match v {
        Value::Bytes(r) => Some(&buf[r.clone()]),
        _ => None,
    }
}

/// Interprets `v` as a numpy array pickled by `numpy.core.multiarray._reconstruct`.
pub fn ndarray(v: &Value, buf: &[u8]) -> Result<NdArray, String> {
    let Value::Build(obj, state) = v else { return Err("not a numpy array (no BUILD)".into()) };
    let Value::Reduce(f, _) = obj.as_ref() else { return Err("not a numpy array (no REDUCE)".into()) };
    if !matches!(f.as_ref(), Value::Global(m, n) if m.starts_with("numpy") && n == "_reconstruct") {
        return Err("not a numpy array (unexpected constructor)".into());
    }
    let Value::Tuple(s) = state.as_ref() else { return Err("array state is not a tuple".into()) };
    let [_, Value::Tuple(shape), dtype, Value::Bool(fortran), data] = s.as_slice() else {
        return Err("array state has an unexpected form".into());
    };
    if *fortran {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape = shape
        .iter()
        .map(|d| match d {
            Value::Int(n) if *n >= 0 => Ok(*n as usize),
            _ => Err("shape entry is not a non-negative int".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    // dtype = BUILD(REDUCE(numpy.dtype, (code, 0, 1)), (3, byteorder, ...)). Pickle memoises the dtype
    // before BUILD mutates it, and this reader has value semantics, so a later reference (BINGET) yields
    // the bare REDUCE: the byte order was checked where the dtype first appeared.
    let (dobj, dstate) = match dtype {
        Value::Build(obj, state) => (obj.as_ref(), Some(state.as_ref())),
        reduce @ Value::Reduce(..) => (reduce, None),
        _ => return Err("dtype has an unexpected form".into()),
    };
    let Value::Reduce(_, dargs) = dobj else { return Err("dtype has an unexpected form".into()) };
    let Value::Tuple(dargs) = dargs.as_ref() else { return Err("dtype arguments are not a tuple".into()) };
    let code = dargs.first().and_then(|c| as_bytes(c, buf)).ok_or("dtype code missing")?;
    let code = String::from_utf8_lossy(code).into_owned();
    if let Some(Value::Tuple(ds)) = dstate
        && ds.get(1).and_then(|o| as_bytes(o, buf)) == Some(b">")
    {
        return Err("big-endian arrays are not supported".into());
    }
    let Value::Bytes(range) = data else { return Err("array data is not a byte string".into()) };
    let item = match code.as_str() {
        "f4" | "i4" | "u4" => 4,
        "f8" | "i8" | "u8" => 8,
        "u1" | "i1" | "b1" => 1,
        other => return Err(format!("unsupported dtype {other}")),
    };
    let count: usize = shape.iter().product();
    if count.checked_mul(item) != Some(range.len()) {
        return Err(format!("shape {shape:?} of {code} needs {} bytes, data has {}", count * item, range.len()));
    }
    Ok(NdArray { shape, dtype: code, data: range.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds the pickle numpy writes for a 1-D or 2-D array (protocol 2), as in the MNIST file.
    pub fn array_pickle(out: &mut Vec<u8>, shape: &[u16], code: &str, data: &[u8]) {
        out.extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\n");
        out.extend_from_slice(b"cnumpy\nndarray\n");
        out.extend_from_slice(&[b'K', 0, 0x85, b'U', 1, b'b', 0x87, b'R']);
        out.extend_from_slice(&[b'(', b'K', 1]);
        for &d in shape {
            out.push(b'M');
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.push(0x84 + shape.len() as u8);
        out.extend_from_slice(b"cnumpy\ndtype\n");
        out.extend_from_slice(&[b'U', 2]);
        out.extend_from_slice(code.as_bytes());
        out.extend_from_slice(&[b'K', 0, b'K', 1, 0x87, b'R']);
        out.extend_from_slice(&[b'(', b'K', 3, b'U', 1, b'<', b'N', b'N', b'N', b'J']);
        out.extend_from_slice(&(-1i32).to_le_bytes());
        out.push(b'J');
        out.extend_from_slice(&(-1i32).to_le_bytes());
        out.extend_from_slice(&[b'K', 0, b't', b'b', 0x89, b'T']);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"tb");
    }

    #[test]
    fn reads_a_numpy_array_pair() {
        let mut p = vec![0x80, 2];
        let images: Vec<u8> = (0..6u32).flat_map(|i| (i as f32 / 256.0).to_le_bytes()).collect();
        let labels: Vec<u8> = [3i64, 7].iter().flat_map(|l| l.to_le_bytes()).collect();
        array_pickle(&mut p, &[2, 3], "f4", &images);
        array_pickle(&mut p, &[2], "i8", &labels);
        p.extend_from_slice(&[0x86, b'.']);
        let v = parse(&p).unwrap();
        let Value::Tuple(items) = v else { panic!("not a tuple") };
        let x = ndarray(&items[0], &p).unwrap();
        assert_eq!((x.shape.as_slice(), x.dtype.as_str()), (&[2usize, 3][..], "f4"));
        assert_eq!(&p[x.data.clone()], &images[..]);
        let y = ndarray(&items[1], &p).unwrap();
        assert_eq!((y.shape.as_slice(), y.dtype.as_str()), (&[2usize][..], "i8"));
    }

    #[test]
    fn truncation_and_garbage_are_errors_not_panics() {
        let mut p = vec![0x80, 2];
        array_pickle(&mut p, &[4], "f4", &[0u8; 16]);
        p.push(b'.');
        for cut in 0..p.len() - 1 {
            assert!(parse(&p[..cut]).is_err(), "prefix of {cut} bytes accepted");
        }
        assert!(parse(&[0x80, 2, 0xff]).unwrap_err().detail.contains("opcode 0xff"));
        assert!(parse(b"t.").is_err());
        assert!(parse(b"h\x05.").is_err());
        // Declared data length beyond the buffer.
        assert!(parse(&[b'T', 0xff, 0xff, 0xff, 0x7f]).is_err());
    }

    proptest::proptest! {
        /// Random and mutated pickles never panic the reader or the array interpreter.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), at in 0usize..400, value in proptest::prelude::any::<u8>()) {
            if let Ok(v) = parse(&bytes) {
                let _ = ndarray(&v, &bytes);
            }
            let mut p = vec![0x80, 2];
            array_pickle(&mut p, &[3, 2], "f4", &[0u8; 24]);
            p.push(b'.');
            let i = at % p.len();
            p[i] = value;
            if let Ok(v) = parse(&p) {
                let _ = ndarray(&v, &p);
            }
        }
    }

    #[test]
    fn shape_and_data_must_agree() {
        let mut p = vec![0x80, 2];
        array_pickle(&mut p, &[5], "f4", &[0u8; 16]);
        p.push(b'.');
        let v = parse(&p).unwrap();
        assert!(ndarray(&v, &p).unwrap_err().contains("needs 20 bytes"));
    }
}
