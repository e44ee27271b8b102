//! A model's parameters as named, shaped slices of one flat, aligned buffer.
//!
//! The parameter server shards it, aggregation rules fold whole buffers, the store maps it to a file and
//! the federated master ships only the slots whose names start with `encoder.`: all of them address
//! parameters through this one table. Every slot starts on a 64-byte boundary.

use crate::EngineError;
use crate::aligned::LINE_FLOATS;

/// One named tensor inside the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub shape: Vec<usize>,
    /// Offset in floats from the start of the buffer (a multiple of 16).
    pub offset: usize,
    /// Number of floats (the product of `shape`).
    pub len: usize,
}

impl Slot {
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamLayout {
    slots: Vec<Slot>,
    total: usize,
}

impl ParamLayout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a slot and returns its index.
    pub fn push(&mut self, name: impl Into<String>, shape: &[usize]) -> Result<usize, EngineError> {
        let name = name.into();
        if self.slots.iter().any(|s| s.name == name) {
            return Err(EngineError::DuplicateSlot(name));
        }
        let len = shape.iter().product();
        let offset = self.total.div_ceil(LINE_FLOATS) * LINE_FLOATS;
        self.slots.push(Slot { name, shape: shape.to_vec(), offset, len });
        self.total = offset + len;
        Ok(self.slots.len() - 1)
    }

    /// Floats the buffer must hold (including alignment padding between slots).
    pub fn total_len(&self) -> usize {
        self.total
    }

    /// Floats that are real parameters (excluding padding).
    pub fn param_count(&self) -> usize {
        self.slots.iter().map(|s| s.len).sum()
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn slot(&self, index: usize) -> &Slot {
        &self.slots[index]
    }

    pub fn find(&self, name: &str) -> Result<&Slot, EngineError> {
        self.slots.iter().find(|s| s.name == name).ok_or_else(|| EngineError::UnknownSlot(name.to_string()))
    }

    /// The slots whose names start with `prefix` (e.g. `encoder.`).
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Slot> + 'a {
        self.slots.iter().filter(move |s| s.name.starts_with(prefix))
    }

    pub fn view<'b>(&self, buf: &'b [f32], index: usize) -> &'b [f32] {
        &buf[self.slots[index].range()]
    }

    pub fn view_mut<'b>(&self, buf: &'b mut [f32], index: usize) -> &'b mut [f32] {
        &mut buf[self.slots[index].range()]
    }
}
