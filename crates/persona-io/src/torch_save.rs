//! Test support: `.pt` files written byte for byte as PyTorch 2.x's `torch.save` writes a
//! 2-D CPU tensor, so the reader can be tested on files of real models' shapes without
//! shipping megabytes of fixtures or installing torch. [`tests`] checks the output against
//! files PyTorch itself wrote (`tests/data/`).
//!
//! The layout: a zip (stored, no compression) named after the file's stem, with every entry's
//! data aligned to 64 bytes by an `FB` extra field of `Z`s, sizes in data descriptors and a
//! zip64 end record; `data.pkl` is a protocol-2 pickle calling
//! `torch._utils._rebuild_tensor_v2` on a persistent storage `('storage', torch.<T>Storage,
//! '0', 'cpu', numel)`, and `data/0` holds the raw little-endian values.

use std::path::Path;

/// The storage types the tests write.
#[derive(Clone, Copy)]
pub(crate) enum Storage {
    F32,
    BF16,
}

impl Storage {
    fn class(self) -> &'static str {
        match self {
            Storage::F32 => "FloatStorage",
            Storage::BF16 => "BFloat16Storage",
        }
    }

    fn encode(self, x: f32, out: &mut Vec<u8>) {
        match self {
            Storage::F32 => out.extend_from_slice(&x.to_le_bytes()),
            Storage::BF16 => out.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
        }
    }
}

/// What to save: a `[rows, cols]` tensor, bare or as `{key: tensor}`.
pub(crate) struct Saved<'a> {
    pub rows: usize,
    pub cols: usize,
    /// The storage's element count the pickle declares: torch writes `values.len()`; tests
    /// of corrupt files write something else.
    pub storage_len: usize,
    pub storage: Storage,
    pub values: &'a [f32],
    pub dict_key: Option<&'a str>,
    /// `.data/serialization_id`: torch writes a fresh 40-digit number per file.
    pub serialization_id: &'a str,
}

impl<'a> Saved<'a> {
    /// A bare `[rows, cols]` tensor holding `values`.
    pub fn new(rows: usize, cols: usize, storage: Storage, values: &'a [f32]) -> Self {
        Saved {
            rows,
            cols,
            storage_len: values.len(),
            storage,
            values,
            dict_key: None,
            serialization_id: "1572819951185464302603421843949146175022",
        }
    }
}

/// Writes `saved` to `path` as `torch.save(t, path)` (or `torch.save({key: t}, path)`) does.
pub(crate) fn torch_save(path: &Path, saved: &Saved) {
    let mut data = Vec::new();
    for &x in saved.values {
        saved.storage.encode(x, &mut data);
    }
    write_archive(path, &pickle(saved), &data, saved.serialization_id);
}

/// Writes the archive `torch.save` would, with `pickle` as its `data.pkl` (for pickles no
/// tensor saves: corrupt ones) and `data` as its storage `data/0`.
pub(crate) fn torch_save_pickle(path: &Path, pickle: &[u8], data: &[u8]) {
    write_archive(
        path,
        pickle,
        data,
        "1572819951185464302603421843949146175022",
    );
}

fn write_archive(path: &Path, pickle: &[u8], data: &[u8], serialization_id: &str) {
    let archive = path.file_stem().unwrap().to_str().unwrap();
    let mut zip = ZipWriter::default();
    zip.add(&format!("{archive}/data.pkl"), pickle);
    zip.add(&format!("{archive}/.format_version"), b"1");
    zip.add(&format!("{archive}/.storage_alignment"), b"64");
    zip.add(&format!("{archive}/byteorder"), b"little");
    zip.add(&format!("{archive}/data/0"), data);
    zip.add(&format!("{archive}/version"), b"3\n");
    zip.add(
        &format!("{archive}/.data/serialization_id"),
        serialization_id.as_bytes(),
    );
    std::fs::write(path, zip.finish()).unwrap();
}

/// The pickle Python's `pickle.Pickler(protocol=2)` writes for torch's reduction of a tensor
/// (memo ids in order of first appearance, ints in the smallest opcode that holds them).
fn pickle(saved: &Saved) -> Vec<u8> {
    let mut p = Pickle::default();
    p.out.extend_from_slice(&[0x80, 2]);
    if let Some(key) = saved.dict_key {
        p.out.push(b'}');
        p.memoize();
        p.unicode(key);
    }
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.out.push(b'(');
    p.out.push(b'(');
    p.unicode("storage");
    p.global("torch", saved.storage.class());
    p.unicode("0");
    p.unicode("cpu");
    p.int(saved.storage_len);
    p.out.push(b't');
    p.memoize();
    p.out.push(b'Q');
    p.int(0);
    p.pair(saved.rows, saved.cols);
    p.pair(saved.cols, 1);
    p.out.push(0x89);
    p.global("collections", "OrderedDict");
    p.out.push(b')');
    p.out.push(b'R');
    p.memoize();
    p.out.push(b't');
    p.memoize();
    p.out.push(b'R');
    p.memoize();
    if saved.dict_key.is_some() {
        p.out.push(b's');
    }
    p.out.push(b'.');
    p.out
}

#[derive(Default)]
struct Pickle {
    out: Vec<u8>,
    memo: u32,
}

impl Pickle {
    fn memoize(&mut self) {
        match u8::try_from(self.memo) {
            Ok(id) => self.out.extend_from_slice(&[b'q', id]),
            Err(_) => {
                self.out.push(b'r');
                self.out.extend_from_slice(&self.memo.to_le_bytes());
            }
        }
        self.memo += 1;
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        self.memoize();
    }

    fn unicode(&mut self, s: &str) {
        self.out.push(b'X');
        self.out
            .extend_from_slice(&u32::try_from(s.len()).unwrap().to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
        self.memoize();
    }

    fn int(&mut self, n: usize) {
        if let Ok(b) = u8::try_from(n) {
            self.out.extend_from_slice(&[b'K', b]);
        } else if let Ok(w) = u16::try_from(n) {
            self.out.push(b'M');
            self.out.extend_from_slice(&w.to_le_bytes());
        } else if let Ok(i) = i32::try_from(n) {
            self.out.push(b'J');
            self.out.extend_from_slice(&i.to_le_bytes());
        } else {
            // LONG1: the shortest little-endian two's complement.
            let mut bytes = n.to_le_bytes().to_vec();
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
            if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                bytes.push(0);
            }
            self.out.extend_from_slice(&[0x8a, bytes.len() as u8]);
            self.out.extend_from_slice(&bytes);
        }
    }

    fn pair(&mut self, a: usize, b: usize) {
        self.int(a);
        self.int(b);
        self.out.push(0x86);
        self.memoize();
    }
}

/// PyTorch's zip writer (miniz as `caffe2::serialize::PyTorchStreamWriter` drives it).
#[derive(Default)]
struct ZipWriter {
    out: Vec<u8>,
    central: Vec<u8>,
    entries: u16,
}

const ALIGNMENT: usize = 64;

impl ZipWriter {
    fn add(&mut self, name: &str, data: &[u8]) {
        let offset = self.out.len();
        let crc = crc32fast::hash(data);
        // Local header, then the `FB` padding field that puts the data on a 64-byte boundary.
        let start = offset + 30 + name.len() + 4;
        let padding = (ALIGNMENT - start % ALIGNMENT) % ALIGNMENT;
        let o = &mut self.out;
        o.extend_from_slice(b"PK\x03\x04");
        o.extend_from_slice(&[0, 0, 8, 8, 0, 0, 0, 0, 0, 0]);
        o.extend_from_slice(&[0; 12]);
        o.extend_from_slice(&(name.len() as u16).to_le_bytes());
        o.extend_from_slice(&(padding as u16 + 4).to_le_bytes());
        o.extend_from_slice(name.as_bytes());
        o.extend_from_slice(b"FB");
        o.extend_from_slice(&(padding as u16).to_le_bytes());
        o.extend(std::iter::repeat_n(b'Z', padding));
        o.extend_from_slice(data);
        o.extend_from_slice(b"PK\x07\x08");
        o.extend_from_slice(&crc.to_le_bytes());
        o.extend_from_slice(&(data.len() as u32).to_le_bytes());
        o.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let c = &mut self.central;
        c.extend_from_slice(b"PK\x01\x02");
        c.extend_from_slice(&[0, 0, 0, 0, 8, 8, 0, 0, 0, 0, 0, 0]);
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend_from_slice(&[0; 12]);
        c.extend_from_slice(&(offset as u32).to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        self.entries += 1;
    }

    fn finish(mut self) -> Vec<u8> {
        let cd_offset = self.out.len() as u64;
        let cd_size = self.central.len() as u64;
        let entries = u64::from(self.entries);
        self.out.extend_from_slice(&self.central);
        let zip64_end = self.out.len() as u64;
        let o = &mut self.out;
        o.extend_from_slice(b"PK\x06\x06");
        o.extend_from_slice(&44u64.to_le_bytes());
        o.extend_from_slice(&[0x1e, 0x03, 0x2d, 0x00]);
        o.extend_from_slice(&[0; 8]);
        o.extend_from_slice(&entries.to_le_bytes());
        o.extend_from_slice(&entries.to_le_bytes());
        o.extend_from_slice(&cd_size.to_le_bytes());
        o.extend_from_slice(&cd_offset.to_le_bytes());
        o.extend_from_slice(b"PK\x06\x07");
        o.extend_from_slice(&0u32.to_le_bytes());
        o.extend_from_slice(&zip64_end.to_le_bytes());
        o.extend_from_slice(&1u32.to_le_bytes());
        o.extend_from_slice(b"PK\x05\x06");
        o.extend_from_slice(&[0; 4]);
        o.extend_from_slice(&self.entries.to_le_bytes());
        o.extend_from_slice(&self.entries.to_le_bytes());
        o.extend_from_slice(&(cd_size as u32).to_le_bytes());
        o.extend_from_slice(&(cd_offset as u32).to_le_bytes());
        o.extend_from_slice(&[0; 2]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data;

    /// The fixture's `.data/serialization_id` (random per file), so the rest can be compared.
    fn serialization_id(fixture: &Path) -> String {
        let f = std::fs::File::open(fixture).unwrap();
        let mut zip = zip::ZipArchive::new(f).unwrap();
        let name = zip
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .find(|n| n.ends_with(".data/serialization_id"))
            .unwrap();
        std::io::read_to_string(zip.by_name(&name).unwrap()).unwrap()
    }

    #[test]
    fn writes_what_pytorch_writes_byte_for_byte() {
        let values: Vec<f32> = (0..12).map(|i| i as f32 / 4.0 - 1.0).collect();
        let dir = tempfile::tempdir().unwrap();
        for (fixture, storage, dict_key) in [
            ("bare_f32_4x3.pt", Storage::F32, None),
            ("bare_bf16_4x3.pt", Storage::BF16, None),
            ("dict_axis_4x3.pt", Storage::F32, Some("axis")),
        ] {
            let real = test_data(fixture);
            let ours = dir.path().join(fixture);
            let id = serialization_id(&real);
            torch_save(
                &ours,
                &Saved {
                    dict_key,
                    serialization_id: &id,
                    ..Saved::new(4, 3, storage, &values)
                },
            );
            assert!(
                std::fs::read(&ours).unwrap() == std::fs::read(&real).unwrap(),
                "{fixture} differs from PyTorch's"
            );
        }
    }
}
