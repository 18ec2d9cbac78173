//! The protobuf wire format: varints, fixed64 and length-delimited fields.

pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    /// A 32-bit fixed field (no served message has one; skipped).
    Fixed32,
    Bytes(&'a [u8]),
}

pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .data
                .get(self.pos)
                .ok_or("unexpected end of protobuf data")?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("protobuf varint overflows 64 bits".into())
    }

    pub fn varint_opt(&mut self) -> Result<Option<u64>, String> {
        if self.pos >= self.data.len() {
            return Ok(None);
        }
        self.varint().map(Some)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or("unexpected end of protobuf data")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next (field number, value), None at the end.
    pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, String> {
        let Some(key) = self.varint_opt()? else {
            return Ok(None);
        };
        let tag = (key >> 3) as u32;
        let v = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let n = self.varint()? as usize;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            w => return Err(format!("unsupported protobuf wire type {w}")),
        };
        Ok(Some((tag, v)))
    }
}

#[derive(Default)]
pub struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }
    pub fn varint(&mut self, tag: u32, v: u64) {
        self.raw_varint((tag as u64) << 3);
        self.raw_varint(v);
    }
    pub fn fixed64(&mut self, tag: u32, v: u64) {
        self.raw_varint(((tag as u64) << 3) | 1);
        self.out.extend(v.to_le_bytes());
    }
    pub fn bytes(&mut self, tag: u32, b: &[u8]) {
        self.raw_varint(((tag as u64) << 3) | 2);
        self.raw_varint(b.len() as u64);
        self.out.extend_from_slice(b);
    }
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}
