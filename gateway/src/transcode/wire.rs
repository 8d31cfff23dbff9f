//! Reading the protobuf wire format from a byte slice, field by field, without building a message.

/// Why bytes are not a well-formed encoding of the expected message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf: {0}")]
pub struct WireError(pub &'static str);

/// One field's value as it lies on the wire.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 5.
    Fixed32(u32),
    /// Wire type 2: bytes, a string, a message or a packed list.
    Delimited(&'a [u8]),
    /// Wire types 3 and 4: a group's encoded fields, without its end tag.
    Group(&'a [u8]),
}

/// Reads fields one after another from an encoded message.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over one encoded message.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The next field's number and value, or `None` at the end.
    pub fn field(&mut self) -> Result<Option<(u32, Raw<'a>)>, WireError> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let (number, wire_type) = self.tag()?;
        let raw = match wire_type {
            3 => Raw::Group(self.group(number)?),
            4 => return Err(WireError("an end-group tag without its start")),
            _ => self.value(wire_type)?,
        };
        Ok(Some((number, raw)))
    }

    /// A varint (wire type 0).
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for (at, byte) in self.bytes.iter().take(10).enumerate() {
            let bits = u64::from(byte & 0x7f);
            if at == 9 && *byte > 1 {
                return Err(WireError("a varint longer than 64 bits"));
            }
            value |= bits << (7 * at);
            if byte & 0x80 == 0 {
                self.bytes = &self.bytes[at + 1..];
                return Ok(value);
            }
        }
        Err(WireError(if self.bytes.len() < 10 {
            "a truncated varint"
        } else {
            "a varint longer than 10 bytes"
        }))
    }

    /// Four little-endian bytes (wire type 5).
    pub fn fixed32(&mut self) -> Result<u32, WireError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("four bytes")))
    }

    /// Eight little-endian bytes (wire type 1).
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("eight bytes")))
    }

    fn tag(&mut self) -> Result<(u32, u8), WireError> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError("a field number too large"))?;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(WireError("a field number out of range"));
        }
        Ok((number, (key & 7) as u8))
    }

    fn value(&mut self, wire_type: u8) -> Result<Raw<'a>, WireError> {
        Ok(match wire_type {
            0 => Raw::Varint(self.varint()?),
            1 => Raw::Fixed64(self.fixed64()?),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| WireError("a length too large"))?;
                Raw::Delimited(self.take(len)?)
            }
            5 => Raw::Fixed32(self.fixed32()?),
            _ => return Err(WireError("an unknown wire type")),
        })
    }

    /// The fields of a group up to its end tag, which is consumed. Nested groups are skipped
    /// through, with their depth bounded.
    fn group(&mut self, number: u32) -> Result<&'a [u8], WireError> {
        let start = self.bytes;
        let mut open: Vec<u32> = vec![number];
        loop {
            let before = self.bytes.len();
            if self.bytes.is_empty() {
                return Err(WireError("a group without its end tag"));
            }
            let (inner, wire_type) = self.tag()?;
            match wire_type {
                3 => {
                    if open.len() >= MAX_GROUP_DEPTH {
                        return Err(WireError("groups nested too deep"));
                    }
                    open.push(inner);
                }
                4 => {
                    if open.pop() != Some(inner) {
                        return Err(WireError("an end-group tag that does not match"));
                    }
                    if open.is_empty() {
                        let consumed = start.len() - before;
                        return Ok(&start[..consumed]);
                    }
                }
                _ => {
                    self.value(wire_type)?;
                }
            }
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < len {
            return Err(WireError("a value longer than what is left"));
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }
}

/// The largest field number protobuf allows.
const MAX_FIELD_NUMBER: u32 = (1 << 29) - 1;

/// How deep unknown groups may nest (a bound on hostile input, like the JSON depth limit).
const MAX_GROUP_DEPTH: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_read_up_to_ten_bytes_and_refuse_more_or_truncation() {
        let mut reader = Reader::new(&[0xac, 0x02]);
        assert_eq!(reader.varint(), Ok(300));
        assert!(reader.is_empty());
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&max).varint(), Ok(u64::MAX));
        let too_long = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert!(Reader::new(&too_long).varint().is_err());
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Reader::new(&overflow).varint().is_err());
        assert!(Reader::new(&[0x80]).varint().is_err());
    }

    #[test]
    fn fields_of_every_wire_type_are_read() {
        // 1: varint 150; 2: "hi"; 3: fixed32 1; 4: fixed64 2; 5: group holding 1: varint 7.
        let bytes = [
            0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x1d, 1, 0, 0, 0, 0x21, 2, 0, 0, 0, 0, 0, 0,
            0, 0x2b, 0x08, 0x07, 0x2c,
        ];
        let mut reader = Reader::new(&bytes);
        let mut seen = Vec::new();
        while let Some((number, raw)) = reader.field().unwrap() {
            seen.push(format!("{number}:{raw:?}"));
        }
        assert_eq!(
            seen,
            [
                "1:Varint(150)",
                "2:Delimited([104, 105])",
                "3:Fixed32(1)",
                "4:Fixed64(2)",
                "5:Group([8, 7])"
            ]
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bytes in [
            &[0x12, 0x05, b'a'][..],    // length past the end
            &[0x0b][..],                // group never ended
            &[0x0c][..],                // end group alone
            &[0x0b, 0x14][..],          // end group of another field
            &[0x0f][..],                // wire type 7
            &[0x00, 0x01][..],          // field number 0
            &[0x1d, 0x01, 0x02][..],    // truncated fixed32
            &[0x09, 1, 2, 3, 4, 5][..], // truncated fixed64
        ] {
            let mut reader = Reader::new(bytes);
            let result = std::iter::from_fn(|| reader.field().transpose()).find(Result::is_err);
            assert!(result.is_some(), "{bytes:?} was read as well formed");
        }
    }
}
