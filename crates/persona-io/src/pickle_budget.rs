//! A dry run of a pickle that counts, without building anything, how many objects unpickling
//! it would create and how deeply they nest. candle's unpickler copies a memoized object on
//! every reference and drops nested objects recursively, so a few hundred crafted bytes (an
//! object referenced twice, memoized, referenced twice again…) could ask for billions of
//! objects, or nest deep enough to overflow the stack. Real tensor files create a few dozen
//! objects per tensor.
//!
//! The dry run follows the opcodes candle understands, and refuses what it cannot follow (an
//! opcode torch.save does not write, a stack that does not hold what the opcode takes, a
//! string longer than the rest of the pickle): candle carries on past some of those unchecked
//! (it pops a MARK as an object), and allocates a string's declared length before reading it.

/// Objects one unpickling may create (a dict of thousands of tensors needs ~10⁵).
const MAX_OBJECTS: u64 = 1 << 22;
/// How deeply objects may nest (a tensor nests 4 deep, a dict of them 5).
const MAX_DEPTH: u32 = 64;

#[derive(Clone, Copy)]
enum Slot {
    Mark,
    Object { objects: u64, depth: u32 },
}

struct DryRun<'a> {
    bytes: &'a [u8],
    at: usize,
    stack: Vec<Slot>,
    memo: std::collections::HashMap<u32, Slot>,
    created: u64,
}

/// Why a pickle cannot be unpickled safely, if it cannot.
pub(crate) fn check_pickle(bytes: &[u8]) -> Result<(), String> {
    DryRun {
        bytes,
        at: 0,
        stack: Vec::new(),
        memo: Default::default(),
        created: 0,
    }
    .run()
}

impl<'a> DryRun<'a> {
    /// `Ok` at STOP or at the end of the bytes (candle then fails on its own); `Err` on a
    /// budget broken or an opcode the dry run cannot follow.
    fn run(&mut self) -> Result<(), String> {
        while let Some(op) = self.take(1).map(|b| b[0]) {
            let at = self.at - 1;
            let followed = match op {
                b'.' => return Ok(()),
                0x80 => self.take(1).is_some(),
                b'K' => self.take(1).is_some() && self.push_leaf()?,
                b'q' => match self.take(1) {
                    Some(b) => self.put(u32::from(b[0]))?,
                    None => false,
                },
                b'r' => match self.take(4) {
                    Some(b) => self.put(le32(b))?,
                    None => false,
                },
                b'h' => match self.take(1) {
                    Some(b) => self.get(u32::from(b[0]))?,
                    None => false,
                },
                b'j' => match self.take(4) {
                    Some(b) => self.get(le32(b))?,
                    None => false,
                },
                b'M' => self.take(2).is_some() && self.push_leaf()?,
                b'J' => self.take(4).is_some() && self.push_leaf()?,
                b'G' => self.take(8).is_some() && self.push_leaf()?,
                // LONG1: candle shifts each byte into an i64, past 8 bytes out of range.
                0x8a => match self.take(1) {
                    Some(n) if n[0] > 8 => {
                        return Err(format!(
                            "the integer at byte {at} is {} bytes long; sizes in a tensor file take at most 8",
                            n[0]
                        ))
                    }
                    Some(n) => self.take(usize::from(n[0])).is_some() && self.push_leaf()?,
                    None => false,
                },
                // candle allocates a string's declared length before reading it.
                b'X' => match self.take(4) {
                    Some(n) => {
                        let len = le32(n);
                        if self.take(len as usize).is_none() {
                            return Err(format!(
                                "the string at byte {at} declares {len} bytes, but only {} are left in the pickle: the file is truncated or corrupt",
                                self.bytes.len() - self.at
                            ));
                        }
                        self.push_leaf()?
                    }
                    None => false,
                },
                b'c' => self.line() && self.line() && self.push_leaf()?,
                0x88 | 0x89 | b'N' | b')' | b']' | b'}' => self.push_leaf()?,
                b'(' => {
                    self.stack.push(Slot::Mark);
                    true
                }
                // TUPLE, DICT: the items since the mark become one object.
                b't' | b'd' => match self.pop_to_mark() {
                    Some(items) => self.push_combined(&items)?,
                    None => false,
                },
                0x85 | 0x86 | 0x87 | b'Q' => {
                    let n = match op {
                        0x86 => 2,
                        0x87 => 3,
                        _ => 1,
                    };
                    match self.pop(n) {
                        Some(items) => self.push_combined(&items)?,
                        None => false,
                    }
                }
                // REDUCE, NEWOBJ, BUILD: two objects become one.
                b'R' | 0x81 | b'b' => match self.pop(2) {
                    Some(items) => self.push_combined(&items)?,
                    None => false,
                },
                // APPEND, SETITEM: into the object below; APPENDS, SETITEMS: the marked ones.
                b'a' | b's' => match self.pop(if op == b'a' { 1 } else { 2 }) {
                    Some(items) => self.extend_top(&items)?,
                    None => false,
                },
                b'e' | b'u' => match self.pop_to_mark() {
                    Some(items) => self.extend_top(&items)?,
                    None => false,
                },
                _ => {
                    return Err(format!(
                        "opcode 0x{op:02x} at byte {at} is not one torch.save writes"
                    ))
                }
            };
            if !followed {
                return Err(format!(
                    "it is malformed at byte {at} (opcode 0x{op:02x}): the file is truncated or corrupt"
                ));
            }
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len())?;
        let bytes: &'a [u8] = self.bytes;
        let b = &bytes[self.at..end];
        self.at = end;
        Some(b)
    }

    fn line(&mut self) -> bool {
        match self.bytes[self.at..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.at += i + 1;
                true
            }
            None => false,
        }
    }

    /// Counts `n` objects created; `Err` once the budget is spent.
    fn create(&mut self, n: u64) -> Result<(), String> {
        self.created = self.created.saturating_add(n);
        match self.created > MAX_OBJECTS {
            true => Err(format!(
                "it would create more than {MAX_OBJECTS} objects; a tensor file creates a few dozen per tensor"
            )),
            false => Ok(()),
        }
    }

    fn push(&mut self, objects: u64, depth: u32) -> Result<bool, String> {
        if depth > MAX_DEPTH {
            return Err(format!("its objects nest more than {MAX_DEPTH} deep"));
        }
        self.stack.push(Slot::Object { objects, depth });
        Ok(true)
    }

    fn push_leaf(&mut self) -> Result<bool, String> {
        self.create(1)?;
        self.push(1, 1)
    }

    /// One new object holding `items` (moved in, not copied).
    fn push_combined(&mut self, items: &[Slot]) -> Result<bool, String> {
        let (objects, depth) = sizes(items);
        self.create(1)?;
        self.push(objects.saturating_add(1), depth + 1)
    }

    /// `items` moved into the object on top of the stack.
    fn extend_top(&mut self, items: &[Slot]) -> Result<bool, String> {
        let Some(Slot::Object { objects, depth }) = self.stack.pop() else {
            return Ok(false);
        };
        let (more, inner) = sizes(items);
        self.push(objects.saturating_add(more), depth.max(inner + 1))
    }

    /// Memoizing copies the object on top of the stack.
    fn put(&mut self, id: u32) -> Result<bool, String> {
        let Some(&top @ Slot::Object { objects, .. }) = self.stack.last() else {
            return Ok(false);
        };
        self.create(objects)?;
        self.memo.insert(id, top);
        Ok(true)
    }

    /// A memo reference pushes a copy: the whole object is created again.
    fn get(&mut self, id: u32) -> Result<bool, String> {
        let Some(Slot::Object { objects, depth }) = self.memo.get(&id).copied() else {
            return Ok(false);
        };
        self.create(objects)?;
        self.push(objects, depth)
    }

    fn pop(&mut self, n: usize) -> Option<Vec<Slot>> {
        let at = self.stack.len().checked_sub(n)?;
        let items = self.stack.split_off(at);
        items
            .iter()
            .all(|s| matches!(s, Slot::Object { .. }))
            .then_some(items)
    }

    fn pop_to_mark(&mut self) -> Option<Vec<Slot>> {
        let mark = self.stack.iter().rposition(|s| matches!(s, Slot::Mark))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Some(items)
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The objects in `items` and the deepest of them.
fn sizes(items: &[Slot]) -> (u64, u32) {
    items.iter().fold((0, 0), |(n, d), s| match s {
        Slot::Object { objects, depth } => (n.saturating_add(*objects), d.max(*depth)),
        Slot::Mark => (n, d),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_tensor_pickles_pass() {
        for name in ["bare_f32_4x3.pt", "dict_axis_4x3.pt", "view_f32_2x3.pt"] {
            let f = std::fs::File::open(crate::test_data(name)).unwrap();
            let mut zip = zip::ZipArchive::new(f).unwrap();
            let pkl = format!("{}/data.pkl", name.trim_end_matches(".pt"));
            let bytes = std::io::Read::bytes(zip.by_name(&pkl).unwrap())
                .collect::<Result<Vec<u8>, _>>()
                .unwrap();
            check_pickle(&bytes).unwrap();
        }
    }

    /// Found by fuzzing (`fuzz/`, target pt_pickle; minimised to these 5 bytes): BINUNICODE
    /// declaring 0xffffffff bytes made candle allocate 4 GiB before reading them.
    #[test]
    fn strings_longer_than_the_pickle_are_refused() {
        let e = check_pickle(b"X\xff\xff\xff\xff").unwrap_err();
        assert_eq!(
            e,
            "the string at byte 0 declares 4294967295 bytes, but only 0 are left in the pickle: the file is truncated or corrupt"
        );
        let mut p = vec![0x80, 2, b'X'];
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        p.extend_from_slice(b"cpu.");
        let e = check_pickle(&p).unwrap_err();
        assert!(
            e.contains("at byte 2") && e.contains("only 4 are left"),
            "{e}"
        );
    }

    /// Found by fuzzing (`fuzz/`, target pt_pickle): LONG1 with 9 bytes made candle shift a
    /// byte 64 bits left (a panic in debug builds, a wrong number in release builds).
    #[test]
    fn integers_longer_than_8_bytes_are_refused() {
        let e = check_pickle(&[0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'.']).unwrap_err();
        assert_eq!(
            e,
            "the integer at byte 0 is 9 bytes long; sizes in a tensor file take at most 8"
        );
        check_pickle(&[0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 1, b'.']).unwrap();
    }

    /// What the dry run cannot follow is refused rather than left to candle, which pops a MARK
    /// as an object and reads on: `((` TUPLE2, then the 4 GiB string, passed the check before.
    #[test]
    fn what_the_dry_run_cannot_follow_is_refused() {
        let mut p = vec![0x80, 2, b'(', b'(', 0x86, b'X'];
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        let e = check_pickle(&p).unwrap_err();
        assert!(e.contains("malformed at byte 4 (opcode 0x86)"), "{e}");
        let e = check_pickle(&[0x80, 2, 0x95, b'.']).unwrap_err();
        assert_eq!(e, "opcode 0x95 at byte 2 is not one torch.save writes");
        // A pickle that simply ends is candle's to refuse.
        check_pickle(&[0x80, 2, b'N']).unwrap();
    }

    #[test]
    fn copies_that_double_and_deep_nesting_are_refused() {
        // [] memoized, then (x, x) memoized 40 times over: 2^40 objects from 250 bytes.
        let mut bomb = vec![0x80, 2, b']', b'q', 0];
        for i in 0..40u8 {
            bomb.extend_from_slice(&[b'h', i, b'h', i, 0x86, b'q', i + 1]);
        }
        bomb.push(b'.');
        let e = check_pickle(&bomb).unwrap_err();
        assert!(e.contains("objects"), "{e}");
        // 100 lists, each appended into the one before.
        let mut deep = vec![0x80, 2];
        deep.extend(std::iter::repeat_n(b']', 100));
        deep.extend(std::iter::repeat_n(b'a', 99));
        deep.push(b'.');
        let e = check_pickle(&deep).unwrap_err();
        assert!(e.contains("nest"), "{e}");
    }
}
