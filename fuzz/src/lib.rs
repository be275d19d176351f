//! Helpers shared by the fuzz targets and the seed writer: a scratch file for readers that take
//! only paths, and `torch.save`-shaped files built from a pickle.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Writes `data` to the file `name` in this process's scratch folder (under `$TMPDIR`) and
/// returns its path, for the readers that take only a path. The same name is overwritten on
/// every run.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("persona-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        dir
    });
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write the scratch file");
    path
}

/// A zip laid out as `torch.save` writes one (stored entries): `archive/data.pkl` holds
/// `pickle`, `archive/data/0` holds `storage`.
pub fn torch_zip(pickle: &[u8], storage: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let entries: [(&str, &[u8]); 4] = [
        ("archive/data.pkl", pickle),
        ("archive/byteorder", b"little"),
        ("archive/data/0", storage),
        ("archive/version", b"3\n"),
    ];
    for (name, bytes) in entries {
        zip.start_file(name, opts).expect("zip entry");
        zip.write_all(bytes).expect("zip write");
    }
    zip.finish().expect("zip finish").into_inner()
}

/// The protocol-2 pickle of a `[rows, cols]` tensor over the storage `'0'` of `numel`
/// elements of `storage_class` (`FloatStorage`, `BFloat16Storage`, …), as `torch.save` writes
/// it: `_rebuild_tensor_v2(persistent_load(('storage', torch.<class>, '0', 'cpu', numel)), 0,
/// (rows, cols), (cols, 1), False, OrderedDict())`, bare or as the value of `{key: tensor}`.
pub fn tensor_pickle(
    storage_class: &str,
    numel: u32,
    rows: u32,
    cols: u32,
    dict_key: Option<&str>,
) -> Vec<u8> {
    fn unicode(p: &mut Vec<u8>, s: &str) {
        p.push(b'X');
        p.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.extend_from_slice(s.as_bytes());
    }
    fn int(p: &mut Vec<u8>, n: u32) {
        p.push(b'J');
        p.extend_from_slice(&(n as i32).to_le_bytes());
    }
    let mut p = vec![0x80, 2];
    if let Some(key) = dict_key {
        p.extend_from_slice(b"}(");
        unicode(&mut p, key);
    }
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    unicode(&mut p, "storage");
    p.extend_from_slice(format!("ctorch\n{storage_class}\n").as_bytes());
    unicode(&mut p, "0");
    unicode(&mut p, "cpu");
    int(&mut p, numel);
    p.extend_from_slice(b"tQ");
    int(&mut p, 0);
    int(&mut p, rows);
    int(&mut p, cols);
    p.push(0x86);
    int(&mut p, cols);
    int(&mut p, 1);
    p.push(0x86);
    p.push(0x89);
    p.extend_from_slice(b"ccollections\nOrderedDict\n)RtR");
    if dict_key.is_some() {
        p.push(b'u');
    }
    p.push(b'.');
    p
}
